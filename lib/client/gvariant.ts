// GVariant serialisation (GLib's "GVariant serialisation" specification) of
// D-Bus values, little-endian, the way sd-bus put D-Bus message headers and
// bodies on kdbus. Encoding writes normal form; decoding accepts normal form
// only and refuses anything else with a CodecError that says where and why,
// never reading outside the bytes it was given.
//
// Offsets are counted from the start of the encoded value, which must sit at
// an 8-byte aligned place of whatever holds it (message bodies and header
// field arrays do).
import { ByteWriter } from './byte-writer.js';
import { refuse } from './codec-error.js';
import { isObjectPath } from './dbus-names.js';
import {
  alignTo, bodyType, isValidSignature, parseSingleType, MAX_TOTAL_DEPTH,
  type ArrayType, type BasicType, type DBusType, type DictEntryType, type StructType,
} from './signature.js';
import { Variant, type DBusValue } from './variant.js';

/**
 * Width of a container's framing offsets: the smallest of 1/2/4/8 bytes whose
 * largest value can address the whole container, offsets included.
 */
export function offsetSize(contentSize: number, count: number): 1 | 2 | 4 | 8 {
  if (contentSize + count <= 0xff) return 1;
  if (contentSize + count * 2 <= 0xffff) return 2;
  if (contentSize + count * 4 <= 0xffff_ffff) return 4;
  return 8;
}

/** Offset width a reader derives from a container's whole size. */
function offsetSizeOfContainer(size: number): 1 | 2 | 4 | 8 {
  if (size <= 0xff) return 1;
  if (size <= 0xffff) return 2;
  if (size <= 0xffff_ffff) return 4;
  return 8;
}

/**
 * Serialises values one after another into a growing buffer; positions (and
 * so alignment) count from the buffer's start.
 */
export class GVariantWriter extends ByteWriter {
  padTo(position: number): void {
    this.reserve(position - this.len);
    this.len = position;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s);
    this.reserve(n + 1);
    this.buf.write(s, this.len, 'utf8');
    this.len += n + 1; // the NUL is already there
  }

  word(value: number, size: number): void {
    this.reserve(size);
    if (size === 8) this.buf.writeBigUInt64LE(BigInt(value), this.len);
    else this.buf.writeUIntLE(value, this.len, size);
    this.len += size;
  }

  offsets(start: number, ends: readonly number[]): void {
    if (ends.length === 0) return;
    const k = offsetSize(this.len - start, ends.length);
    for (const end of ends) this.word(end, k);
  }

  /** Appends `value` as `type` (a DBusType or a one-type signature). */
  write(type: DBusType | string, value: DBusValue): void {
    write(this, typeOf(type), value, 0);
  }

}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return typeof value === 'object' && value !== null ? (value.constructor?.name ?? 'an object') : String(value);
}

function mismatch(type: DBusType, value: unknown): never {
  return refuse(`cannot encode ${describe(value)} as D-Bus type '${type.signature}'`);
}

const INTEGER_RANGE: Record<string, [bigint, bigint]> = {
  y: [0n, 0xffn], n: [-0x8000n, 0x7fffn], q: [0n, 0xffffn], i: [-0x8000_0000n, 0x7fff_ffffn],
  u: [0n, 0xffff_ffffn], h: [0n, 0xffff_ffffn],
  x: [-(1n << 63n), (1n << 63n) - 1n], t: [0n, (1n << 64n) - 1n],
};

function integer(type: BasicType, value: unknown): bigint {
  let v: bigint;
  if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
  else return mismatch(type, value);
  const [lo, hi] = INTEGER_RANGE[type.code]!;
  if (v < lo || v > hi) return mismatch(type, value);
  return v;
}

const LONE_SURROGATE = /\p{Cs}/u;

function writeBasic(w: GVariantWriter, type: BasicType, value: DBusValue): void {
  w.align(type.alignment);
  switch (type.code) {
    case 'b':
      if (typeof value !== 'boolean') return mismatch(type, value);
      w.word(value ? 1 : 0, 1);
      return;
    case 'd':
      if (typeof value !== 'number') return mismatch(type, value);
      w.padTo(w.len + 8);
      w.buf.writeDoubleLE(value, w.len - 8);
      return;
    case 'x': case 't': {
      const v = integer(type, value);
      w.padTo(w.len + 8);
      if (type.code === 'x') w.buf.writeBigInt64LE(v, w.len - 8);
      else w.buf.writeBigUInt64LE(v, w.len - 8);
      return;
    }
    case 'y': case 'n': case 'q': case 'i': case 'u': case 'h': {
      const v = Number(integer(type, value));
      const size = type.fixedSize!;
      w.padTo(w.len + size);
      if (type.code === 'n' || type.code === 'i') w.buf.writeIntLE(v, w.len - size, size);
      else w.buf.writeUIntLE(v, w.len - size, size);
      return;
    }
    case 's': case 'o': case 'g':
      if (typeof value !== 'string') return mismatch(type, value);
      if (value.includes('\0')) refuse(`a D-Bus string cannot hold a NUL character: ${describe(value)}`);
      if (LONE_SURROGATE.test(value)) refuse(`string is not valid Unicode (lone surrogate): ${describe(value)}`);
      if (type.code === 'o' && !isObjectPath(value)) refuse(`invalid object path: ${describe(value)}`);
      if (type.code === 'g' && !isValidSignature(value)) refuse(`invalid signature value: ${describe(value)}`);
      w.string(value);
      return;
  }
}

