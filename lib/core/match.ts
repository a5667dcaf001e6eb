// A connection's match database (ipc/kdbus/match.c): which broadcasts and
// kernel notifications it wants. An entry matches when all of its rules do;
// an entry with no rules matches everything. Names are byte strings
// (itemSysname), compared byte for byte as match.c's strcmp does.
import { ITEM, LIMITS, KDBUS_MATCH_ID_ANY, SIZEOF_NOTIFY_NAME_CHANGE } from '../abi/kdbus.js';
import { items, itemSysname, sysnameShown } from '../abi/items.js';
import { errno, fail } from './errors.js';
import { nameValid } from './names.js';

type NotifyRule =
  | { type: typeof ITEM.NAME_ADD | typeof ITEM.NAME_REMOVE | typeof ITEM.NAME_CHANGE;
      oldId: bigint; newId: bigint; name: string | null }
  | { type: typeof ITEM.ID_ADD | typeof ITEM.ID_REMOVE; oldId: bigint; newId: bigint };

/**
 * One entry, compiled when it is added so that a broadcast tests it without
 * allocating: its bloom masks ORed into one per generation (every mask's
 * bits must be in the filter, so the union's must; kept in MatchDb's packed
 * arrays, not here), its ID rules as the ids they require (an entry
 * requiring two different ids never matches), its NAME rules, and its
 * notification rules. An entry mixing broadcast and notification rules
 * matches nothing, as every rule must match.
 */
interface Entry {
  readonly cookie: bigint;
  /** sender ids required (KDBUS_MATCH_ID_ANY left out) */
  readonly srcIds: readonly bigint[];
  /** names the sender must own */
  readonly names: readonly string[];
  readonly notify: readonly NotifyRule[];
  /** bytes of its rules' items, charged to the owner's user */
  readonly bytes: number;
}

/** What a rule is matched against: a user broadcast or a kernel notification. */
export type MatchSubject =
  | { kind: 'user'; srcId: bigint; srcHasName: (name: string) => boolean;
      bloomGeneration: bigint; bloom: BigUint64Array | null }
  | { kind: 'notify'; type: number; oldId: bigint; newId: bigint; name: string | null };

const NO_IDS: readonly bigint[] = Object.freeze([]);
const NO_NAMES: readonly string[] = Object.freeze([]);
const NO_NOTIFY: readonly NotifyRule[] = Object.freeze([]);
// Shared by every empty MatchDb (most connections add no match): an array is
// replaced by a grown copy before anything is written to it.
const NO_U32 = new Uint32Array(0);
const NO_I32 = new Int32Array(0);
const NO_U8 = new Uint8Array(0);

export class MatchDb {
  private entries: Entry[] = [];
  /** The entries a broadcast can match (no notification rule), in order. */
  private broadcastEntries: Entry[] = [];
  /**
   * Their masks, packed in entry order: a broadcast scans memory in sequence
   * instead of chasing an object and a buffer per entry, and a connection's
   * masks are two allocations, given back whole when they go. Generation 0,
   * the one filters almost always have, of every entry lies in `first`, one
   * after the other, so that a scan reads only what it tests (with the
   * generations side by side, a 64-byte test per 1 KiB entry missed the
   * cache on every entry: 5-8 times slower); generations 1 and up lie in
   * `later`. For broadcast entry i: firstAt[i], the offset of its generation
   * 0 in 32-bit words (-1: no BLOOM_MASK rule), laterAt[i], that of its
   * generation 1, and maskGenerations[i].
   */
  private first = NO_U32;
  private firstUsed = 0;
  private later = NO_U32;
  private laterUsed = 0;
  private firstAt = NO_I32;
  private laterAt = NO_I32;
  private maskGenerations = NO_I32;
  /** 32-bit words per generation: the bus's bloom size / 4 */
  private generationWords = 0;
  /** broadcast entries with ID or NAME rules, which the scan looks up in broadcastEntries */
  private ruled = NO_U8;
  /** The entries a notification can match (only notification rules, of one type), in order. */
  private notifyEntries: Entry[] = [];
  /** bytes of the rules' items, charged to the owner's user */
  bytes = 0;

