// Helpers every kind of test uses, in process or end to end: waiting for a
// condition, bounding a promise, the errno a core call throws, and the bytes
// of kdbus items as userspace writes them. Nothing here needs root, a mount
// or tap.
import { setTimeout as sleep } from 'node:timers/promises';
import { ITEM_HEADER_SIZE, align8 } from '../lib/abi/kdbus.js';
import { KdbusError } from '../lib/core/errors.js';

export { sleep };

/**
 * Polls check every `every` ms until it holds (true) or ms pass (false);
 * checked once more at the deadline. A check that throws counts as not yet.
 */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000, every = 20): Promise<boolean> {
  const holds = async (): Promise<boolean> => {
    try {
      return await check();
    } catch {
      return false;
    }
  };
  for (const end = Date.now() + ms; Date.now() < end; await sleep(every)) {
    if (await holds()) return true;
  }
  return holds();
}

/** until(), or an Error saying what never happened. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 5000, every = 20): Promise<void> {
  if (!(await until(check, ms, every))) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
}

/** p, or a rejection after ms naming what did not finish. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expire = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, expire]).finally(() => clearTimeout(timer));
}

/** The errno fn fails with (a KdbusError), null if it succeeds; anything else thrown is rethrown. */
export function errnoOf(fn: () => unknown): number | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof KdbusError) return e.errno;
    throw e;
  }
}

/** u64 values, little endian, one after the other. */
export function u64s(...v: bigint[]): Buffer {
  const b = Buffer.alloc(8 * v.length);
  v.forEach((x, i) => b.writeBigUInt64LE(BigInt.asUintN(64, x), 8 * i));
  return b;
}

/** A NUL-terminated string, as its UTF-8 bytes. */
export function str(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

/**
 * One item: {size, type, payload} zero-padded to 8. `size` defaults to
 * 16 + payload length (unaligned, as userspace writes it).
 */
export function item(type: number | bigint, payload: Buffer = Buffer.alloc(0), size?: bigint | number): Buffer {
  const realSize = ITEM_HEADER_SIZE + payload.length;
  const b = Buffer.alloc(align8(realSize));
  b.writeBigUInt64LE(BigInt(size ?? realSize), 0);
  b.writeBigUInt64LE(BigInt(type), 8);
  payload.copy(b, ITEM_HEADER_SIZE);
  return b;
}

/**
 * How to run a node script under another uid: through env(1) without tap's
 * NODE_OPTIONS, whose loaders live in this checkout's node_modules, which
 * that uid cannot reach from a clone under a 0700 directory (tap also adds
 * them to node children it spawns itself, so node is not spawned directly).
 */
export function nodeForOtherUid(...args: string[]): [string, string[]] {
  return ['/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, ...args]];
}
