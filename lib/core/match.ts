// A connection's match database (ipc/kdbus/match.c): which broadcasts and
// kernel notifications it wants. An entry matches when all of its rules do;
// an entry with no rules matches everything. Names are byte strings
// (itemSysname), compared byte for byte as match.c's strcmp does.
import { ITEM, LIMITS, KDBUS_MATCH_ID_ANY, SIZEOF_NOTIFY_NAME_CHANGE } from '../abi/kdbus.js';
import { items, itemSysname, sysnameShown } from '../abi/items.js';
import { errno, fail } from './errors.js';
import { nameValid } from './names.js';

type Rule =
  | { type: typeof ITEM.BLOOM_MASK; generations: number; mask: BigUint64Array }
  | { type: typeof ITEM.NAME; name: string }
  | { type: typeof ITEM.ID; srcId: bigint }
  | { type: typeof ITEM.NAME_ADD | typeof ITEM.NAME_REMOVE | typeof ITEM.NAME_CHANGE;
      oldId: bigint; newId: bigint; name: string | null }
  | { type: typeof ITEM.ID_ADD | typeof ITEM.ID_REMOVE; oldId: bigint; newId: bigint };

interface Entry { cookie: bigint; rules: Rule[]; bytes: number }

/** What a rule is matched against: a user broadcast or a kernel notification. */
export type MatchSubject =
  | { kind: 'user'; srcId: bigint; srcHasName: (name: string) => boolean;
      bloomGeneration: bigint; bloom: BigUint64Array | null }
  | { kind: 'notify'; type: number; oldId: bigint; newId: bigint; name: string | null };

export class MatchDb {
  private entries: Entry[] = [];
  /** bytes of the rules' items, charged to the owner's user */
  bytes = 0;

  /** KDBUS_CMD_MATCH_ADD, items already validated. bloomSize: the bus's bloom size in bytes. */
  add(cookie: bigint, cmd: Buffer, itemsStart: number, itemsSize: number,
      replace: boolean, bloomSize: number): void {
    const rules: Rule[] = [];
    for (const it of items(cmd, itemsStart, itemsSize)) {
      switch (it.type) {
        case ITEM.BLOOM_MASK: {
          if (it.len < bloomSize || it.len % bloomSize !== 0) fail(errno.EDOM, 'bloom mask size');
          const copy = Buffer.from(cmd.subarray(it.data, it.data + it.len));
          rules.push({ type: ITEM.BLOOM_MASK, generations: it.len / bloomSize,
            mask: new BigUint64Array(copy.buffer, copy.byteOffset, it.len / 8) });
          break;
        }
        case ITEM.NAME: {
          const name = itemSysname(cmd, it);
          if (!nameValid(name, false)) fail(errno.EINVAL, `invalid match name "${sysnameShown(name)}"`);
          rules.push({ type: ITEM.NAME, name });
          break;
        }
        case ITEM.ID:
          rules.push({ type: ITEM.ID, srcId: cmd.readBigUInt64LE(it.data) });
          break;
        case ITEM.NAME_ADD:
        case ITEM.NAME_REMOVE:
        case ITEM.NAME_CHANGE: {
          const hasName = it.len > SIZEOF_NOTIFY_NAME_CHANGE;
          rules.push({ type: it.type, oldId: cmd.readBigUInt64LE(it.data), newId: cmd.readBigUInt64LE(it.data + 16),
            name: hasName ? cmd.toString('latin1', it.data + 32, cmd.indexOf(0, it.data + 32)) : null });
          break;
        }
        case ITEM.ID_ADD:
          rules.push({ type: ITEM.ID_ADD, oldId: 0n, newId: cmd.readBigUInt64LE(it.data) });
          break;
        case ITEM.ID_REMOVE:
          rules.push({ type: ITEM.ID_REMOVE, oldId: cmd.readBigUInt64LE(it.data), newId: 0n });
          break;
        default:
          fail(errno.EINVAL, `item ${it.type} is not a match rule`);
      }
    }
    if (replace) this.drop(cookie);
    if (this.entries.length + 1 > LIMITS.MATCH_MAX) fail(errno.EMFILE, 'too many matches');
    this.entries.push({ cookie, rules, bytes: itemsSize });
    this.bytes += itemsSize;
  }

  private drop(cookie: bigint): void {
    const kept = this.entries.filter((e) => e.cookie !== cookie);
    if (kept.length === this.entries.length) return;
    this.entries = kept;
    this.bytes = kept.reduce((n, e) => n + e.bytes, 0);
  }

  /** KDBUS_CMD_MATCH_REMOVE: every entry with that cookie; ENOENT if none. */
  remove(cookie: bigint): void {
    const before = this.entries.length;
    this.drop(cookie);
    if (this.entries.length === before) fail(errno.ENOENT, `no match with cookie ${cookie}`);
  }

  get size(): number {
    return this.entries.length;
  }

  matches(subject: MatchSubject, bloomWords: number): boolean {
    return this.entries.some((e) => e.rules.every((r) => ruleMatches(r, subject, bloomWords)));
  }
}

function ruleMatches(r: Rule, s: MatchSubject, bloomWords: number): boolean {
  if (s.kind === 'user') {
    switch (r.type) {
      case ITEM.BLOOM_MASK:
        return s.bloom !== null && bloomMatches(s.bloom, s.bloomGeneration, r.mask, r.generations, bloomWords);
      case ITEM.ID:
        return r.srcId === s.srcId || r.srcId === KDBUS_MATCH_ID_ANY;
      case ITEM.NAME:
        return s.srcHasName(r.name);
      default:
        return false;
    }
  }
  if (r.type !== s.type) return false;
  switch (r.type) {
    case ITEM.ID_ADD:
      return r.newId === KDBUS_MATCH_ID_ANY || r.newId === s.newId;
    case ITEM.ID_REMOVE:
      return r.oldId === KDBUS_MATCH_ID_ANY || r.oldId === s.oldId;
    case ITEM.NAME_ADD:
    case ITEM.NAME_REMOVE:
    case ITEM.NAME_CHANGE:
      return (r.oldId === KDBUS_MATCH_ID_ANY || r.oldId === s.oldId) &&
        (r.newId === KDBUS_MATCH_ID_ANY || r.newId === s.newId) &&
        !(r.name !== null && s.name !== null && r.name !== s.name);
    default:
      return false;
  }
}

/**
 * kdbus_match_bloom: every bit of the mask generation (the filter's, or the
 * mask's last one if the filter is newer) must be set in the filter.
 */
export function bloomMatches(filter: BigUint64Array, generation: bigint, mask: BigUint64Array,
                             generations: number, words: number): boolean {
  const gen = generation < BigInt(generations - 1) ? Number(generation) : generations - 1;
  const base = gen * words;
  for (let i = 0; i < words; i++) {
    const m = mask[base + i];
    if ((filter[i] & m) !== m) return false;
  }
  return true;
}