  /** KDBUS_CMD_MATCH_ADD, items already validated. bloomSize: the bus's bloom size in bytes. */
  add(cookie: bigint, cmd: Buffer, itemsStart: number, itemsSize: number,
      replace: boolean, bloomSize: number): void {
    const masks: { at: number; generations: number }[] = [];
    const srcIds: bigint[] = [];
    const names: string[] = [];
    const notify: NotifyRule[] = [];
    let broadcastRules = 0; // BLOOM_MASK, NAME, ID (an ID of any sender too)
    for (const it of items(cmd, itemsStart, itemsSize)) {
      if (it.type === ITEM.BLOOM_MASK || it.type === ITEM.NAME || it.type === ITEM.ID) broadcastRules++;
      switch (it.type) {
        case ITEM.BLOOM_MASK:
          if (it.len < bloomSize || it.len % bloomSize !== 0) fail(errno.EDOM, 'bloom mask size');
          masks.push({ at: it.data, generations: it.len / bloomSize });
          break;
        case ITEM.NAME: {
          const name = itemSysname(cmd, it);
          if (!nameValid(name, false)) fail(errno.EINVAL, `invalid match name "${sysnameShown(name)}"`);
          names.push(name);
          break;
        }
        case ITEM.ID: {
          const id = cmd.readBigUInt64LE(it.data);
          if (id !== KDBUS_MATCH_ID_ANY) srcIds.push(id);
          break;
        }
        case ITEM.NAME_ADD:
        case ITEM.NAME_REMOVE:
        case ITEM.NAME_CHANGE: {
          const hasName = it.len > SIZEOF_NOTIFY_NAME_CHANGE;
          notify.push({ type: it.type, oldId: cmd.readBigUInt64LE(it.data), newId: cmd.readBigUInt64LE(it.data + 16),
            name: hasName ? cmd.toString('latin1', it.data + 32, cmd.indexOf(0, it.data + 32)) : null });
          break;
        }
        case ITEM.ID_ADD:
          notify.push({ type: ITEM.ID_ADD, oldId: 0n, newId: cmd.readBigUInt64LE(it.data) });
          break;
        case ITEM.ID_REMOVE:
          notify.push({ type: ITEM.ID_REMOVE, oldId: cmd.readBigUInt64LE(it.data), newId: 0n });
          break;
        default:
          fail(errno.EINVAL, `item ${it.type} is not a match rule`);
      }
    }
    if (replace) this.drop(cookie);
    if (this.entries.length + 1 > LIMITS.MATCH_MAX) fail(errno.EMFILE, 'too many matches');
    // empty rule lists shared: tens of thousands of entries are objects the collector walks
    const entry: Entry = { cookie, srcIds: srcIds.length ? srcIds : NO_IDS, names: names.length ? names : NO_NAMES,
      notify: notify.length ? notify : NO_NOTIFY, bytes: itemsSize };
    this.entries.push(entry);
    this.bytes += itemsSize;
    const forBroadcasts = notify.length === 0;
    const forNotifications = broadcastRules === 0 &&
      notify.every((r) => r.type === notify[0]!.type);
    if (forBroadcasts) this.addBroadcast(entry, cmd, masks, bloomSize);
    if (forNotifications) this.notifyEntries.push(entry);
  }

  private addBroadcast(entry: Entry, cmd: Buffer, masks: { at: number; generations: number }[],
                       bloomSize: number): void {
    const i = this.broadcastEntries.length;
    this.broadcastEntries.push(entry);
    this.firstAt = grown(this.firstAt, i + 1);
    this.laterAt = grown(this.laterAt, i + 1);
    this.maskGenerations = grown(this.maskGenerations, i + 1);
    this.ruled = grown(this.ruled, i + 1);
    this.ruled[i] = entry.srcIds.length || entry.names.length ? 1 : 0;
    if (!masks.length) {
      this.firstAt[i] = -1;
      return;
    }
    const generations = masks.reduce((n, m) => Math.max(n, m.generations), 0);
    const w = this.generationWords = bloomSize / 4;
    this.first = grown(this.first, this.firstUsed + w);
    this.later = grown(this.later, this.laterUsed + (generations - 1) * w);
    for (let g = 0; g < generations; g++) {
      const [to, at] = g === 0 ? [this.first, this.firstUsed] : [this.later, this.laterUsed + (g - 1) * w];
      mergeGeneration(cmd, masks, g, bloomSize, to, at);
    }
    this.maskGenerations[i] = generations;
    if (i > 0 && this.sameMasks(i - 1, generations)) {
      // the same masks as the entry before (as one client's many matches often are): shared, tested once
      this.firstAt[i] = this.firstAt[i - 1]!;
      this.laterAt[i] = this.laterAt[i - 1]!;
      return;
    }
    this.firstAt[i] = this.firstUsed;
    this.laterAt[i] = this.laterUsed;
    this.firstUsed += w;
    this.laterUsed += (generations - 1) * w;
  }