function entriesOf(type: ArrayType, value: DBusValue): Iterable<DBusValue> {
  if (type.element.kind === 'dict-entry') {
    if (value instanceof Map) return [...value].map(([k, v]) => [k, v]);
    if (Array.isArray(value)) return value;
    if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && !(value instanceof Variant)) {
      if (!['s', 'o', 'g'].includes(type.element.key.code)) {
        refuse(`a plain object cannot stand for '${type.signature}' (its keys are strings): use a Map`);
      }
      return Object.entries(value);
    }
    return mismatch(type, value);
  }
  if (Array.isArray(value)) return value;
  if (value instanceof Uint8Array && type.element.signature === 'y') return value;
  return mismatch(type, value);
}

function checkDepth(depth: number): void {
  if (depth > MAX_TOTAL_DEPTH) refuse(`containers nest deeper than ${MAX_TOTAL_DEPTH}`);
}

function writeTuple(w: GVariantWriter, type: StructType | DictEntryType, fields: readonly DBusType[],
                    value: DBusValue, depth: number): void {
  if (!Array.isArray(value) || value.length !== fields.length) return mismatch(type, value);
  w.align(type.alignment);
  const start = w.len;
  const ends: number[] = [];
  fields.forEach((field, i) => {
    write(w, field, value[i]!, depth);
    if (field.fixedSize === null && i < fields.length - 1) ends.push(w.len - start);
  });
  if (type.fixedSize !== null) w.padTo(start + type.fixedSize);
  else w.offsets(start, ends.reverse());
}

function write(w: GVariantWriter, type: DBusType, value: DBusValue, depth: number): void {
  switch (type.kind) {
    case 'basic':
      return writeBasic(w, type, value);
    case 'variant': {
      checkDepth(depth + 1);
      if (!(value instanceof Variant)) return mismatch(type, value);
      w.align(8);
      write(w, value.type, value.value, depth + 1);
      w.word(0, 1);
      w.bytes(Buffer.from(value.signature, 'latin1'));
      return;
    }
    case 'struct':
      checkDepth(depth + 1);
      return writeTuple(w, type, type.fields, value, depth + 1);
    case 'dict-entry':
      checkDepth(depth + 1);
      return writeTuple(w, type, [type.key, type.value], value, depth + 1);
    case 'array': {
      checkDepth(depth + 1);
      const element = type.element;
      w.align(type.alignment);
      if (element.signature === 'y' && value instanceof Uint8Array) return w.bytes(value);
      const start = w.len;
      const ends: number[] = [];
      for (const item of entriesOf(type, value)) {
        write(w, element, item, depth + 1);
        if (element.fixedSize === null) ends.push(w.len - start);
      }
      w.offsets(start, ends);
      return;
    }
  }
}

function typeOf(type: DBusType | string): DBusType {
  return typeof type === 'string' ? parseSingleType(type) : type;
}

/** GVariant serialisation of `value` as `type` (a DBusType or a one-type signature). */
export function encodeValue(type: DBusType | string, value: DBusValue): Buffer {
  const w = new GVariantWriter();
  w.write(type, value);
  return w.result();
}

/**
 * A message body: the values of `signature` as one GVariant struct, as sd-bus
 * 2015 wrote it: an empty signature gives no bytes (not GVariant's one-byte
 * unit), and a fixed-size body lacks the struct's end padding.
 */
export function encodeBody(signature: string, values: readonly DBusValue[]): Buffer {
  const w = new GVariantWriter();
  writeBody(w, signature, values);
  return w.result();
}

/** encodeBody onto the end of `w`, which must be at a multiple of 8. */
export function writeBody(w: GVariantWriter, signature: string, values: readonly DBusValue[]): void {
  const type = bodyType(signature);
  if (values.length !== type.fields.length) {
    refuse(`signature '${signature}' has ${type.fields.length} values, ${values.length} given`);
  }
  if (type.fields.length === 0) return;
  const start = w.len;
  w.write(type, values as DBusValue[]);
  // a fixed-size body ends with its last value, as sd-bus wrote it (see decodeBody)
  if (type.fixedSize !== null) w.len = start + unpaddedSize(type.fields);
}

