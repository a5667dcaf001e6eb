// Command-line options of the bus commands: node's parseArgs with its
// complaints turned into usage errors that carry the command's help.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usage } from './usage-error.js';

export const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

type Options = NonNullable<ParseArgsConfig['options']>;
/** What parseOptions answers: parseArgs's result for these options. */
export type ParsedOptions<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;

/** parseArgs(args, options) allowing positionals; a bad option is a usage error with help. */
export function parseOptions<O extends Options>(args: string[], options: O, help: string): ParsedOptions<O> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw usage((e as Error).message, help);
  }
}

/** Whether -h/--help was given, and if so help printed: the command then exits 0. */
export function helpShown(values: { help?: boolean }, help: string): boolean {
  if (values.help) process.stdout.write(help);
  return !!values.help;
}

/** busctl's boolean option values: yes/no, true/false, 1/0, on/off. */
export function parseBoolean(option: string, value: string, help: string): boolean {
  const v = value.toLowerCase();
  if (['yes', 'y', 'true', 't', '1', 'on'].includes(v)) return true;
  if (['no', 'n', 'false', 'f', '0', 'off'].includes(v)) return false;
  throw usage(`--${option} takes yes or no, not '${value}'`, help);
}

/** A busctl timeout: seconds, or a number with a unit (ms, s, min, h, us); answers milliseconds. */
export function parseTimeout(value: string, help: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|usec|ms|msec|s|sec|m|min|h|hr)?\s*$/.exec(value);
  if (!m) throw usage(`--timeout takes a duration such as 5, 5s, 500ms or 2min, not '${value}'`, help);
  const scale: Record<string, number> = {
    us: 1e-3, usec: 1e-3, ms: 1, msec: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, hr: 3_600_000,
  };
  const ms = Number(m[1]) * scale[m[2] ?? 's']!;
  if (ms <= 0) throw usage('--timeout must be more than 0', help);
  return ms;
}
