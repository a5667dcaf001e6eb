// D-Bus type signatures: parsed into type trees that carry what the GVariant
// codec needs (alignment, fixed size), checked against the D-Bus
// specification's limits. GVariant's maybe type is not part of D-Bus on kdbus
// (sd-bus refused it, see GVARIANT-SERIALIZATION), so 'm' is refused here.
import { refuse } from './codec-error.js';

/** D-Bus specification limits. */
export const MAX_SIGNATURE_LENGTH = 255;
export const MAX_ARRAY_DEPTH = 32;
export const MAX_STRUCT_DEPTH = 32;
/** Containers nested in one value, variants included. */
export const MAX_TOTAL_DEPTH = 64;

export type FixedCode = 'y' | 'b' | 'n' | 'q' | 'i' | 'u' | 'x' | 't' | 'd' | 'h';
export type StringCode = 's' | 'o' | 'g';
export type BasicCode = FixedCode | StringCode;

interface Shape {
  /** the type's own signature */
  readonly signature: string;
  /** GVariant alignment: 1, 2, 4 or 8 */
  readonly alignment: number;
  /** GVariant size of every value of the type, or null when values vary in size */
  readonly fixedSize: number | null;
}

export interface BasicType extends Shape { readonly kind: 'basic'; readonly code: BasicCode }
export interface ArrayType extends Shape { readonly kind: 'array'; readonly element: DBusType }
export interface StructType extends Shape { readonly kind: 'struct'; readonly fields: readonly DBusType[] }
export interface DictEntryType extends Shape {
  readonly kind: 'dict-entry';
  readonly key: BasicType;
  readonly value: DBusType;
}
export interface VariantType extends Shape { readonly kind: 'variant' }

export type DBusType = BasicType | ArrayType | StructType | DictEntryType | VariantType;

const FIXED: Record<FixedCode, number> = { y: 1, b: 1, n: 2, q: 2, i: 4, u: 4, x: 8, t: 8, d: 8, h: 4 };

export function isFixedCode(c: string): c is FixedCode {
  return Object.hasOwn(FIXED, c);
}

function isBasicCode(c: string): c is BasicCode {
  return isFixedCode(c) || c === 's' || c === 'o' || c === 'g';
}

export function alignTo(n: number, alignment: number): number {
  return (n + alignment - 1) & -alignment;
}

/** GVariant's rules for a tuple (struct or dict entry) made of `fields`. */
function tupleShape(signature: string, fields: readonly DBusType[]): Shape {
  let alignment = 1;
  let size: number | null = 0;
  for (const f of fields) {
    alignment = Math.max(alignment, f.alignment);
    if (size !== null && f.fixedSize !== null) size = alignTo(size, f.alignment) + f.fixedSize;
    else size = null;
  }
  // the unit tuple is one byte long (GVariant); D-Bus never lets one through
  const fixedSize = size === null ? null : Math.max(1, alignTo(size, alignment));
  return { signature, alignment, fixedSize };
}

class Parser {
  private pos = 0;
  constructor(private readonly text: string) {}

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  /** One complete type; arrays and structs count towards their own depth limits. */
  completeType(arrays: number, structs: number): DBusType {
    const start = this.pos;
    const c = this.text[this.pos++];
    if (c === undefined) return this.bad('ends inside a type');
    if (isBasicCode(c)) {
      const fixedSize = isFixedCode(c) ? FIXED[c] : null;
      return { kind: 'basic', code: c, signature: c, alignment: fixedSize ?? 1, fixedSize };
    }
    if (c === 'v') return { kind: 'variant', signature: 'v', alignment: 8, fixedSize: null };
    if (c === 'a') {
      if (arrays + 1 > MAX_ARRAY_DEPTH) return this.bad(`arrays nest deeper than ${MAX_ARRAY_DEPTH}`);
      const element = this.text[this.pos] === '{'
        ? this.dictEntry(arrays + 1, structs)
        : this.completeType(arrays + 1, structs);
      return { kind: 'array', element, signature: this.text.slice(start, this.pos),
        alignment: element.alignment, fixedSize: null };
    }
    if (c === '(') {
      if (structs + 1 > MAX_STRUCT_DEPTH) return this.bad(`structs nest deeper than ${MAX_STRUCT_DEPTH}`);
      const fields: DBusType[] = [];
      while (this.text[this.pos] !== ')') {
        if (this.done) return this.bad('struct not closed');
        fields.push(this.completeType(arrays, structs + 1));
      }
      this.pos++;
      if (fields.length === 0) return this.bad('empty struct');
      const signature = this.text.slice(start, this.pos);
      return { kind: 'struct', fields, ...tupleShape(signature, fields) };
    }
    if (c === '{') return this.bad('dict entry outside an array');
    return this.bad(`unknown type code ${JSON.stringify(c)}`);
  }

  private dictEntry(arrays: number, structs: number): DictEntryType {
    const start = this.pos++;
    if (structs + 1 > MAX_STRUCT_DEPTH) return this.bad(`structs nest deeper than ${MAX_STRUCT_DEPTH}`);
    const key = this.completeType(arrays, structs + 1);
    if (key.kind !== 'basic') return this.bad('dict entry key is not a basic type');
    if (this.text[this.pos] === '}') return this.bad('dict entry without a value');
    const value = this.completeType(arrays, structs + 1);
    if (this.text[this.pos++] !== '}') return this.bad('dict entry has more than two types or is not closed');
    const signature = this.text.slice(start, this.pos);
    return { kind: 'dict-entry', key, value, ...tupleShape(signature, [key, value]) };
  }

  private bad(why: string): never {
    return refuse(`invalid signature ${JSON.stringify(this.text)}: ${why}`);
  }
}

function checkLength(signature: string): void {
  if (signature.length > MAX_SIGNATURE_LENGTH) {
    refuse(`invalid signature: ${signature.length} characters, more than ${MAX_SIGNATURE_LENGTH}`);
  }
}

// Signatures repeat (every message of a method carries the same one): parsed
// trees are kept, up to a bound since received signatures are anyone's choice.
const CACHE_LIMIT = 512;
const sequences = new Map<string, readonly DBusType[]>();

/** A D-Bus signature: zero or more complete types. Throws CodecError when invalid. */
export function parseSignature(signature: string): readonly DBusType[] {
  const cached = sequences.get(signature);
  if (cached) return cached;
  checkLength(signature);
  const parser = new Parser(signature);
  const types: DBusType[] = [];
  while (!parser.done) types.push(parser.completeType(0, 0));
  if (sequences.size >= CACHE_LIMIT) sequences.clear();
  sequences.set(signature, types);
  return types;
}

/** A signature of exactly one complete type (what a variant carries). */
export function parseSingleType(signature: string): DBusType {
  const types = parseSignature(signature);
  if (types.length !== 1) {
    refuse(`invalid signature ${JSON.stringify(signature)}: ${types.length} complete types where one was expected`);
  }
  return types[0]!;
}

export function isValidSignature(signature: string): boolean {
  try {
    parseSignature(signature);
    return true;
  } catch {
    return false;
  }
}

/**
 * The struct type a message body has: the body's types as one GVariant tuple.
 * An empty signature gives an empty field list (a body of no bytes, as sd-bus
 * sent it).
 */
export function bodyType(signature: string): StructType {
  const fields = parseSignature(signature);
  return { kind: 'struct', fields, ...tupleShape(`(${signature})`, fields) };
}