// ---------------------------------------------------------------- decoding

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Names and short strings are mostly ASCII: those skip the UTF-8 decoder. */
function isShortAscii(b: Buffer, start: number, end: number): boolean {
  if (end - start > 64) return false;
  for (let i = start; i < end; i++) if (b[i]! > 0x7f) return false;
  return true;
}

class Reader {
  constructor(private readonly buf: Buffer) {}

  private bad(at: number, why: string): never {
    return refuse(`malformed GVariant at byte ${at}: ${why}`);
  }

  private zeros(from: number, to: number): void {
    for (let i = from; i < to; i++) if (this.buf[i] !== 0) this.bad(i, 'padding byte is not zero');
  }

  private word(at: number, size: number): number {
    if (size === 8) {
      const v = this.buf.readBigUInt64LE(at);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? this.bad(at, 'framing offset out of range') : Number(v);
    }
    return this.buf.readUIntLE(at, size);
  }

  read(type: DBusType, start: number, end: number, depth: number): DBusValue {
    switch (type.kind) {
      case 'basic': return this.basic(type, start, end);
      case 'array': return this.array(type, start, end, depth + 1);
      case 'struct': return this.tuple(type, type.fields, start, end, depth + 1);
      case 'dict-entry': return this.tuple(type, [type.key, type.value], start, end, depth + 1);
      case 'variant': return this.variant(start, end, depth + 1);
    }
  }

  private basic(type: BasicType, start: number, end: number): DBusValue {
    const b = this.buf;
    if (type.fixedSize !== null && end - start !== type.fixedSize) {
      this.bad(start, `'${type.code}' takes ${type.fixedSize} bytes, not ${end - start}`);
    }
    switch (type.code) {
      case 'y': return b[start]!;
      case 'b': {
        const v = b[start]!;
        return v > 1 ? this.bad(start, `boolean byte ${v} is neither 0 nor 1`) : v === 1;
      }
      case 'n': return b.readInt16LE(start);
      case 'q': return b.readUInt16LE(start);
      case 'i': return b.readInt32LE(start);
      case 'u': case 'h': return b.readUInt32LE(start);
      case 'x': return b.readBigInt64LE(start);
      case 't': return b.readBigUInt64LE(start);
      case 'd': return b.readDoubleLE(start);
      case 's': case 'o': case 'g': {
        if (end <= start) return this.bad(start, `empty slot for a '${type.code}' (no NUL)`);
        const nul = start + b.subarray(start, end).indexOf(0);
        if (nul !== end - 1) {
          return this.bad(start, nul < start ? 'string is not NUL-terminated' : 'string holds a NUL before its end');
        }
        let s: string;
        if (isShortAscii(b, start, nul)) {
          s = b.toString('latin1', start, nul);
        } else {
          try {
            s = utf8.decode(b.subarray(start, nul));
          } catch {
            return this.bad(start, 'string is not valid UTF-8');
          }
        }
        if (type.code === 'o' && !isObjectPath(s)) this.bad(start, `invalid object path ${JSON.stringify(s)}`);
        if (type.code === 'g' && !isValidSignature(s)) this.bad(start, `invalid signature ${JSON.stringify(s)}`);
        return s;
      }
    }
  }

  private array(type: ArrayType, start: number, end: number, depth: number): DBusValue {
    if (depth > MAX_TOTAL_DEPTH) this.bad(start, `containers nest deeper than ${MAX_TOTAL_DEPTH}`);
    const element = type.element;
    const size = end - start;
    const items: DBusValue[] = [];
    if (element.fixedSize !== null) {
      if (size % element.fixedSize !== 0) {
        this.bad(start, `array of '${element.signature}' is ${size} bytes, not a multiple of ${element.fixedSize}`);
      }
      if (element.signature === 'y') return Buffer.from(this.buf.subarray(start, end));
      for (let at = start; at < end; at += element.fixedSize) {
        items.push(this.read(element, at, at + element.fixedSize, depth));
      }
    } else if (size > 0) {
      const k = offsetSizeOfContainer(size);
      if (size < k) this.bad(start, 'array too short for its framing offset');
      const table = this.word(end - k, k);
      if (table > size - k || (size - table) % k !== 0) {
        this.bad(end - k, `framing offset ${table} points outside the array of ${size} bytes`);
      }
      const count = (size - table) / k;
      if (offsetSize(table, count) !== k) this.bad(end - k, 'framing offsets wider than needed (not normal form)');
      let pos = start;
      for (let i = 0; i < count; i++) {
        const itemStart = alignTo(pos, element.alignment);
        const itemEnd = start + this.word(start + table + i * k, k);
        if (itemEnd < itemStart || itemEnd > start + table) {
          this.bad(start + table + i * k, `framing offset of item ${i} out of order or range`);
        }
        this.zeros(pos, itemStart);
        items.push(this.read(element, itemStart, itemEnd, depth));
        pos = itemEnd;
      }
    }
    if (element.kind === 'dict-entry') return new Map(items.map(e => [(e as DBusValue[])[0]!, (e as DBusValue[])[1]!]));
    return items;
  }

