// Colour and emphasis, only when the output is a terminal (and NO_COLOR is
// not set to something), as busctl does: piped or redirected output is
// plain text.
export interface Colours {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  highlight(s: string): string;
}

function wrap(on: boolean, code: string): (s: string) => string {
  return on ? (s) => `\x1b[${code}m${s}\x1b[0m` : (s) => s;
}

/**
 * Whether to colour what goes to stream: a terminal (busctl's one rule),
 * NO_COLOR unset or empty (no-color.org), TERM not dumb.
 */
export function colourOn(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return !!stream.isTTY && !env.NO_COLOR && env.TERM !== 'dumb';
}

export function colours(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): Colours {
  const on = colourOn(stream, env);
  return { bold: wrap(on, '1'), dim: wrap(on, '2'), red: wrap(on, '31'), highlight: wrap(on, '1;39') };
}
