// The well-known name registry of a bus (ipc/kdbus/names.c, plus the name
// parts of handle.c and connection.c): ownership, waiting queues,
// replacement, activators, the NAME_* notifications and NAME_LIST.
// Names are byte strings (itemSysname): "org.caf\xE9.x" holds the byte
// 0xE9, a letter to the kernel, and goes back out as exactly that byte.
import {
  ITEM, LIMITS, NAME_INFO, NAME_LIST_HEADER, ITEM_HEADER_SIZE, align8,
  HELLO_ACTIVATOR, HELLO_POLICY_HOLDER, HELLO_MONITOR,
  NAME_REPLACE_EXISTING, NAME_ALLOW_REPLACEMENT, NAME_QUEUE, NAME_IN_QUEUE, NAME_ACTIVATOR,
  NAME_LIST_UNIQUE, NAME_LIST_NAMES, NAME_LIST_ACTIVATORS, NAME_LIST_QUEUED,
} from '../abi/kdbus.js';
import { items, itemSysname, kernelIsAlpha, sysnameShown } from '../abi/items.js';
import { errno, fail } from './errors.js';
import type { User } from './user.js';

/** What the registry needs from a connection. */
export interface NameClient {
  /** unique connection id */
  readonly id: bigint;
  /** conn->flags: the HELLO_* flags it connected with (NAME_LIST reports them as conn_flags) */
  readonly flags: bigint;
  /** charged for the names it owns and waits for */
  readonly user: User;
}

/** Effects of registry changes, provided by the bus. */
export interface NameEvents {
  /**
   * Queue the kernel notification (type ITEM.NAME_ADD / NAME_REMOVE /
   * NAME_CHANGE) with old/new id and flags (0 for none). Called at the point
   * kdbus queues it; kdbus delivers them when the command is done.
   */
  nameChanged(type: number, oldId: bigint, oldFlags: bigint, newId: bigint, newFlags: bigint, name: string): void;
  /**
   * kdbus_conn_move_messages(to, from, nameId): move `from`'s queued messages
   * (and the replies other connections await from it) to `to`. nameId 0n
   * means all of them, else only those sent to the name entry with that id
   * (see lookup().nameId). Losses are counted, not thrown; if it throws
   * anyway, acquire/release propagate the error before any ownership change.
   */
  moveMessages(from: NameClient, to: NameClient, nameId: bigint): void;
  /** kdbus_conn_policy_own_name: may conn own name? */
  canOwn(conn: NameClient, name: string): boolean;
  /** kdbus_conn_policy_see_name_unlocked: may viewer see name (NAME_LIST filter)? */
  canSee(viewer: NameClient, name: string): boolean;
  /** May viewer see every name (no SEE policy applies to it)? Its NAME_LIST is then cached. */
  seesAll(viewer: NameClient): boolean;
}

/** A name in the registry (struct kdbus_name_entry). */
interface NameEntry {
  /** a byte string (itemSysname) */
  readonly name: string;
  /** Sequence number of this registration; messages sent to the name carry it. */
  readonly nameId: bigint;
  /** The owner's KDBUS_NAME_* flags. */
  flags: bigint;
  /** Always set: an activator owns its name itself while no implementer does. */
  owner: NameClient;
  /** The activator connection standing in for this name, if any. */
  activator: NameClient | null;
  /** Connections waiting for the name, oldest first (duplicates possible, as in kdbus). */
  readonly waiters: Set<Waiter>;
}

/** A connection waiting for a name (struct kdbus_name_queue_item). */
interface Waiter {
  readonly conn: NameClient;
  readonly entry: NameEntry;
  /** The flags it asked with; it gets the name with these. */
  readonly flags: bigint;
}

/** Per-connection bookkeeping (the names parts of struct kdbus_conn). */
interface ConnNames {
  /** names_list: names owned, in the order they were gained. */
  readonly owned: Set<NameEntry>;
  /** names_queue_list: waits, in the order they were queued. */
  readonly queued: Set<Waiter>;
  /** activator_of: the entry an activator connection stands in for. */
  activatorOf: NameEntry | null;
}

const isActivator = (c: NameClient): boolean => (c.flags & HELLO_ACTIVATOR) !== 0n;
const isOrdinary = (c: NameClient): boolean =>
  (c.flags & (HELLO_ACTIVATOR | HELLO_POLICY_HOLDER | HELLO_MONITOR)) === 0n;

