// SipHash-2-4 (Aumasson and Bernstein), the hash sd-bus built its bloom
// filters with. Written here rather than taken from npm: the hash is a few
// dozen lines, the npm packages for it take string keys or return split
// 32-bit words, and the bloom filter needs the 8 output bytes in the order
// the reference implementation stores them (little-endian). The four 64-bit
// state words are kept as 32-bit halves in a Uint32Array (high half first):
// BigInt arithmetic was ten times slower, and every broadcast signal hashes a
// dozen strings or more.

const V0H = 0, V0L = 1, V1H = 2, V1L = 3, V2H = 4, V2L = 5, V3H = 6, V3L = 7;

/** v[a] += v[b] on 64-bit words given by their high-half index */
function add(v: Uint32Array, a: number, b: number): void {
  const lo = v[a + 1]! + v[b + 1]!;
  v[a] = v[a]! + v[b]! + (lo > 0xffffffff ? 1 : 0);
  v[a + 1] = lo;
}

/** v[a] = rotl(v[a], bits) ^ v[x], for 0 < bits < 32 */
function rotateXor(v: Uint32Array, a: number, bits: number, x: number): void {
  const h = v[a]!, l = v[a + 1]!;
  v[a] = ((h << bits) | (l >>> (32 - bits))) ^ v[x]!;
  v[a + 1] = ((l << bits) | (h >>> (32 - bits))) ^ v[x + 1]!;
}

function swapHalves(v: Uint32Array, a: number): void {
  const h = v[a]!;
  v[a] = v[a + 1]!;
  v[a + 1] = h;
}

function sipRound(v: Uint32Array): void {
  add(v, V0H, V1H); rotateXor(v, V1H, 13, V0H); swapHalves(v, V0H);
  add(v, V2H, V3H); rotateXor(v, V3H, 16, V2H);
  add(v, V0H, V3H); rotateXor(v, V3H, 21, V0H);
  add(v, V2H, V1H); rotateXor(v, V1H, 17, V2H); swapHalves(v, V2H);
}

function compress(v: Uint32Array, mh: number, ml: number): void {
  v[V3H] ^= mh; v[V3L] ^= ml;
  sipRound(v);
  sipRound(v);
  v[V0H] ^= mh; v[V0L] ^= ml;
}

/** SipHash-2-4 of `data` under the 16-byte `key`: the 8-byte hash, little-endian. */
export function siphash24(data: Uint8Array, key: Uint8Array): Buffer {
  if (key.length !== 16) throw new RangeError(`siphash24 key must be 16 bytes, not ${key.length}`);
  const k = Buffer.from(key.buffer, key.byteOffset, 16);
  const k0h = k.readUInt32LE(4), k0l = k.readUInt32LE(0), k1h = k.readUInt32LE(12), k1l = k.readUInt32LE(8);
  // the initial state spells "somepseudorandomlygeneratedbytes"
  const v = Uint32Array.of(k0h ^ 0x736f6d65, k0l ^ 0x70736575, k1h ^ 0x646f7261, k1l ^ 0x6e646f6d,
    k0h ^ 0x6c796765, k0l ^ 0x6e657261, k1h ^ 0x74656462, k1l ^ 0x79746573);
  const d = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const whole = d.length - (d.length % 8);
  for (let i = 0; i < whole; i += 8) compress(v, d.readUInt32LE(i + 4), d.readUInt32LE(i));
  // last block: the remaining bytes, with the length's low byte on top
  const tail = Buffer.alloc(8);
  d.copy(tail, 0, whole);
  tail[7] = d.length & 0xff;
  compress(v, tail.readUInt32LE(4), tail.readUInt32LE(0));
  v[V2L] ^= 0xff;
  for (let i = 0; i < 4; i++) sipRound(v);
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32LE((v[V0L]! ^ v[V1L]! ^ v[V2L]! ^ v[V3L]!) >>> 0, 0);
  out.writeUInt32LE((v[V0H]! ^ v[V1H]! ^ v[V2H]! ^ v[V3H]!) >>> 0, 4);
  return out;
}
