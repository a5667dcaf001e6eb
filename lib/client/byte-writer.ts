// The growing buffer both wire formats write into (GVariant in gvariant.ts,
// classic D-Bus in proxy/dbus1-marshal.ts): positions, and so alignment,
// count from its start; a byte not yet written is zero.
import { alignTo } from './signature.js';

export class ByteWriter {
  buf = Buffer.alloc(256);
  len = 0;

  protected reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(grown, 0, 0, this.len);
    this.buf = grown;
  }

  /** Zero bytes up to the next multiple of `alignment`. */
  align(alignment: number): void {
    const to = alignTo(this.len, alignment);
    this.reserve(to - this.len);
    this.buf.fill(0, this.len, to);
    this.len = to;
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}
