// The classic D-Bus wire format (D-Bus specification, "Message Protocol",
// version 1): values aligned to their natural size counted from the
// message's start, arrays with a 32-bit byte length, strings with a 32-bit
// length and a NUL, signatures with an 8-bit length; a 12-byte fixed header,
// the header fields as a(yv), padding to 8, the body. Read in both byte
// orders ('l' and 'B'), written in either (little-endian by default).
//
// Written here rather than taken from npm: the D-Bus libraries for Node
// (dbus-next, dbus-native) keep their marshaller inside a whole client with
// its own value model; the proxy translates values to and from the GVariant
// codec of lib/client, so it marshals the same DBusValue shapes
// (lib/client/variant.ts) and refuses malformed input with the same
// CodecError, never reading outside the bytes it was given.
import { ByteWriter } from '../client/byte-writer.js';
import { refuse } from '../client/codec-error.js';
import type { DBusMessage } from '../client/dbus-message.js';
import { HeaderField, MessageType } from '../client/dbus-message.js';
import {
  isBusName, isErrorName, isInterfaceName, isMemberName, isObjectPath,
} from '../client/dbus-names.js';
import { alignTo, MAX_TOTAL_DEPTH, isValidSignature, parseSignature, parseSingleType, type DBusType } from '../client/signature.js';
import { Variant, type DBusValue } from '../client/variant.js';

export const DBUS1_VERSION = 1;
export const LITTLE = 0x6c; // 'l'
export const BIG = 0x42; // 'B'
/** The fixed header and the header fields array's length word. */
export const FIXED_SIZE = 16;
/** D-Bus specification limits. */
export const MAX_ARRAY_BYTES = 64 << 20;

/** dbus1 alignment of a type: natural size for fixed types, 4 for strings and arrays, 8 for structs. */
export function dbus1Alignment(t: DBusType): number {
  switch (t.kind) {
    case 'basic':
      switch (t.code) {
        case 'y': case 'g': return 1;
        case 'n': case 'q': return 2;
        case 'x': case 't': case 'd': return 8;
        default: return 4; // b i u h s o
      }
    case 'array': return 4;
    case 'variant': return 1;
    case 'struct': case 'dict-entry': return 8;
  }
}

const INT_RANGE: Record<string, [bigint, bigint]> = {
  y: [0n, 0xffn], n: [-0x8000n, 0x7fffn], q: [0n, 0xffffn], i: [-0x8000_0000n, 0x7fff_ffffn],
  u: [0n, 0xffff_ffffn], h: [0n, 0xffff_ffffn], x: [-(1n << 63n), (1n << 63n) - 1n], t: [0n, (1n << 64n) - 1n],
};

function intOf(code: string, v: DBusValue): bigint {
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else return refuse(`cannot encode ${typeof v} as D-Bus type '${code}'`);
  const [lo, hi] = INT_RANGE[code]!;
  if (b < lo || b > hi) refuse(`${b} is out of range for D-Bus type '${code}'`);
  return b;
}

/** A fixed-size number: its size (and alignment) and Buffer's writers of it, little- and big-endian. */
type Put<V> = readonly [size: number, le: (v: V, at: number) => number, be: (v: V, at: number) => number];
const B = Buffer.prototype;
const NUMBERS = {
  n: [2, B.writeInt16LE, B.writeInt16BE], q: [2, B.writeUInt16LE, B.writeUInt16BE],
  i: [4, B.writeInt32LE, B.writeInt32BE], u: [4, B.writeUInt32LE, B.writeUInt32BE], h: [4, B.writeUInt32LE, B.writeUInt32BE],
  d: [8, B.writeDoubleLE, B.writeDoubleBE],
} as const satisfies Record<string, Put<number>>;
const BIGINTS = {
  x: [8, B.writeBigInt64LE, B.writeBigInt64BE], t: [8, B.writeBigUInt64LE, B.writeBigUInt64BE],
} as const satisfies Record<string, Put<bigint>>;

/** Serialises values at positions counted from the buffer's start (the message's start). */
export class Dbus1Writer extends ByteWriter {
  constructor(readonly littleEndian = true) {
    super();
  }

  u8(v: number): void { this.reserve(1); this.buf[this.len++] = v; }
  u32(v: number): void { this.put(NUMBERS.u, v); }
  /** A fixed-size number, aligned to its size, in this writer's byte order. */
  private put<V>([size, le, be]: Put<V>, v: V): void {
    this.align(size); this.reserve(size);
    (this.littleEndian ? le : be).call(this.buf, v, this.len);
    this.len += size;
  }
  /** Overwrites a u32 written earlier (an array's length). */
  patch32(at: number, v: number): void {
    if (this.littleEndian) this.buf.writeUInt32LE(v, at); else this.buf.writeUInt32BE(v, at);
  }