  private tuple(type: StructType | DictEntryType, fields: readonly DBusType[],
                start: number, end: number, depth: number): DBusValue[] {
    if (depth > MAX_TOTAL_DEPTH) this.bad(start, `containers nest deeper than ${MAX_TOTAL_DEPTH}`);
    const size = end - start;
    if (type.fixedSize !== null && size !== type.fixedSize) {
      this.bad(start, `'${type.signature}' takes ${type.fixedSize} bytes, not ${size}`);
    }
    const framed = fields.filter((f, i) => f.fixedSize === null && i < fields.length - 1).length;
    const k = offsetSizeOfContainer(size);
    const table = end - framed * k;
    if (table < start) this.bad(start, `'${type.signature}' too short for its framing offsets`);
    if (framed > 0 && offsetSize(size - framed * k, framed) !== k) {
      this.bad(table, 'framing offsets wider than needed (not normal form)');
    }
    const values: DBusValue[] = [];
    let pos = start;
    let framedSeen = 0;
    fields.forEach((field, i) => {
      const fieldStart = alignTo(pos, field.alignment);
      let fieldEnd: number;
      if (field.fixedSize !== null) fieldEnd = fieldStart + field.fixedSize;
      else if (i === fields.length - 1) fieldEnd = table;
      else fieldEnd = start + this.word(end - ++framedSeen * k, k);
      if (fieldEnd < fieldStart || fieldEnd > table) {
        this.bad(fieldStart, `member ${i} of '${type.signature}' runs outside it (bad framing offset or truncated)`);
      }
      this.zeros(pos, fieldStart);
      values.push(this.read(field, fieldStart, fieldEnd, depth));
      pos = fieldEnd;
    });
    if (type.fixedSize !== null) this.zeros(pos, end);
    else if (pos !== table) this.bad(pos, `${table - pos} stray bytes after the last member of '${type.signature}'`);
    return values;
  }

  private variant(start: number, end: number, depth: number): DBusValue {
    if (depth > MAX_TOTAL_DEPTH) this.bad(start, `containers nest deeper than ${MAX_TOTAL_DEPTH}`);
    const nul = start + this.buf.subarray(start, end).lastIndexOf(0);
    if (nul < start) return this.bad(start, 'variant without the NUL before its signature');
    const signature = this.buf.toString('latin1', nul + 1, end);
    let type: DBusType;
    try {
      type = parseSingleType(signature);
    } catch (e) {
      return this.bad(nul + 1, `variant signature: ${(e as Error).message}`);
    }
    return new Variant(signature, this.read(type, start, nul, depth));
  }
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Decodes all of `data` as one value of `type`; throws CodecError when malformed. */
export function decodeValue(type: DBusType | string, data: Uint8Array): DBusValue {
  return new Reader(asBuffer(data)).read(typeOf(type), 0, data.length, 0);
}

/** Where the last member of a fixed-size tuple ends, before the tuple's own end padding. */
function unpaddedSize(fields: readonly DBusType[]): number {
  return fields.reduce((end, f) => alignTo(end, f.alignment) + f.fixedSize!, 0);
}

/**
 * Decodes a message body of `signature` into its values (see encodeBody).
 * sd-bus 2015 ended a body of fixed-size values right after its last value,
 * without the padding GVariant gives a fixed-size struct (a body 'uy' came as
 * 5 bytes, not 8); it read both forms, and so does this.
 */
export function decodeBody(signature: string, data: Uint8Array): DBusValue[] {
  const type = bodyType(signature);
  if (type.fields.length === 0) {
    if (data.length !== 0) refuse(`malformed body: ${data.length} bytes for an empty signature`);
    return [];
  }
  if (type.fixedSize !== null && data.length !== type.fixedSize && data.length === unpaddedSize(type.fields)) {
    const padded = Buffer.alloc(type.fixedSize);
    padded.set(data);
    return decodeValue(type, padded) as DBusValue[];
  }
  return decodeValue(type, data) as DBusValue[];
}
