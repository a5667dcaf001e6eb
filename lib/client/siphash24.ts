// SipHash-2-4 (Aumasson and Bernstein), the hash sd-bus built its bloom
// filters with. Written here rather than taken from npm: the hash is a few
// dozen lines, the npm packages for it take string keys or return split
// 32-bit words, and the bloom filter needs the 8 output bytes in the order
// the reference implementation stores them (little-endian).

const MASK = (1n << 64n) - 1n;

function rotl(x: bigint, b: bigint): bigint {
  return ((x << b) | (x >> (64n - b))) & MASK;
}

/** SipHash-2-4 of `data` under the 16-byte `key`: the 8-byte hash, little-endian. */
export function siphash24(data: Uint8Array, key: Uint8Array): Buffer {
  if (key.length !== 16) throw new RangeError(`siphash24 key must be 16 bytes, not ${key.length}`);
  const k = Buffer.from(key.buffer, key.byteOffset, 16);
  const k0 = k.readBigUInt64LE(0);
  const k1 = k.readBigUInt64LE(8);
  let v0 = k0 ^ 0x736f6d6570736575n;
  let v1 = k1 ^ 0x646f72616e646f6dn;
  let v2 = k0 ^ 0x6c7967656e657261n;
  let v3 = k1 ^ 0x7465646279746573n;
  const round = (): void => {
    v0 = (v0 + v1) & MASK; v1 = rotl(v1, 13n); v1 ^= v0; v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK; v3 = rotl(v3, 16n); v3 ^= v2;
    v0 = (v0 + v3) & MASK; v3 = rotl(v3, 21n); v3 ^= v0;
    v2 = (v2 + v1) & MASK; v1 = rotl(v1, 17n); v1 ^= v2; v2 = rotl(v2, 32n);
  };
  const compress = (m: bigint): void => {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  };
  const d = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const whole = d.length - (d.length % 8);
  for (let i = 0; i < whole; i += 8) compress(d.readBigUInt64LE(i));
  // last block: the remaining bytes, with the length's low byte on top
  let last = BigInt(d.length & 0xff) << 56n;
  for (let i = whole; i < d.length; i++) last |= BigInt(d[i]!) << BigInt(8 * (i - whole));
  compress(last);
  v2 ^= 0xffn;
  for (let i = 0; i < 4; i++) round();
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3);
  return out;
}