  private str(s: string, lenBytes: 1 | 4): void {
    if (s.includes('\0')) refuse('a D-Bus string cannot hold a NUL character');
    const b = Buffer.from(s, 'utf8');
    if (lenBytes === 1) {
      if (b.length > 255) refuse('a signature is at most 255 bytes');
      this.u8(b.length);
    } else this.u32(b.length);
    this.bytes(b);
    this.u8(0);
  }

  write(t: DBusType, v: DBusValue, depth = 0): void {
    if (depth > MAX_TOTAL_DEPTH) refuse(`containers nest deeper than ${MAX_TOTAL_DEPTH}`);
    switch (t.kind) {
      case 'basic': return this.basic(t.code, v);
      case 'variant': {
        if (!(v instanceof Variant)) return refuse('a D-Bus variant needs a Variant');
        this.str(v.signature, 1);
        return this.write(v.type, v.value, depth + 1);
      }
      case 'struct': case 'dict-entry': {
        const fields = t.kind === 'struct' ? t.fields : [t.key, t.value];
        if (!Array.isArray(v) || v.length !== fields.length) return refuse(`cannot encode the value as '${t.signature}'`);
        this.align(8);
        fields.forEach((f, i) => this.write(f, v[i]!, depth + 1));
        return;
      }
      case 'array': {
        this.u32(0);
        const lenAt = this.len - 4;
        this.align(dbus1Alignment(t.element));
        const start = this.len;
        if (t.element.signature === 'y' && v instanceof Uint8Array) this.bytes(v);
        else for (const item of items(t, v)) this.write(t.element, item, depth + 1);
        const size = this.len - start;
        if (size > MAX_ARRAY_BYTES) refuse(`an array of ${size} bytes is longer than D-Bus allows (64 MiB)`);
        this.patch32(lenAt, size);
        return;
      }
    }
  }

  private basic(code: string, v: DBusValue): void {
    switch (code) {
      case 'y': this.u8(Number(intOf(code, v))); return;
      case 'b':
        if (typeof v !== 'boolean') refuse('cannot encode a non-boolean as \'b\'');
        this.u32(v ? 1 : 0);
        return;
      case 'n': case 'q': case 'i': case 'u': case 'h': this.put(NUMBERS[code], Number(intOf(code, v))); return;
      case 'x': case 't': this.put(BIGINTS[code], intOf(code, v)); return;
      case 'd':
        if (typeof v !== 'number') refuse('cannot encode a non-number as \'d\'');
        this.put(NUMBERS.d, v);
        return;
      case 's': case 'o':
        if (typeof v !== 'string') refuse(`cannot encode a non-string as '${code}'`);
        if (code === 'o' && !isObjectPath(v)) refuse(`invalid object path ${JSON.stringify(v)}`);
        this.str(v, 4);
        return;
      case 'g':
        if (typeof v !== 'string' || !isValidSignature(v)) refuse('invalid signature value');
        this.str(v, 1);
        return;
    }
  }

}

