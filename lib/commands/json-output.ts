// --json output: one JSON document per line. Numbers stay numbers, however
// large: bigints (ids, flags, cookies, 64-bit values) are written as JSON
// number literals with every digit, never as strings or rounded doubles.
// Buffers are written as arrays of bytes.

/** value as JSON, bigints as exact number literals. */
export function toJson(value: unknown, indent?: number): string {
  return write(value, indent === undefined ? '' : ' '.repeat(indent), '');
}

function write(value: unknown, step: string, pad: string): string {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return write([...value], step, pad);
  if (value instanceof Map) return write(Object.fromEntries(value), step, pad);
  const inner = pad + step;
  const nl = step ? '\n' : '';
  const sep = step ? ': ' : ':';
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[${nl}${value.map((v) => inner + write(v, step, inner)).join(`,${nl}`)}${nl}${pad}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  if (!entries.length) return '{}';
  return `{${nl}${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}${sep}${write(v, step, inner)}`).join(`,${nl}`)}${nl}${pad}}`;
}

/** Writes value to stdout as one line of JSON (or indented with pretty). */
export function printJson(value: unknown, pretty = false): void {
  process.stdout.write(toJson(value, pretty ? 2 : undefined) + '\n');
}
