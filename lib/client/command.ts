// Building kdbus command buffers: a fixed header followed by 8-aligned
// items, the total written into the leading u64 size.
import { ITEM_HEADER_SIZE, align8 } from '../abi/kdbus.js';

export type U64 = bigint | number;

/** A command being built: set header fields, append items, then finish(). */
export class CommandBuilder {
  private parts: Buffer[] = [];
  private length: number;

  /** headerSize: the fixed struct's size (its items start there). */
  constructor(private readonly headerSize: number) {
    this.length = headerSize;
  }

  private push(type: number, payload: Buffer | null, payloadSize: number): Buffer {
    const size = ITEM_HEADER_SIZE + payloadSize;
    const item = Buffer.alloc(align8(size));
    item.writeBigUInt64LE(BigInt(size), 0);
    item.writeBigUInt64LE(BigInt(type), 8);
    if (payload) payload.copy(item, ITEM_HEADER_SIZE);
    this.parts.push(item);
    this.length += item.length;
    return item;
  }

  /** An item whose payload is bytes. */
  bytes(type: number, payload: Buffer): this {
    this.push(type, payload, payload.length);
    return this;
  }

  /** An item whose payload is u64s. */
  u64s(type: number, values: U64[]): this {
    const item = this.push(type, null, values.length * 8);
    values.forEach((v, i) => item.writeBigUInt64LE(BigInt(v), ITEM_HEADER_SIZE + i * 8));
    return this;
  }

  /** An item whose payload is a NUL-terminated byte string (names are bytes: latin1). */
  string(type: number, s: string, prefix: U64[] = []): this {
    const str = Buffer.from(`${s}\0`, 'latin1');
    const payload = Buffer.alloc(prefix.length * 8 + str.length);
    prefix.forEach((v, i) => payload.writeBigUInt64LE(BigInt(v), i * 8));
    str.copy(payload, prefix.length * 8);
    return this.bytes(type, payload);
  }

  /** An item whose payload is s32 values (KDBUS_ITEM_FDS). */
  s32s(type: number, values: number[]): this {
    const item = this.push(type, null, values.length * 4);
    values.forEach((v, i) => item.writeInt32LE(v, ITEM_HEADER_SIZE + i * 4));
    return this;
  }

  /** The command: header (size set, other fields from `fields` at their offsets) and items. */
  finish(fields: Record<number, U64> = {}): Buffer {
    const buf = Buffer.alloc(this.length);
    buf.writeBigUInt64LE(BigInt(this.length), 0);
    for (const [off, v] of Object.entries(fields)) {
      if (typeof v === 'number' && v < 0) buf.writeBigInt64LE(BigInt(v), Number(off));
      else buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), Number(off));
    }
    let off = this.headerSize;
    for (const p of this.parts) {
      p.copy(buf, off);
      off += p.length;
    }
    return buf;
  }
}