  /** Whether broadcast entry j has the masks just merged past the packed ones, of that many generations. */
  private sameMasks(j: number, generations: number): boolean {
    const w = this.generationWords;
    if (this.firstAt[j]! < 0 || this.maskGenerations[j] !== generations) return false;
    for (let k = 0; k < w; k++) if (this.first[this.firstAt[j]! + k] !== this.first[this.firstUsed + k]) return false;
    const n = (generations - 1) * w;
    for (let k = 0; k < n; k++) if (this.later[this.laterAt[j]! + k] !== this.later[this.laterUsed + k]) return false;
    return true;
  }

  /** KDBUS_CMD_MATCH_REMOVE: every entry with that cookie; ENOENT if none. */
  remove(cookie: bigint): void {
    if (!this.drop(cookie)) fail(errno.ENOENT, `no match with cookie ${cookie}`);
  }

  /** Removes every entry with cookie; false if there was none. */
  private drop(cookie: bigint): boolean {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => e.cookie !== cookie);
    if (this.entries.length === before) return false;
    this.bytes = this.entries.reduce((n, e) => n + e.bytes, 0);
    this.dropBroadcast(cookie);
    this.notifyEntries = this.notifyEntries.filter((e) => e.cookie !== cookie);
    return true;
  }

  /** Removes the broadcast entries with cookie, repacking the rest into arrays of their size. */
  private dropBroadcast(cookie: bigint): void {
    const w = this.generationWords;
    const kept: number[] = [];
    const slots = new Set<number>(); // masks shared by adjacent entries are copied once
    let firstWords = 0;
    let laterWords = 0;
    this.broadcastEntries.forEach((e, i) => {
      if (e.cookie === cookie) return;
      kept.push(i);
      if (this.firstAt[i]! < 0 || slots.has(this.firstAt[i]!)) return;
      slots.add(this.firstAt[i]!);
      firstWords += w;
      laterWords += (this.maskGenerations[i]! - 1) * w;
    });
    if (kept.length === this.broadcastEntries.length) return;
    const first = new Uint32Array(firstWords);
    const later = new Uint32Array(laterWords);
    const firstAt = new Int32Array(kept.length);
    const laterAt = new Int32Array(kept.length);
    const maskGenerations = new Int32Array(kept.length);
    const ruled = new Uint8Array(kept.length);
    let firstUsed = 0;
    let laterUsed = 0;
    const moved = new Map<number, number>(); // old firstAt -> new index of the first entry with it
    kept.forEach((from, i) => {
      ruled[i] = this.ruled[from]!;
      firstAt[i] = -1;
      const at = this.firstAt[from]!;
      if (at < 0) return;
      maskGenerations[i] = this.maskGenerations[from]!;
      const shared = moved.get(at);
      if (shared !== undefined) {
        firstAt[i] = firstAt[shared]!;
        laterAt[i] = laterAt[shared]!;
        return;
      }
      moved.set(at, i);
      const n = (this.maskGenerations[from]! - 1) * w;
      first.set(this.first.subarray(at, at + w), firstUsed);
      later.set(this.later.subarray(this.laterAt[from]!, this.laterAt[from]! + n), laterUsed);
      firstAt[i] = firstUsed;
      laterAt[i] = laterUsed;
      firstUsed += w;
      laterUsed += n;
    });
    this.broadcastEntries = kept.map((i) => this.broadcastEntries[i]!);
    this.first = first;
    this.firstUsed = firstUsed;
    this.later = later;
    this.laterUsed = laterUsed;
    this.firstAt = firstAt;
    this.laterAt = laterAt;
    this.maskGenerations = maskGenerations;
    this.ruled = ruled;
  }

  /** Whether any entry can match a kernel notification. */
  get watchesNotifications(): boolean {
    return this.notifyEntries.length > 0;
  }

  get size(): number {
    return this.entries.length;
  }

  matches(subject: MatchSubject, bloomWords: number): boolean {
    if (subject.kind === 'notify') return this.notifyEntries.some((e) => e.notify.every((r) => notifyMatches(r, subject)));
    // per connection, not per entry: one view of the filter, its generation as a number
    const filter = subject.bloom && new Uint32Array(subject.bloom.buffer, subject.bloom.byteOffset, bloomWords * 2);
    const generation = subject.bloomGeneration > 0xffff_ffffn ? 0xffff_ffff : Number(subject.bloomGeneration);
    const { first, later, firstAt, laterAt, maskGenerations, ruled } = this;
    const n = bloomWords * 2;
    let failed = -1; // the shared masks that failed last: not tested again
    for (let i = 0; i < this.broadcastEntries.length; i++) {
      const e = ruled[i] ? this.broadcastEntries[i]! : null;
      if (e && e.srcIds.length && !e.srcIds.every((id) => id === subject.srcId)) continue;
      const at = firstAt[i]!;
      if (at >= 0) {
        if (!filter || at === failed) continue;
        const g = Math.min(generation, maskGenerations[i]! - 1);
        if (!(g === 0 ? covers(filter, first, at, n) : covers(filter, later, laterAt[i]! + (g - 1) * n, n))) {
          failed = at;
          continue;
        }
      }
      if (!e || e.names.every((name) => subject.srcHasName(name))) return true;
    }
    return false;
  }
}

