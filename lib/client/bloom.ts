// The bloom filters sd-bus attached to broadcast signals on kdbus and the
// masks its match rules installed (bus-bloom.c; what goes in: bus-kernel.c
// bus_message_setup_bloom). The kernel delivers a broadcast to a match when
// every bit of the match's mask is set in the message's filter; a filter and
// a mask are built by the same recipe, so both sides must hash exactly as
// sd-bus did for kdbusfs clients and sd-bus programs to hear each other.
import { refuse } from './codec-error.js';
import { MESSAGE_TYPE_NAMES, type DBusMessage } from './dbus-message.js';
import { parseSignature } from './signature.js';
import { siphash24 } from './siphash24.js';

/** A bus's bloom parameters (KDBUS_ITEM_BLOOM_PARAMETER from HELLO or BUS_MAKE). */
export interface BloomParameters {
  /** filter size in bytes */
  size: number;
  /** how many bits each added string sets */
  nHash: number;
}

/** sd-bus's defaults for the buses it created: m = 512 bits, k = 8. */
export const DEFAULT_BLOOM_PARAMETERS: BloomParameters = { size: 64, nHash: 8 };

/** kdbus's limit on a bus's bloom size (KDBUS_BUS_BLOOM_MAX_SIZE). */
export const MAX_BLOOM_SIZE = 4096;

// sd-bus's fixed SipHash keys (bus-bloom.c hash_keys): 8 keys give 64 bytes
// of hash per added string, the most a filter can use (nHash × index bytes).
const HASH_KEYS = [
  'b9660bf0467047c18875c49c54b9bd15', 'aaa154a2e0714b39bfe1dd2e9fc54a3b',
  '63fdaebecd824812a16e4126cbfaa0c8', '23be452932d2462d82035228fe3717f5',
  '563bbfee5a4f4339afaa9408dff0fc10', '3180c873c7ea46d3aa25750f9e4c0929',
  '7df7184b7ba444d5853c06e06553966d', 'f277e96f93b54e719a0c34883925bf35',
].map(hex => Buffer.from(hex, 'hex'));

function log2Floor(n: number): number {
  return n > 1 ? Math.floor(Math.log2(n)) : 0;
}

/** Bytes of hash one bit index takes: enough to address all size × 8 bits. */
function indexBytes(size: number): number {
  return Math.floor((log2Floor(size * 8) + 7) / 8);
}

/** bloom_validate_parameters, plus kdbus's own bounds on the size. */
export function validBloomParameters(p: BloomParameters): boolean {
  return Number.isInteger(p.size) && Number.isInteger(p.nHash) && p.size > 0 && p.nHash > 0
    && p.size % 8 === 0 && p.size <= MAX_BLOOM_SIZE
    && p.nHash * indexBytes(p.size) <= HASH_KEYS.length * 8;
}

export class BloomFilter {
  readonly bytes: Buffer;

  constructor(readonly parameters: BloomParameters) {
    if (!validBloomParameters(parameters)) {
      refuse(`bloom parameters size ${parameters.size}, n_hash ${parameters.nHash} are not usable`);
    }
    this.bytes = Buffer.alloc(parameters.size);
  }

  /** Sets the nHash bits of `data`: each index is the next w hash bytes, big end first. */
  private add(data: string): void {
    const bits = this.parameters.size * 8;
    const w = indexBytes(this.parameters.size);
    const input = Buffer.from(data, 'utf8');
    let hash: Buffer = Buffer.alloc(0);
    let left = 0;
    let key = 0;
    for (let i = 0; i < this.parameters.nHash; i++) {
      let index = 0;
      for (let d = 0; d < w; d++) {
        if (left === 0) {
          hash = siphash24(input, HASH_KEYS[key++]!);
          left = 8;
        }
        index = index * 256 + hash[8 - left]!;
        left--;
      }
      // sd-bus masks with m - 1: m is a power of two on every bus it made
      index &= bits - 1;
      // the filter is an array of native (little-endian) u64 words
      this.bytes[index >> 3]! |= 1 << (index & 7);
    }
  }

  /** bloom_add_pair: "a:b". */
  addPair(a: string, b: string): void {
    this.add(`${a}:${b}`);
  }

  /**
   * bloom_add_prefixes: "a:p" for every proper prefix p of b that ends before
   * a `separator`, longest first, none for a separator at b's start.
   */
  addPrefixes(a: string, b: string, separator: string): void {
    for (let end = b.lastIndexOf(separator); end > 0; end = b.lastIndexOf(separator, end - 1)) {
      this.add(`${a}:${b.slice(0, end)}`);
    }
  }

  /** The strings sd-bus added for argument i (add_bloom_arg). */
  addArgument(i: number, value: string): void {
    this.addPair(`arg${i}`, value);
    this.addPrefixes(`arg${i}-dot-prefix`, value, '.');
    this.addPrefixes(`arg${i}-slash-prefix`, value, '/');
  }
}

/** Arguments past this index never entered a filter (match rules stop at arg63). */
export const MAX_BLOOM_ARGUMENTS = 64;

/**
 * The filter sd-bus computed for a broadcast message (bus_message_setup_bloom).
 * Arguments are added from the first on while they are strings, object paths
 * or signatures, or arrays of those; the first other argument ends the list.
 * sd-bus 2015 also ended it right after the first plain string argument (its
 * array check was an `if` where an `else if` was meant), so a message's string
 * arguments after its first one never reached the filter; kept here, since a
 * mask that asks for them would never match what sd-bus senders sent.
 */
function stringArgument(value: unknown): string {
  return typeof value === 'string' ? value : refuse(`a string argument is ${typeof value}`);
}

export function signalBloomFilter(m: DBusMessage, parameters: BloomParameters): BloomFilter {
  const f = new BloomFilter(parameters);
  f.addPair('message-type', MESSAGE_TYPE_NAMES[m.type]);
  if (m.interface !== undefined) f.addPair('interface', m.interface);
  if (m.member !== undefined) f.addPair('member', m.member);
  if (m.path !== undefined) {
    f.addPair('path', m.path);
    f.addPair('path-slash-prefix', m.path);
    f.addPrefixes('path-slash-prefix', m.path, '/');
  }
  const types = parseSignature(m.signature);
  for (let i = 0; i < Math.min(types.length, MAX_BLOOM_ARGUMENTS); i++) {
    const type = types[i]!;
    if (type.kind === 'basic' && (type.code === 's' || type.code === 'o' || type.code === 'g')) {
      f.addArgument(i, stringArgument(m.body[i]));
      break;
    }
    if (type.kind !== 'array' || !['s', 'o', 'g'].includes(type.element.signature)) break;
    const items = m.body[i];
    if (!Array.isArray(items)) refuse(`argument ${i} of signature '${m.signature}' is not an array`);
    for (const item of items) f.addArgument(i, stringArgument(item));
  }
  return f;
}