export class NameRegistry {
  private readonly entries = new Map<string, NameEntry>();
  private readonly conns = new Map<bigint, ConnNames>();
  private lastNameId = 0n;
  /**
   * NAME_LISTs already built, by flag set, for viewers that see every name:
   * while nothing changes a NAME_LIST costs a copy, not a walk over every
   * name (an owner of 256 names on each of 1000 connections made every
   * NAME_LIST a second of the server's time). Emptied on any change of
   * ownership, waiters, activators or connections; a few flag sets at most.
   */
  private readonly lists = new Map<bigint, Buffer>();

  constructor(private readonly events: NameEvents) {}

  /** Teardown check: number of entries. */
  size(): number {
    return this.entries.size;
  }

  /** For the census: entries, queued would-be owners, connections with bookkeeping here. */
  counts(): { names: number; waiters: number; clients: number } {
    let waiters = 0;
    for (const e of this.entries.values()) waiters += e.waiters.size;
    return { names: this.entries.size, waiters, clients: this.conns.size };
  }

  /**
   * Every name with its owner, the activator standing in for it, and the
   * connections queued for it, oldest first (for `kdbusfs stats`).
   */
  queues(): Array<{ name: string; owner: bigint; flags: bigint; activator: bigint | null;
    waiters: Array<{ id: bigint; flags: bigint }> }> {
    return [...this.entries.values()].map((e) => ({
      name: e.name, owner: e.owner.id, flags: e.flags, activator: e.activator?.id ?? null,
      waiters: [...e.waiters].map((w) => ({ id: w.conn.id, flags: w.flags })),
    }));
  }

  /**
   * kdbus_name_acquire: the registry operation itself, without the ioctl's
   * validity / limit / policy checks (HELLO uses it this way to register an
   * activator's name with flags NAME_ACTIVATOR). Returns the flags to hand
   * back to the caller: `flags`, plus NAME_IN_QUEUE when it was queued.
   */
  acquire(conn: NameClient, name: string, flags: bigint): bigint {
    const e = this.entries.get(name);
    const activatorOf = this.conns.get(conn.id)?.activatorOf ?? null;

    this.changed();
    if (!e) {
      // an activator can only stand in for a single name
      if (isActivator(conn) && activatorOf) fail(errno.EINVAL, 'activator already has a name');
      this.addEntry(conn, name, flags);
      return flags;
    }

    if (e.owner.id === conn.id) fail(errno.EALREADY, `already owns ${sysnameShown(name)}`);

    if (isActivator(conn)) {
      if (activatorOf) {
        fail(activatorOf === e ? errno.EALREADY : errno.EINVAL, 'activator already has a name');
      }
      // stand in for a name someone already owns; with another activator
      // already in place kdbus silently does nothing (and returns success)
      if (!e.activator) {
        e.activator = conn;
        this.namesOf(conn).activatorOf = e;
      }
      return flags;
    }

    if (e.flags & NAME_ACTIVATOR) {
      // an implementer shows up: it gets everything queued on the activator
      this.events.moveMessages(e.activator!, conn, 0n);
      this.replaceOwner(e, conn, flags);
      return flags;
    }

    if ((flags & NAME_REPLACE_EXISTING) && (e.flags & NAME_ALLOW_REPLACEMENT)) {
      // an owner who asked for queueing waits to get the name back
      if (e.flags & NAME_QUEUE) this.enqueue(e.owner, e, e.flags);
      this.replaceOwner(e, conn, flags);
      return flags;
    }

    if (flags & NAME_QUEUE) {
      this.enqueue(conn, e, flags);
      return flags | NAME_IN_QUEUE;
    }

    return fail(errno.EEXIST, `${sysnameShown(name)} is owned by ${e.owner.id}`);
  }

  /**
   * KDBUS_CMD_NAME_ACQUIRE after flag negotiation and item validation:
   * EINVAL for a missing/repeated/invalid NAME, E2BIG when conn already owns
   * KDBUS_CONN_MAX_NAMES names, EPERM by policy, then acquire(). The result
   * goes back in cmd->flags (kdbus leaves return_flags 0).
   */
  cmdAcquire(conn: NameClient, cmd: Buffer, itemsStart: number, itemsSize: number, flags: bigint): bigint {
    if (!isOrdinary(conn)) fail(errno.EOPNOTSUPP, 'only ordinary connections own names');
    const name = this.commandName(cmd, itemsStart, itemsSize);
    // only owned names count, queued ones do not (conn->name_count)
    if ((this.conns.get(conn.id)?.owned.size ?? 0) + 1 > LIMITS.CONN_MAX_NAMES) fail(errno.E2BIG, 'too many names');
    if (!this.events.canOwn(conn, name)) fail(errno.EPERM, `may not own ${sysnameShown(name)}`);
    conn.user.check('names', 1);
    return this.acquire(conn, name, flags);
  }

