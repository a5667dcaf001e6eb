// The kdbus policy database (ipc/kdbus/policy.c) and the connection-level
// policy decisions built on it (kdbus_conn_policy_* in connection.c).
//
// A database maps well-known names to access lists. Each entry belongs to an
// owner: a policy-holder or activator connection (bus database) or a custom
// endpoint (its own database). Entries are uploaded as a sequence of items:
// one KDBUS_ITEM_NAME followed by any number of KDBUS_ITEM_POLICY_ACCESS.
//
// Callers of PolicyDb.set (what the kernel passes; handle.c / connection.c / endpoint.c):
//   - KDBUS_CMD_HELLO of an activator or a policy holder: the bus database,
//     the HELLO items, maxPolicies 1, allowWildcards = is the connection a
//     policy holder (false for activators), owner = the new connection. Done
//     after the connection is connected (ID_ADD sent, an activator's name
//     acquired); on failure the connection is disconnected again.
//   - KDBUS_CMD_CONN_UPDATE of a policy holder (NAME / POLICY_ACCESS items
//     present): the bus database, the update's items, maxPolicies 1,
//     allowWildcards true, owner = the connection.
//   - KDBUS_CMD_ENDPOINT_MAKE (after the endpoint is activated; on failure
//     it is deactivated again) and KDBUS_CMD_ENDPOINT_UPDATE: the endpoint's
//     own database, the command's items, maxPolicies 0 (no limit),
//     allowWildcards true (kdbus.txt says custom endpoints reject wildcards,
//     the code passes true), owner = the endpoint.
import { ITEM, LIMITS, POLICY_ACCESS_USER, POLICY_ACCESS_GROUP, POLICY_ACCESS_WORLD,
  POLICY_SEE, POLICY_TALK, POLICY_OWN } from '../abi/kdbus.js';
import { items, itemSysname, sysnameShown } from '../abi/items.js';
import { errno, fail } from './errors.js';
import { nameValid } from './names.js';

/**
 * The credentials a query is made with (struct cred: conn->cred taken at
 * HELLO, or the caller's current_cred() for ioctl-time checks). policy.c
 * looks at euid (USER entries), egid and the supplementary groups (GROUP
 * entries); connection.c's TALK shortcut compares the asker's euid with the
 * peer's (real) uid. The rest is carried for completeness.
 */
export interface PolicyCreds { uid: number; euid: number; fsuid: number; gid: number; egid: number; fsgid: number; groups: number[] }

/** Access levels as numbers: SEE < TALK < OWN; a query without any grant gives NO_ACCESS. */
export const ACCESS_SEE = Number(POLICY_SEE);
export const ACCESS_TALK = Number(POLICY_TALK);
export const ACCESS_OWN = Number(POLICY_OWN);
/** kdbus_policy_query returns -EPERM when nothing is granted; EPERM is 1, so this is -1. */
export const NO_ACCESS = -1;

/** An invalid uid_t / gid_t ((uid_t)-1): make_kuid/make_kgid yield an invalid id, so EINVAL. */
const INVALID_ID = 0xffffffff;

/** struct kdbus_policy_db_entry_access */
interface AccessRule {
  readonly type: 'user' | 'group' | 'world';
  readonly access: number;
  /** uid or gid (as a 32-bit id); unused for world */
  readonly id: number;
}

/** struct kdbus_policy_db_entry */
interface Entry {
  /**
   * the name, a byte string (itemSysname) like every name it is looked up
   * with; for a wildcard entry the part before the trailing ".*"
   */
  readonly name: string;
  readonly wildcard: boolean;
  readonly owner: object;
  readonly rules: AccessRule[];
}

/** The payload of a POLICY_ACCESS item (struct kdbus_policy_access: u64 type, access, id). */
function parseAccess(buf: Buffer, off: number): AccessRule {
  const type = buf.readBigUInt64LE(off);
  const access = buf.readBigUInt64LE(off + 8);
  const rawId = buf.readBigUInt64LE(off + 16);
  // access is checked before type, both as full u64 values
  if (access !== POLICY_SEE && access !== POLICY_TALK && access !== POLICY_OWN) {
    fail(errno.EINVAL, `bad policy access ${access}`);
  }
  // make_kuid/make_kgid take a 32-bit uid_t/gid_t: the u64 id is truncated
  const id = Number(rawId & 0xffffffffn);
  switch (type) {
    case POLICY_ACCESS_USER:
      if (id === INVALID_ID) fail(errno.EINVAL, 'invalid uid in policy');
      return { type: 'user', access: Number(access), id };
    case POLICY_ACCESS_GROUP:
      if (id === INVALID_ID) fail(errno.EINVAL, 'invalid gid in policy');
      return { type: 'group', access: Number(access), id };
    case POLICY_ACCESS_WORLD:
      return { type: 'world', access: Number(access), id: 0 };
    default:
      return fail(errno.EINVAL, `bad policy access type ${type}`);
  }
}