function notifyMatches(r: NotifyRule, s: Extract<MatchSubject, { kind: 'notify' }>): boolean {
  if (r.type !== s.type) return false;
  switch (r.type) {
    case ITEM.ID_ADD:
      return r.newId === KDBUS_MATCH_ID_ANY || r.newId === s.newId;
    case ITEM.ID_REMOVE:
      return r.oldId === KDBUS_MATCH_ID_ANY || r.oldId === s.oldId;
    default:
      return (r.oldId === KDBUS_MATCH_ID_ANY || r.oldId === s.oldId) &&
        (r.newId === KDBUS_MATCH_ID_ANY || r.newId === s.newId) &&
        !(r.name !== null && s.name !== null && r.name !== s.name);
  }
}

/**
 * Generation g of the union of an entry's masks, written at to[at]: each
 * mask's min(g, its last). A filter of generation G then needs the union
 * at min(G, the longest's last), which is what every mask alone would
 * require of it.
 */
function mergeGeneration(cmd: Buffer, masks: { at: number; generations: number }[], g: number,
                         bloomSize: number, to: Uint32Array, at: number): void {
  const words = bloomSize / 4;
  to.fill(0, at, at + words);
  for (const m of masks) {
    const from = m.at + Math.min(g, m.generations - 1) * bloomSize;
    for (let i = 0; i < words; i++) to[at + i]! |= cmd.readUInt32LE(from + i * 4);
  }
}

/** a, or a copy of it with room for at least n elements (doubling: adding stays linear). */
function grown<T extends Uint32Array | Int32Array | Uint8Array>(a: T, n: number): T {
  if (n <= a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(Math.max(n, 2 * a.length, 16));
  b.set(a);
  return b;
}

/**
 * kdbus_match_bloom on 32-bit words (no BigInt per word): every bit of the
 * mask generation (the filter's, or the mask's last one if the filter is
 * newer) must be set in the filter. words: the bloom size in 64-bit words;
 * generation: the filter's, saturated at 2^32-1 (no mask has that many).
 */
export function bloomMatches(filter: Uint32Array, generation: number, mask: Uint32Array,
                             generations: number, words: number): boolean {
  return covers(filter, mask, Math.min(generation, generations - 1) * words * 2, words * 2);
}

/** Whether every bit of masks[base, base + n) is set in filter[0, n). */
function covers(filter: Uint32Array, masks: Uint32Array, base: number, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const m = masks[base + i]!;
    if (((filter[i]! & m) >>> 0) !== m) return false;
  }
  return true;
}