  /** KDBUS_CMD_NAME_RELEASE after flag negotiation and item validation. */
  cmdRelease(conn: NameClient, cmd: Buffer, itemsStart: number, itemsSize: number): void {
    if (!isOrdinary(conn)) fail(errno.EOPNOTSUPP, 'only ordinary connections own names');
    this.release(conn, this.commandName(cmd, itemsStart, itemsSize));
  }

  /**
   * kdbus_name_release: gives up ownership (the name passes on) or the
   * oldest wait for it. ESRCH when conn neither owns nor waits for it
   * (kdbus.txt promises EADDRINUSE for a foreign name; the code says ESRCH).
   */
  release(conn: NameClient, name: string): void {
    this.changed();
    const e = this.entries.get(name);
    if (!e) fail(errno.ESRCH, `${sysnameShown(name)} not found`);
    if (e.owner.id === conn.id) {
      this.passOn(e);
      return;
    }
    for (const w of e.waiters) {
      if (w.conn.id !== conn.id) continue;
      this.dequeue(w);
      return;
    }
    fail(errno.ESRCH, `${sysnameShown(name)} not owned by ${conn.id}`);
  }

  /**
   * kdbus_name_remove_by_conn, on disconnect: an activator stops standing in
   * for its name, all waits go away silently, then each owned name passes on
   * (to the oldest waiter, else back to its activator, else it is removed)
   * in the order conn gained them, each with its notification.
   */
  releaseAll(conn: NameClient): void {
    this.changed();
    const mine = this.conns.get(conn.id);
    if (!mine) return;
    if (mine.activatorOf) {
      mine.activatorOf.activator = null;
      mine.activatorOf = null;
    }
    for (const w of [...mine.queued]) this.dequeue(w);
    for (const e of [...mine.owned]) this.passOn(e, true);
    this.conns.delete(conn.id);
  }

  /**
   * The entry behind a name, for sending by name and CONN_INFO: the owner
   * is the activator itself while no implementer holds the name; nameId is
   * what messages sent to the name record (kmsg->dst_name_id).
   */
  lookup(name: string): { owner: NameClient; flags: bigint; activator: NameClient | null; nameId: bigint } | null {
    const e = this.entries.get(name);
    return e ? { owner: e.owner, flags: e.flags, activator: e.activator, nameId: e.nameId } : null;
  }

  /** Names owned by conn with their flags, in the order gained (KDBUS_ITEM_OWNED_NAME metadata). */
  ownedNames(conn: NameClient): Array<{ name: string; flags: bigint }> {
    const mine = this.conns.get(conn.id);
    return mine ? [...mine.owned].map((e) => ({ name: e.name, flags: e.flags })) : [];
  }