export class PolicyDb {
  /** entries for exact names */
  private readonly exact = new Map<string, Entry>();
  /** wildcard entries, by the name without its ".*" */
  private readonly wild = new Map<string, Entry>();
  /** every owner's entries */
  private readonly byOwner = new Map<object, Entry[]>();

  /**
   * kdbus_policy_set: parses the NAME / POLICY_ACCESS items of
   * cmd[itemsStart, +itemsSize) (validated by the caller with validateItems;
   * other item types are skipped) and replaces all entries of `owner` with
   * them. maxPolicies 0 means no limit. Atomic: on error nothing changes.
   *
   * Errors, in the kernel's order: E2BIG if itemsSize exceeds
   * KDBUS_POLICY_MAX_SIZE; then, item by item: E2BIG for a NAME beyond
   * maxPolicies, EINVAL for an invalid name (wildcard suffix allowed by the
   * syntax), EINVAL for a ".*" name when !allowWildcards, EINVAL for a
   * POLICY_ACCESS before any NAME, EINVAL for a bad access (not SEE/TALK/OWN),
   * a bad type, or an invalid uid/gid; only after all items parsed: EEXIST
   * if another owner has an entry with the same name and the same
   * wildcard-ness, or the command names the same one twice. A NAME without
   * POLICY_ACCESS items makes an entry that grants nothing (it still
   * reserves the name and shadows wildcards).
   */
  set(cmd: Buffer, itemsStart: number, itemsSize: number, maxPolicies: number, allowWildcards: boolean,
      owner: object): void {
    if (itemsSize > LIMITS.POLICY_MAX_SIZE) fail(errno.E2BIG, 'policy items too large');

    const fresh: Entry[] = [];
    let current: Entry | null = null;
    let count = 0;
    for (const it of items(cmd, itemsStart, itemsSize)) {
      if (it.type === ITEM.NAME) {
        if (maxPolicies > 0 && ++count > maxPolicies) fail(errno.E2BIG, 'too many policy names');
        const str = itemSysname(cmd, it);
        if (!nameValid(str, true)) fail(errno.EINVAL, `invalid policy name "${sysnameShown(str)}"`);
        let name = str;
        let wildcard = false;
        // A trailing ".*" makes a wildcard entry, stored without the suffix.
        // NOTE: policy.c's test for this looks one character too far left
        // (name[len-3] == '.' && name[len-2] == '*'), which no valid name can
        // satisfy since '*' must be last — so in that kernel ".*" names are
        // stored as plain names that never match anything, and no wildcard
        // is ever refused. We implement what kdbus.txt (11.2), the comment
        // above that test and the lookup code intend.
        if (str.length > 2 && str.endsWith('.*')) {
          if (!allowWildcards) fail(errno.EINVAL, `wildcard policy name "${sysnameShown(str)}" not allowed here`);
          name = str.slice(0, -2);
          wildcard = true;
        }
        current = { name, wildcard, owner, rules: [] };
        fresh.push(current);
      } else if (it.type === ITEM.POLICY_ACCESS) {
        if (!current) fail(errno.EINVAL, 'policy access without a name');
        current.rules.push(parseAccess(cmd, it.data));
      }
    }

    // Duplicates: the kernel takes the owner's old entries out, then adds the
    // new ones one by one, refusing a name already present (from another
    // owner, or earlier in this same command), and restores on failure.
    const taken = new Set<string>();
    for (const e of fresh) {
      const key = (e.wildcard ? '*' : '=') + e.name;
      const other = (e.wildcard ? this.wild : this.exact).get(e.name);
      if (taken.has(key) || (other && other.owner !== owner)) {
        fail(errno.EEXIST, `policy for "${sysnameShown(e.name)}${e.wildcard ? '.*' : ''}" already set`);
      }
      taken.add(key);
    }

    this.removeOwner(owner);
    for (const e of fresh) (e.wildcard ? this.wild : this.exact).set(e.name, e);
    if (fresh.length > 0) this.byOwner.set(owner, fresh);
  }

  /** kdbus_policy_remove_owner: drops every entry of owner. */
  removeOwner(owner: object): void {
    const mine = this.byOwner.get(owner);
    if (!mine) return;
    for (const e of mine) (e.wildcard ? this.wild : this.exact).delete(e.name);
    this.byOwner.delete(owner);
  }

