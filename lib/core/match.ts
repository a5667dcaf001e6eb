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
  readonly srcIds: bigint[];
  /** names the sender must own */
  readonly names: string[];
  readonly notify: NotifyRule[];
  /** bytes of its rules' items, charged to the owner's user */
  readonly bytes: number;
}

/** What a rule is matched against: a user broadcast or a kernel notification. */
export type MatchSubject =
  | { kind: 'user'; srcId: bigint; srcHasName: (name: string) => boolean;
      bloomGeneration: bigint; bloom: BigUint64Array | null }
  | { kind: 'notify'; type: number; oldId: bigint; newId: bigint; name: string | null };

export class MatchDb {
  private entries: Entry[] = [];
  /** The entries a broadcast can match (no notification rule), in order. */
  private broadcastEntries: Entry[] = [];
  /**
   * Their masks, packed in one array in entry order: a broadcast scans it in
   * sequence instead of chasing an object and a buffer per entry (with tens
   * of thousands of entries that chase, not the test, was the cost), and a
   * connection's masks are one allocation, given back whole when they go.
   * For broadcast entry i: maskAt[i], the offset of its first generation in
   * 32-bit words (-1: no BLOOM_MASK rule), and maskGenerations[i].
   */
  private masks = new Uint32Array(0);
  private masksUsed = 0;
  private maskAt = new Int32Array(0);
  private maskGenerations = new Int32Array(0);
  /** 32-bit words per generation: the bus's bloom size / 4 */
  private generationWords = 0;
  /** broadcast entries with ID or NAME rules, which the scan looks up in broadcastEntries */
  private ruled = new Uint8Array(0);
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
    const entry: Entry = { cookie, srcIds, names, notify, bytes: itemsSize };
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
    this.maskAt = grown(this.maskAt, i + 1);
    this.maskGenerations = grown(this.maskGenerations, i + 1);
    this.ruled = grown(this.ruled, i + 1);
    this.ruled[i] = entry.srcIds.length || entry.names.length ? 1 : 0;
    if (!masks.length) {
      this.maskAt[i] = -1;
      return;
    }
    const generations = masks.reduce((n, m) => Math.max(n, m.generations), 0);
    this.generationWords = bloomSize / 4;
    const at = this.masksUsed;
    this.masksUsed += generations * this.generationWords;
    this.masks = grown(this.masks, this.masksUsed);
    mergeMasks(cmd, masks, generations, bloomSize, this.masks, at);
    this.maskAt[i] = at;
    this.maskGenerations[i] = generations;
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
    const kept: number[] = [];
    let words = 0;
    this.broadcastEntries.forEach((e, i) => {
      if (e.cookie === cookie) return;
      kept.push(i);
      if (this.maskAt[i]! >= 0) words += this.maskGenerations[i]! * this.generationWords;
    });
    if (kept.length === this.broadcastEntries.length) return;
    const masks = new Uint32Array(words);
    const maskAt = new Int32Array(kept.length);
    const maskGenerations = new Int32Array(kept.length);
    const ruled = new Uint8Array(kept.length);
    let used = 0;
    kept.forEach((from, i) => {
      const at = this.maskAt[from]!;
      const n = this.maskGenerations[from]! * this.generationWords;
      maskAt[i] = at < 0 ? -1 : used;
      maskGenerations[i] = this.maskGenerations[from]!;
      ruled[i] = this.ruled[from]!;
      if (at >= 0) masks.set(this.masks.subarray(at, at + n), used);
      if (at >= 0) used += n;
    });
    this.broadcastEntries = kept.map((i) => this.broadcastEntries[i]!);
    this.masks = masks;
    this.masksUsed = used;
    this.maskAt = maskAt;
    this.maskGenerations = maskGenerations;
    this.ruled = ruled;
  }

  get size(): number {
    return this.entries.length;
  }

  matches(subject: MatchSubject, bloomWords: number): boolean {
    if (subject.kind === 'notify') return this.notifyEntries.some((e) => e.notify.every((r) => notifyMatches(r, subject)));
    // per connection, not per entry: one view of the filter, its generation as a number
    const filter = subject.bloom && new Uint32Array(subject.bloom.buffer, subject.bloom.byteOffset, bloomWords * 2);
    const generation = subject.bloomGeneration > 0xffff_ffffn ? 0xffff_ffff : Number(subject.bloomGeneration);
    const { masks, maskAt, maskGenerations, ruled } = this;
    const n = bloomWords * 2;
    for (let i = 0; i < this.broadcastEntries.length; i++) {
      const e = ruled[i] ? this.broadcastEntries[i]! : null;
      if (e && e.srcIds.length && !e.srcIds.every((id) => id === subject.srcId)) continue;
      const at = maskAt[i]!;
      if (at >= 0 && (!filter || !covers(filter, masks, at + Math.min(generation, maskGenerations[i]! - 1) * n, n))) {
        continue;
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
 * The union of an entry's masks for each generation up to the longest's:
 * for generation g, each mask's min(g, its last). A filter of generation G
 * then needs the union at min(G, last), which is what every mask alone
 * would require of it.
 */
function mergeMasks(cmd: Buffer, masks: { at: number; generations: number }[],
                    generations: number, bloomSize: number, out: Uint32Array, start: number): void {
  const words = bloomSize / 4;
  out.fill(0, start, start + generations * words);
  for (let g = 0; g < generations; g++) {
    for (const m of masks) {
      const from = m.at + Math.min(g, m.generations - 1) * bloomSize;
      for (let i = 0; i < words; i++) out[start + g * words + i]! |= cmd.readUInt32LE(from + i * 4);
    }
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