  /**
   * KDBUS_CMD_NAME_LIST: the whole struct kdbus_name_list as kdbus writes
   * it into the pool. `connections`: every connection in the bus's
   * connection table, in any order (kdbus walks its hash table; so do we).
   */
  list(viewer: NameClient, flags: bigint, connections: Iterable<NameClient>): Buffer {
    const seesAll = this.events.seesAll(viewer);
    const cached = seesAll ? this.lists.get(flags) : undefined;
    if (cached) return cached;
    const records: Array<[NameClient, NameEntry | null]> = [];
    const record = (owner: NameClient, e: NameEntry | null): void => {
      // SEE policy hides name records, never bare unique-id ones
      if (e && !seesAll && !this.events.canSee(viewer, e.name)) return;
      records.push([owner, e]);
    };

    for (const c of connHashOrder(connections)) {
      if (!(flags & NAME_LIST_ACTIVATORS) && isActivator(c)) continue;
      const mine = this.conns.get(c.id);
      // "added" turns true even when the SEE policy dropped the record
      let added = false;

      if (mine && (flags & (NAME_LIST_NAMES | NAME_LIST_ACTIVATORS))) {
        for (const e of mine.owned) {
          // the activator waiting behind a name an implementer holds
          if ((flags & NAME_LIST_ACTIVATORS) && e.activator && e.activator.id !== c.id) {
            record(e.activator, e);
            added = true;
          }
          if ((flags & NAME_LIST_NAMES) || isActivator(c)) {
            record(c, e);
            added = true;
          }
        }
      }

      if (mine && (flags & NAME_LIST_QUEUED)) {
        // the record carries the entry's (current owner's) flags, not the wait's
        for (const w of mine.queued) {
          record(c, w.entry);
          added = true;
        }
      }

      if (!added && (flags & NAME_LIST_UNIQUE)) record(c, null);
    }

    // one buffer written in place: no Buffer per record
    const size = records.reduce((n, [, e]) => n + nameInfoSize(e), NAME_LIST_HEADER);
    const list = Buffer.alloc(size);
    list.writeBigUInt64LE(BigInt(size), 0);
    let at = NAME_LIST_HEADER;
    for (const [owner, e] of records) at = writeNameInfo(list, at, owner, e);
    if (seesAll) {
      if (this.lists.size >= MAX_CACHED_LISTS) this.lists.clear();
      this.lists.set(flags, list);
    }
    return list;
  }

  /** Every change NAME_LIST shows: connections coming and going, as well as the registry's own. */
  changed(): void {
    this.lists.clear();
  }

  // --- internals ---

  private namesOf(conn: NameClient): ConnNames {
    let mine = this.conns.get(conn.id);
    if (!mine) {
      mine = { owned: new Set(), queued: new Set(), activatorOf: null };
      this.conns.set(conn.id, mine);
    }
    return mine;
  }

  /** The single NAME item of a NAME_ACQUIRE/RELEASE command, valid or EINVAL. */
  private commandName(cmd: Buffer, itemsStart: number, itemsSize: number): string {
    let name: string | null = null;
    for (const it of items(cmd, itemsStart, itemsSize)) {
      if (it.type !== ITEM.NAME) continue;
      if (name !== null) fail(errno.EINVAL, 'NAME item repeated');
      name = itemSysname(cmd, it);
    }
    if (name === null) fail(errno.EINVAL, 'no NAME item');
    if (!nameValid(name, false)) fail(errno.EINVAL, `invalid name "${sysnameShown(name)}"`);
    return name;
  }

  /** A name appears: new entry owned by conn, NAME_ADD. */
  private addEntry(conn: NameClient, name: string, flags: bigint): void {
    const e: NameEntry = {
      name, nameId: ++this.lastNameId, flags, owner: conn,
      activator: isActivator(conn) ? conn : null, waiters: new Set(),
    };
    const mine = this.namesOf(conn);
    if (e.activator) mine.activatorOf = e;
    this.entries.set(name, e);
    mine.owned.add(e);
    conn.user.takeOver('names');
    this.events.nameChanged(ITEM.NAME_ADD, 0n, 0n, conn.id, flags, name);
  }

  /** Ownership moves: NAME_CHANGE, then the name goes to the end of the new owner's list. */
  private replaceOwner(e: NameEntry, conn: NameClient, flags: bigint): void {
    this.events.nameChanged(ITEM.NAME_CHANGE, e.owner.id, e.flags, conn.id, flags, e.name);
    this.namesOf(e.owner).owned.delete(e);
    e.owner.user.uncharge('names');
    e.owner = conn;
    e.flags = flags;
    this.namesOf(conn).owned.add(e);
    conn.user.takeOver('names');
  }

  /**
   * kdbus_name_entry_release: the owner lets go; the oldest waiter gets the
   * name, else the activator (with the messages sent to the name), else the
   * name disappears.
   */
  private passOn(e: NameEntry, disconnecting = false): void {
    for (const w of e.waiters) {
      this.dequeue(w);
      // a connection queued for a name it later took over directly: kdbus
      // would retry this waiter forever; drop it and try the next
      if (w.conn.id === e.owner.id) continue;
      this.replaceOwner(e, w.conn, w.flags);
      return;
    }

    if (e.activator && e.activator.id !== e.owner.id) {
      try {
        this.events.moveMessages(e.owner, e.activator, e.nameId);
      } catch (err) {
        // kdbus ignores a failed move on disconnect, but then leaves the name
        // with the dead connection; we hand it back regardless
        if (!disconnecting) throw err;
      }
      this.replaceOwner(e, e.activator, NAME_ACTIVATOR);
      return;
    }

    this.events.nameChanged(ITEM.NAME_REMOVE, e.owner.id, e.flags, 0n, 0n, e.name);
    this.namesOf(e.owner).owned.delete(e);
    e.owner.user.uncharge('names');
    this.entries.delete(e.name);
  }