  /**
   * kdbus_policy_query: the highest access (ACCESS_SEE 0, ACCESS_TALK 1,
   * ACCESS_OWN 2) creds are granted for name, or NO_ACCESS (-1, the kernel's
   * -EPERM). The entry for exactly `name` is used if there is one (even if it
   * grants nothing); else the wildcard entry for name minus its last element.
   * Within the entry: USER matches euid, GROUP matches egid or a
   * supplementary group, WORLD matches all; the best match anywhere wins.
   */
  query(creds: PolicyCreds, name: string): number {
    let e = this.exact.get(name);
    if (!e) {
      const dot = name.lastIndexOf('.');
      if (dot < 0) return NO_ACCESS;
      e = this.wild.get(name.slice(0, dot));
      if (!e) return NO_ACCESS;
    }
    let highest = NO_ACCESS;
    for (const a of e.rules) {
      if (a.access <= highest) continue;
      let match: boolean;
      switch (a.type) {
        case 'user': match = creds.euid === a.id; break;
        case 'group': match = creds.egid === a.id || creds.groups.includes(a.id); break;
        case 'world': match = true; break;
      }
      if (match) highest = a.access;
      if (highest >= ACCESS_OWN) break;
    }
    return highest;
  }

  /** Number of entries (names) in the database; 0 when empty. */
  get size(): number {
    return this.exact.size + this.wild.size;
  }
}

// ---------------------------------------------------------------------------
// Connection-level decisions (connection.c kdbus_conn_policy_*)

/**
 * What the decisions need of a connection. `creds` is conn->cred (taken at
 * HELLO); `ep` is the endpoint it connected through (hasPolicy: a custom
 * endpoint; default endpoints have an empty, unconsulted database); `bus`
 * holds the database of policy holders and activators. ownedNames(): the
 * names the connection is the primary owner of (conn->names_list, including
 * an activator's name while it holds it; not names it is only queued for).
 */
export interface PolicyConn {
  privileged: boolean;
  creds: PolicyCreds;
  ep: { hasPolicy: boolean; policy: PolicyDb };
  bus: { policy: PolicyDb };
  ownedNames(): string[];
}

/** kdbus_conn_policy_query_all: is `access` granted in db for at least one name of whom? */
function queryAll(db: PolicyDb, creds: PolicyCreds, whom: PolicyConn, access: number): boolean {
  for (const name of whom.ownedNames()) {
    if (db.query(creds, name) >= access) return true;
  }
  return false;
}

/**
 * kdbus_conn_policy_own_name: the endpoint's database (custom endpoints
 * only) must grant OWN; then privileged connections pass; else the bus
 * database must grant OWN. creds default to conn.creds (NAME_ACQUIRE passes
 * the caller's current credentials).
 */
export function policyOwnName(conn: PolicyConn, name: string, creds: PolicyCreds = conn.creds): boolean {
  if (conn.ep.hasPolicy && conn.ep.policy.query(creds, name) < ACCESS_OWN) return false;
  if (conn.privileged) return true;
  return conn.bus.policy.query(creds, name) >= ACCESS_OWN;
}

/**
 * kdbus_conn_policy_talk: may conn talk to `to`? The endpoint's database
 * (custom endpoints only) must grant TALK for one of to's names; then a
 * privileged conn passes, and so does one whose euid equals to's uid (the
 * real uid of to's HELLO credentials); else the bus database must grant
 * TALK for one of to's names.
 */
export function policyTalk(conn: PolicyConn, to: PolicyConn, creds: PolicyCreds = conn.creds): boolean {
  if (conn.ep.hasPolicy && !queryAll(conn.ep.policy, creds, to, ACCESS_TALK)) return false;
  if (conn.privileged) return true;
  if (creds.euid === to.creds.uid) return true;
  return queryAll(conn.bus.policy, creds, to, ACCESS_TALK);
}

/**
 * kdbus_conn_policy_see_name: on a default endpoint every name is visible;
 * on a custom endpoint its database must grant at least SEE.
 */
export function policySeeName(conn: PolicyConn, name: string, creds: PolicyCreds = conn.creds): boolean {
  if (!conn.ep.hasPolicy) return true;
  return conn.ep.policy.query(creds, name) >= ACCESS_SEE;
}

/**
 * kdbus_conn_policy_see: on a default endpoint every peer is visible; on a
 * custom endpoint only peers owning at least one name conn may SEE (a peer
 * without names is invisible there).
 */
export function policySee(conn: PolicyConn, whom: PolicyConn, creds: PolicyCreds = conn.creds): boolean {
  return !conn.ep.hasPolicy || queryAll(conn.ep.policy, creds, whom, ACCESS_SEE);
}

/**
 * kdbus_conn_policy_see_notification: may conn receive this kernel
 * notification? NAME_ADD/REMOVE/CHANGE: if it may see the name.
 * ID_ADD/ID_REMOVE: only on default endpoints. Any other type: no.
 */
export function policySeeNotification(conn: PolicyConn, notify: { type: number; name: string | null },
                                      creds: PolicyCreds = conn.creds): boolean {
  switch (notify.type) {
    case ITEM.NAME_ADD:
    case ITEM.NAME_REMOVE:
    case ITEM.NAME_CHANGE:
      // a name notification always carries its name; "" never matches an entry
      return policySeeName(conn, notify.name ?? '', creds);
    case ITEM.ID_ADD:
    case ITEM.ID_REMOVE:
      return !conn.ep.hasPolicy;
    default:
      return false;
  }
}
