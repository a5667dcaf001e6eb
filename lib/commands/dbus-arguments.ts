// busctl's command-line form of D-Bus values: a SIGNATURE followed by one
// word per basic value, an array as its element count then its elements, a
// variant as its signature then its value, structs and dict entries as their
// fields in order (`as 2 a b`, `a{sv} 1 key s text`, `(is) 5 five`).
// Booleans take yes/no/true/false/1/0/on/off; numbers are range-checked.
import { parseSignature, type DBusType } from '../client/signature.js';
import { Variant, type DBusValue } from '../client/variant.js';

/** Bad arguments for a signature: the caller's usage error. */
export class ArgumentError extends Error {}

const INTEGER_RANGES: Record<string, [bigint, bigint, string]> = {
  y: [0n, 0xffn, 'byte (unsigned 8-bit integer)'],
  n: [-0x8000n, 0x7fffn, 'signed 16-bit integer'],
  q: [0n, 0xffffn, 'unsigned 16-bit integer'],
  i: [-0x8000_0000n, 0x7fff_ffffn, 'signed 32-bit integer'],
  u: [0n, 0xffff_ffffn, 'unsigned 32-bit integer'],
  x: [-(1n << 63n), (1n << 63n) - 1n, 'signed 64-bit integer'],
  t: [0n, (1n << 64n) - 1n, 'unsigned 64-bit integer'],
};

function parseBooleanWord(v: string): boolean {
  const w = v.toLowerCase();
  if (['yes', 'y', 'true', 't', '1', 'on'].includes(w)) return true;
  if (['no', 'n', 'false', 'f', '0', 'off'].includes(w)) return false;
  throw new ArgumentError(`cannot parse '${v}' as a boolean`);
}

function parseInteger(code: string, v: string): bigint {
  const [min, max, what] = INTEGER_RANGES[code]!;
  let n: bigint;
  try {
    if (!/^[+-]?(0x[0-9a-f]+|0o?[0-7]+|\d+)$/i.test(v.trim())) throw new Error();
    const neg = v.trim().startsWith('-');
    const digits = v.trim().replace(/^[+-]/, '');
    n = BigInt(/^0[0-7]+$/.test(digits) ? `0o${digits.slice(1)}` : digits);
    if (neg) n = -n;
  } catch {
    throw new ArgumentError(`cannot parse '${v}' as a ${what}`);
  }
  if (n < min || n > max) throw new ArgumentError(`'${v}' is out of range for a ${what}`);
  return n;
}

class Words {
  private i = 0;
  constructor(private readonly words: readonly string[]) {}
  next(): string {
    if (this.i >= this.words.length) throw new ArgumentError('too few arguments for the signature');
    return this.words[this.i++]!;
  }
  get rest(): number { return this.words.length - this.i; }
}

function value(t: DBusType, w: Words): DBusValue {
  switch (t.kind) {
    case 'basic': {
      const v = w.next();
      switch (t.code) {
        case 'b': return parseBooleanWord(v);
        case 'y': case 'n': case 'q': case 'i': case 'u': return Number(parseInteger(t.code, v));
        case 'x': case 't': return parseInteger(t.code, v);
        case 'd': {
          const d = Number(v);
          if (v.trim() === '' || Number.isNaN(d) && v.trim().toLowerCase() !== 'nan') {
            throw new ArgumentError(`cannot parse '${v}' as a double`);
          }
          return d;
        }
        case 'h': throw new ArgumentError('file descriptors (h) cannot be given on the command line');
        default: return v; // s o g: the encoder checks paths and signatures
      }
    }
    case 'array': {
      const count = w.next();
      if (!/^\d+$/.test(count)) throw new ArgumentError(`cannot parse '${count}' as the number of array entries`);
      const n = Number(count);
      if (n > w.rest) throw new ArgumentError(`the array claims ${n} entries, more than the arguments left`);
      const items: DBusValue[] = [];
      for (let k = 0; k < n; k++) items.push(value(t.element, w));
      if (t.element.kind === 'dict-entry') return new Map(items.map((e) => e as [DBusValue, DBusValue]));
      if (t.element.kind === 'basic' && t.element.code === 'y') return Buffer.from(items as number[]);
      return items;
    }
    case 'dict-entry': return [value(t.key, w), value(t.value, w)];
    case 'struct': return t.fields.map((f) => value(f, w));
    case 'variant': {
      const sig = w.next();
      let types: readonly DBusType[];
      try {
        types = parseSignature(sig);
      } catch (e) {
        throw new ArgumentError(`invalid variant signature '${sig}': ${(e as Error).message}`);
      }
      if (types.length !== 1) throw new ArgumentError(`a variant's signature must be one complete type, not '${sig}'`);
      return new Variant(sig, value(types[0]!, w));
    }
  }
}

/** The values `words` give for `signature`; ArgumentError when they do not fit it exactly. */
export function parseArguments(signature: string, words: readonly string[]): DBusValue[] {
  let types: readonly DBusType[];
  try {
    types = parseSignature(signature);
  } catch (e) {
    throw new ArgumentError(`invalid signature '${signature}': ${(e as Error).message}`);
  }
  const w = new Words(words);
  const values = types.map((t) => value(t, w));
  if (w.rest) throw new ArgumentError('too many arguments for the signature');
  return values;
}