  private enqueue(conn: NameClient, e: NameEntry, flags: bigint): void {
    const w: Waiter = { conn, entry: e, flags };
    e.waiters.add(w);
    this.namesOf(conn).queued.add(w);
    conn.user.takeOver('names');
  }

  private dequeue(w: Waiter): void {
    if (w.entry.waiters.delete(w)) w.conn.user.uncharge('names');
    this.conns.get(w.conn.id)?.queued.delete(w);
  }
}

/**
 * kdbus_name_is_valid on a byte string (itemSysname): two or more non-empty
 * dot-separated elements of isalpha, isdigit, '_' and '-', none starting
 * with a digit, at most KDBUS_NAME_MAX_LEN bytes; with allowWildcard (policy
 * names) the last element may be "*". isalpha is the kernel's, whose Latin-1
 * table also counts 0xC0-0xFF (except 0xD7 and 0xF7) as letters.
 */
export function nameValid(name: string, allowWildcard: boolean): boolean {
  let elementStart = true; // kdbus's "dot": at the start of an element
  let foundDot = false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e /* . */) {
      if (elementStart) return false;
      foundDot = true;
      elementStart = true;
      continue;
    }
    const digit = c >= 0x30 && c <= 0x39;
    const ok = kernelIsAlpha(c) || (digit && !elementStart) || c === 0x5f /* _ */ || c === 0x2d /* - */ ||
      (allowWildcard && elementStart && c === 0x2a /* * */ && i === name.length - 1);
    if (!ok) return false;
    elementStart = false;
  }
  return name.length <= LIMITS.NAME_MAX_LEN && !elementStart && foundDot;
}

/** Flag sets whose NAME_LIST is kept (any four of the sixteen). */
const MAX_CACHED_LISTS = 4;

/**
 * One struct kdbus_name_info: {size, conn_flags, owner_id}, then for a name
 * a KDBUS_ITEM_OWNED_NAME item {size, type, flags, name\0}, whose size is
 * not aligned but whose record is zero-padded to 8.
 */
function nameItemSize(e: NameEntry | null): number {
  return e ? ITEM_HEADER_SIZE + 8 + e.name.length + 1 : 0; // a byte string: one char per byte
}

function nameInfoSize(e: NameEntry | null): number {
  return align8(NAME_INFO.items + nameItemSize(e));
}

/** Writes the record at `at` of a zeroed buffer; returns where the next one goes. */
function writeNameInfo(b: Buffer, at: number, owner: NameClient, e: NameEntry | null): number {
  const size = nameInfoSize(e);
  b.writeBigUInt64LE(BigInt(size), at + NAME_INFO.size);
  b.writeBigUInt64LE(owner.flags, at + NAME_INFO.conn_flags);
  b.writeBigUInt64LE(owner.id, at + NAME_INFO.owner_id);
  if (e) {
    const it = at + NAME_INFO.items;
    b.writeBigUInt64LE(BigInt(nameItemSize(e)), it);
    b.writeBigUInt64LE(BigInt(ITEM.OWNED_NAME), it + 8);
    b.writeBigUInt64LE(e.flags, it + 16);
    b.write(e.name, it + 24, 'latin1');
  }
  return at + size;
}

// The order kdbus walks bus->conn_hash (8 bits, keyed by id): buckets by
// hash_64(id, 8) = (id * GOLDEN_RATIO_PRIME_64) >> 56 ascending, newest
// (highest id) first within a bucket. NAME_LIST records come out this way.
const GOLDEN_RATIO_PRIME_64 = 0x9e37fffffffc0001n;
const connHashBucket = (id: bigint): number =>
  Number(BigInt.asUintN(64, id * GOLDEN_RATIO_PRIME_64) >> 56n);

function connHashOrder<T extends NameClient>(connections: Iterable<T>): T[] {
  return [...connections].sort((a, b) =>
    connHashBucket(a.id) - connHashBucket(b.id) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}
