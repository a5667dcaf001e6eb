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
 * bits must be in the filter, so the union's must), its ID rules as the ids
 * they require (an entry requiring two different ids never matches), its
 * NAME rules, and its notification rules. An entry mixing broadcast and
 * notification rules matches nothing, as every rule must match.
 */
interface Entry {
  readonly cookie: bigint;
  /** ORed masks, generation after generation, as 32-bit words; null: no BLOOM_MASK rule */
  readonly bloom: Uint32Array | null;
  readonly bloomGenerations: number;
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
    const bloomGenerations = masks.reduce((n, m) => Math.max(n, m.generations), 0);
    const entry: Entry = {
      cookie, bloom: masks.length ? mergedMasks(cmd, masks, bloomGenerations, bloomSize) : null,
      bloomGenerations, srcIds, names, notify, bytes: itemsSize,
    };
    this.entries.push(entry);
    this.bytes += itemsSize;
    const forBroadcasts = notify.length === 0;
    const forNotifications = broadcastRules === 0 &&
      notify.every((r) => r.type === notify[0]!.type);
    if (forBroadcasts) this.broadcastEntries.push(entry);
    if (forNotifications) this.notifyEntries.push(entry);
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
    this.broadcastEntries = this.broadcastEntries.filter((e) => e.cookie !== cookie);
    this.notifyEntries = this.notifyEntries.filter((e) => e.cookie !== cookie);
    return true;
  }

  get size(): number {
    return this.entries.length;
  }

  matches(subject: MatchSubject, bloomWords: number): boolean {
    if (subject.kind === 'notify') return this.notifyEntries.some((e) => e.notify.every((r) => notifyMatches(r, subject)));
    // per connection, not per entry: one view of the filter, its generation as a number
    const filter = subject.bloom && new Uint32Array(subject.bloom.buffer, subject.bloom.byteOffset, bloomWords * 2);
    const generation = subject.bloomGeneration > 0xffff_ffffn ? 0xffff_ffff : Number(subject.bloomGeneration);
    const list = this.broadcastEntries;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.srcIds.length && !e.srcIds.every((id) => id === subject.srcId)) continue;
      if (e.bloom && (!filter || !bloomMatches(filter, generation, e.bloom, e.bloomGenerations, bloomWords))) continue;
      if (!e.names.length || e.names.every((n) => subject.srcHasName(n))) return true;
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
function mergedMasks(cmd: Buffer, masks: { at: number; generations: number }[],
                     generations: number, bloomSize: number): Uint32Array {
  const words = bloomSize / 4;
  const out = new Uint32Array(generations * words);
  for (let g = 0; g < generations; g++) {
    for (const m of masks) {
      const from = m.at + Math.min(g, m.generations - 1) * bloomSize;
      for (let i = 0; i < words; i++) out[g * words + i]! |= cmd.readUInt32LE(from + i * 4);
    }
  }
  return out;
}

/**
 * kdbus_match_bloom on 32-bit words (no BigInt per word): every bit of the
 * mask generation (the filter's, or the mask's last one if the filter is
 * newer) must be set in the filter. words: the bloom size in 64-bit words;
 * generation: the filter's, saturated at 2^32-1 (no mask has that many).
 */
export function bloomMatches(filter: Uint32Array, generation: number, mask: Uint32Array,
                             generations: number, words: number): boolean {
  const gen = Math.min(generation, generations - 1);
  const n = words * 2;
  const base = gen * n;
  for (let i = 0; i < n; i++) {
    const m = mask[base + i]!;
    if (((filter[i]! & m) >>> 0) !== m) return false;
  }
  return true;
}