function items(t: Extract<DBusType, { kind: 'array' }>, v: DBusValue): Iterable<DBusValue> {
  if (t.element.kind === 'dict-entry') {
    if (v instanceof Map) return [...v];
    if (Array.isArray(v)) return v;
    if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !(v instanceof Variant)) return Object.entries(v);
  } else if (Array.isArray(v)) return v;
  else if (v instanceof Uint8Array) return v;
  return refuse(`cannot encode the value as '${t.signature}'`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads values from buf[0, end); positions count from the buffer's start. */
export class Dbus1Reader {
  pos = 0;
  constructor(readonly buf: Buffer, readonly littleEndian: boolean, public end = buf.length) {}

  private need(n: number): void {
    if (this.pos + n > this.end) refuse(`malformed message: a value runs past the end at byte ${this.pos}`);
  }

  align(a: number): void {
    const to = alignTo(this.pos, a);
    this.need(to - this.pos);
    for (let i = this.pos; i < to; i++) if (this.buf[i] !== 0) refuse(`malformed message: padding byte ${i} is not zero`);
    this.pos = to;
  }

  u8(): number { this.need(1); return this.buf[this.pos++]!; }
  u32(): number {
    this.align(4); this.need(4);
    const v = this.littleEndian ? this.buf.readUInt32LE(this.pos) : this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private str(lenBytes: 1 | 4, what: string): string {
    const n = lenBytes === 1 ? this.u8() : this.u32();
    this.need(n + 1);
    if (this.buf[this.pos + n] !== 0) refuse(`malformed message: ${what} is not NUL-terminated`);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    if (bytes.includes(0)) refuse(`malformed message: ${what} holds a NUL`);
    let s: string;
    try {
      s = utf8.decode(bytes);
    } catch {
      return refuse(`malformed message: ${what} is not valid UTF-8`);
    }
    this.pos += n + 1;
    return s;
  }

  read(t: DBusType, depth = 0): DBusValue {
    if (depth > MAX_TOTAL_DEPTH) refuse(`malformed message: containers nest deeper than ${MAX_TOTAL_DEPTH}`);
    switch (t.kind) {
      case 'basic': return this.basic(t.code);
      case 'variant': {
        const sig = this.str(1, 'a variant signature');
        let vt: DBusType;
        try {
          vt = parseSingleType(sig);
        } catch (e) {
          return refuse(`malformed message: variant signature: ${(e as Error).message}`);
        }
        return new Variant(sig, this.read(vt, depth + 1));
      }
      case 'struct': case 'dict-entry': {
        this.align(8);
        const fields = t.kind === 'struct' ? t.fields : [t.key, t.value];
        return fields.map(f => this.read(f, depth + 1));
      }
      case 'array': {
        const size = this.u32();
        if (size > MAX_ARRAY_BYTES) refuse(`malformed message: array of ${size} bytes (more than 64 MiB)`);
        this.align(dbus1Alignment(t.element));
        const stop = this.pos + size;
        if (stop > this.end) refuse('malformed message: array runs past the end');
        if (t.element.signature === 'y') {
          const b = Buffer.from(this.buf.subarray(this.pos, stop));
          this.pos = stop;
          return b;
        }
        const out: DBusValue[] = [];
        while (this.pos < stop) {
          out.push(this.read(t.element, depth + 1));
          if (this.pos > stop) refuse('malformed message: an array element runs past the array');
        }
        if (t.element.kind === 'dict-entry') return new Map(out.map(e => [(e as DBusValue[])[0]!, (e as DBusValue[])[1]!]));
        return out;
      }
    }
  }

  private basic(code: string): DBusValue {
    const b = this.buf;
    const le = this.littleEndian;
    switch (code) {
      case 'y': return this.u8();
      case 'b': {
        const v = this.u32();
        if (v > 1) refuse(`malformed message: boolean ${v}`);
        return v === 1;
      }
      case 'n': case 'q': {
        this.align(2); this.need(2);
        const v = code === 'n' ? (le ? b.readInt16LE(this.pos) : b.readInt16BE(this.pos)) : (le ? b.readUInt16LE(this.pos) : b.readUInt16BE(this.pos));
        this.pos += 2;
        return v;
      }
      case 'i': {
        this.align(4); this.need(4);
        const v = le ? b.readInt32LE(this.pos) : b.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      }
      case 'u': case 'h': return this.u32();
      case 'x': case 't': case 'd': {
        this.align(8); this.need(8);
        const p = this.pos;
        this.pos += 8;
        if (code === 'd') return le ? b.readDoubleLE(p) : b.readDoubleBE(p);
        if (code === 'x') return le ? b.readBigInt64LE(p) : b.readBigInt64BE(p);
        return le ? b.readBigUInt64LE(p) : b.readBigUInt64BE(p);
      }
      case 's': return this.str(4, 'a string');
      case 'o': {
        const s = this.str(4, 'an object path');
        if (!isObjectPath(s)) refuse(`malformed message: invalid object path ${JSON.stringify(s)}`);
        return s;
      }
      case 'g': {
        const s = this.str(1, 'a signature');
        if (!isValidSignature(s)) refuse(`malformed message: invalid signature ${JSON.stringify(s)}`);
        return s;
      }
    }
    return refuse(`unknown type code ${code}`);
  }
}

// ---------------------------------------------------------------- messages

type FieldKey = 'path' | 'interface' | 'member' | 'errorName' | 'replyCookie' | 'destination' | 'sender' | 'signature' | 'unixFds';
const FIELDS: Record<number, { key: FieldKey; type: 'o' | 's' | 'u' | 'g'; valid: (v: never) => boolean }> = {
  [HeaderField.PATH]: { key: 'path', type: 'o', valid: isObjectPath },
  [HeaderField.INTERFACE]: { key: 'interface', type: 's', valid: isInterfaceName },
  [HeaderField.MEMBER]: { key: 'member', type: 's', valid: isMemberName },
  [HeaderField.ERROR_NAME]: { key: 'errorName', type: 's', valid: isErrorName },
  [HeaderField.REPLY_SERIAL]: { key: 'replyCookie', type: 'u', valid: (v: number) => v > 0 },
  [HeaderField.DESTINATION]: { key: 'destination', type: 's', valid: isBusName },
  [HeaderField.SENDER]: { key: 'sender', type: 's', valid: isBusName },
  [HeaderField.SIGNATURE]: { key: 'signature', type: 'g', valid: () => true },
  [HeaderField.UNIX_FDS]: { key: 'unixFds', type: 'u', valid: () => true },
};
const FIELD_TYPE = parseSingleType('a(yv)');

/** The size of the whole message whose first 16 bytes are `head`, or a CodecError for a bad fixed header. */
export function dbus1MessageSize(head: Buffer): number {
  if (head[0] !== LITTLE && head[0] !== BIG) refuse(`malformed message: endianness byte 0x${head[0]!.toString(16)}`);
  const le = head[0] === LITTLE;
  if (head[3] !== DBUS1_VERSION) refuse(`malformed message: protocol version ${head[3]}`);
  const body = le ? head.readUInt32LE(4) : head.readUInt32BE(4);
  const fields = le ? head.readUInt32LE(12) : head.readUInt32BE(12);
  if (fields > MAX_ARRAY_BYTES) refuse(`malformed message: header fields of ${fields} bytes`);
  return alignTo(FIXED_SIZE + fields, 8) + body;
}

/** Decodes one whole dbus1 message (either byte order). */
export function decodeDbus1(data: Buffer): DBusMessage {
  if (data.length < FIXED_SIZE) refuse('malformed message: shorter than the fixed header');
  const size = dbus1MessageSize(data);
  if (size !== data.length) refuse(`malformed message: ${size} bytes announced, ${data.length} given`);
  const le = data[0] === LITTLE;
  const type = data[1]!;
  if (type < MessageType.METHOD_CALL || type > MessageType.SIGNAL) refuse(`malformed message: type ${type}`);
  const cookie = le ? data.readUInt32LE(8) : data.readUInt32BE(8);
  if (cookie === 0) refuse('malformed message: serial 0');
  const bodySize = le ? data.readUInt32LE(4) : data.readUInt32BE(4);
  const r = new Dbus1Reader(data, le, size - bodySize);
  r.pos = 12;
  const m: DBusMessage = { type: type as MessageType, flags: data[2]!, cookie, signature: '', body: [] };
  const fields = r.read(FIELD_TYPE) as [number, Variant][];
  const seen = new Set<number>();
  for (const [code, v] of fields) {
    const rule = FIELDS[code];
    if (!rule) continue; // unknown fields are ignored (specification)
    if (seen.has(code)) refuse(`malformed message: header field ${code} given twice`);
    seen.add(code);
    if (v.signature !== rule.type || !(rule.valid as (x: unknown) => boolean)(v.value)) {
      refuse(`malformed message: header field ${rule.key} is invalid`);
    }
    (m as unknown as Record<string, unknown>)[rule.key] = v.value;
  }
  r.align(8);
  if (r.pos !== size - bodySize) refuse('malformed message: bytes after the header fields');
  switch (m.type) {
    case MessageType.METHOD_CALL:
      if (m.path === undefined || m.member === undefined) refuse('malformed message: a method call needs a path and a member');
      break;
    case MessageType.SIGNAL:
      if (m.path === undefined || m.interface === undefined || m.member === undefined) {
        refuse('malformed message: a signal needs a path, an interface and a member');
      }
      break;
    case MessageType.ERROR:
      if (m.errorName === undefined || m.replyCookie === undefined) refuse('malformed message: an error needs a name and a reply serial');
      break;
    case MessageType.METHOD_RETURN:
      if (m.replyCookie === undefined) refuse('malformed message: a reply needs a reply serial');
      break;
  }
  const body = new Dbus1Reader(data, le);
  body.pos = size - bodySize;
  m.body = parseSignature(m.signature).map(t => body.read(t));
  if (body.pos !== size) refuse(`malformed message: ${size - body.pos} bytes after the body of signature '${m.signature}'`);
  return m;
}

/** Encodes a message in the dbus1 format; its cookie is the serial. */
export function encodeDbus1(m: DBusMessage, littleEndian = true): Buffer {
  const w = new Dbus1Writer(littleEndian);
  w.u8(littleEndian ? LITTLE : BIG);
  w.u8(m.type);
  w.u8(m.flags);
  w.u8(DBUS1_VERSION);
  w.u32(0); // body size, patched below
  w.u32(m.cookie);
  const fields: DBusValue[] = [];
  for (const [code, rule] of Object.entries(FIELDS)) {
    const v = m[rule.key];
    if (v === undefined || (rule.key === 'signature' && v === '') || (rule.key === 'unixFds' && v === 0)) continue;
    fields.push([Number(code), new Variant(rule.type, v)]);
  }
  w.write(FIELD_TYPE, fields);
  w.align(8);
  const bodyStart = w.len;
  parseSignature(m.signature).forEach((t, i) => {
    if (i >= m.body.length) refuse(`signature '${m.signature}' has more values than the ${m.body.length} given`);
    w.write(t, m.body[i]!);
  });
  if (parseSignature(m.signature).length !== m.body.length) refuse(`signature '${m.signature}' does not fit the ${m.body.length} values`);
  w.patch32(4, w.len - bodyStart);
  return w.result();
}
