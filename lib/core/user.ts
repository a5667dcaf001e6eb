// Users of a domain (kdbus_domain_user): what each uid makes the server hold,
// so that one user cannot exhaust the domain or the server for others.
// kdbus's own counts (connections, buses: limits.h) stay as the kernel has
// them; everything else the kernel charged to the sender's memcg and fd
// table, the server holds itself, so it charges it to the user who caused it
// against kdbusfs's own limits (UserLimits), as dbus-broker charges its users.
// A user stays registered while anything is charged to it: one that leaves
// and comes back finds its old charges.
import { LIMITS } from '../abi/kdbus.js';
import { errno, fail } from './errors.js';

/** kdbusfs's own per-user limits (README "Reliability"), configurable per mount. */
export interface UserLimits {
  /** pool bytes of a user's messages queued and not received yet, all receivers together */
  user_queued_bytes: number;
  /** the same at any one receiver */
  user_queued_bytes_per_receiver: number;
  /** payload copies the server keeps for messages a user sent to a name (they may move pools) */
  user_payload_copy_bytes: number;
  /** fds a user's messages hold in flight (FDS items and memfds) */
  user_fds: number;
  /** names owned and waits queued for names */
  user_names: number;
  user_matches: number;
  /** bytes of a user's match rules */
  user_match_bytes: number;
  /** replies a user's connections wait for */
  user_replies: number;
  /** fds of the server's RLIMIT_NOFILE kept for its own work (/proc, new connections' pools, helpers): clients' fds in flight get the rest */
  server_fds_reserved: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_LIMITS: Readonly<UserLimits> = {
  user_queued_bytes: 256 * MiB,
  user_queued_bytes_per_receiver: 32 * MiB,
  user_payload_copy_bytes: 64 * MiB,
  user_fds: 4096,
  user_names: 16384,
  user_matches: 16384,
  user_match_bytes: 16 * MiB,
  user_replies: 16384,
  server_fds_reserved: 1024,
};

/** A limits override ("user_fds=1024", sizes may end in K, M or G): the limits changed, or an Error. */
export function parseLimit(limits: UserLimits, spec: string): UserLimits | Error {
  const m = /^([a-z_]+)=(\d+)([KMG]?)$/.exec(spec);
  if (!m) return new Error(`limit "${spec}" is not NAME=VALUE`);
  const name = m[1] as keyof UserLimits;
  if (!(name in DEFAULT_LIMITS)) return new Error(`unknown limit ${m[1]} (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`);
  const value = Number(m[2]) * ({ '': 1, K: 1024, M: MiB, G: 1024 * MiB } as Record<string, number>)[m[3]!]!;
  if (!Number.isSafeInteger(value)) return new Error(`limit ${name} too large`);
  return { ...limits, [name]: value };
}

/** What a user can be charged for beyond kdbus's counts, each with the limit bounding it. */
const CHARGES = {
  queuedBytes: 'user_queued_bytes',
  copyBytes: 'user_payload_copy_bytes',
  fds: 'user_fds',
  names: 'user_names',
  matches: 'user_matches',
  matchBytes: 'user_match_bytes',
  replies: 'user_replies',
} as const satisfies Record<string, keyof UserLimits>;

export type Charge = keyof typeof CHARGES | 'connections' | 'buses';

const WHAT: Record<keyof typeof CHARGES, (n: number) => string> = {
  queuedBytes: (n) => `${bytes(n)} of queued message bytes`,
  copyBytes: (n) => `${bytes(n)} of payload copies`,
  fds: (n) => `${n} fds in flight`,
  names: (n) => `${n} names`,
  matches: (n) => `${n} matches`,
  matchBytes: (n) => `${bytes(n)} of match rules`,
  replies: (n) => `${n} pending replies`,
};

export function bytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

export class User {
  connections = 0;
  buses = 0;
  queuedBytes = 0;
  copyBytes = 0;
  fds = 0;
  names = 0;
  matches = 0;
  matchBytes = 0;
  replies = 0;

  /** registry: the one keeping this user (none: a custom endpoint's anonymous user) */
  constructor(readonly uid: number, private readonly registry: UserRegistry | null = null,
              readonly limits: Readonly<UserLimits> = registry?.limits ?? DEFAULT_LIMITS) {}

  /**
   * Charges n more of what, or fails (ENOBUFS for bytes, EMFILE for
   * counts) naming the limit; nothing is charged then.
   */
  charge(what: keyof typeof CHARGES, n: number): void {
    this.check(what, n);
    if (what === 'fds') this.registry?.chargeServerFds(n);
    this[what] += n;
  }

  /** Fails as charge would, charging nothing. */
  check(what: keyof typeof CHARGES, n: number): void {
    const limit = this.limits[CHARGES[what]];
    if (this[what] + n <= limit) {
      if (what === 'fds') this.registry?.checkServerFds(n);
      return;
    }
    const err = what === 'queuedBytes' || what === 'copyBytes' || what === 'matchBytes' ? errno.ENOBUFS : errno.EMFILE;
    fail(err, `uid ${this.uid}: ${WHAT[what](limit)} (limit ${CHARGES[what]})`);
  }

  /** Charges what moves to this user from another (a name passing on): never refused. */
  takeOver(what: 'names', n = 1): void {
    this[what] += n;
  }

  uncharge(what: Charge, n = 1): void {
    if (this[what] < n) throw new Error(`uid ${this.uid}: uncharging ${n} ${what}, ${this[what]} charged`);
    this[what] -= n;
    if (what === 'fds') this.registry?.unchargeServerFds(n);
    if (this.idle) this.registry?.forget(this);
  }

  /** Nothing charged. */
  get idle(): boolean {
    return this.connections === 0 && this.buses === 0 && this.queuedBytes === 0 && this.copyBytes === 0 &&
      this.fds === 0 && this.names === 0 && this.matches === 0 && this.matchBytes === 0 && this.replies === 0;
  }

  /** Its charges, for the census. */
  charges(): Record<Charge, number> {
    return { connections: this.connections, buses: this.buses, queuedBytes: this.queuedBytes,
      copyBytes: this.copyBytes, fds: this.fds, names: this.names, matches: this.matches,
      matchBytes: this.matchBytes, replies: this.replies };
  }
}

export class UserRegistry {
  private readonly users = new Map<number, User>();
  /** fds every user's messages hold, together */
  serverFds = 0;
  /** fds clients' messages may hold together: RLIMIT_NOFILE less the reserve (set by the server at start) */
  serverFdBudget = Infinity;

  constructor(readonly limits: Readonly<UserLimits> = DEFAULT_LIMITS) {}

  get(uid: number): User {
    let u = this.users.get(uid);
    if (!u) {
      u = new User(uid, this);
      this.users.set(uid, u);
    }
    return u;
  }

  /** The server's RLIMIT_NOFILE: clients' fds in flight get what the reserve leaves. */
  setFdLimit(nofile: number): void {
    this.serverFdBudget = Math.max(0, nofile - this.limits.server_fds_reserved);
  }

  chargeServerFds(n: number): void {
    this.checkServerFds(n);
    this.serverFds += n;
  }

  /** Fails as chargeServerFds would, charging nothing. */
  checkServerFds(n: number): void {
    if (this.serverFds + n > this.serverFdBudget) {
      fail(errno.EMFILE, `the server holds ${this.serverFds} fds in flight of ${this.serverFdBudget} ` +
        `(RLIMIT_NOFILE less limit server_fds_reserved)`);
    }
  }

  unchargeServerFds(n: number): void {
    this.serverFds -= n;
  }

  chargeConnection(u: User): void {
    if (u.connections + 1 > LIMITS.USER_MAX_CONN) fail(errno.EMFILE, `uid ${u.uid} has too many connections`);
    u.connections++;
  }

  chargeBus(u: User): void {
    if (u.buses + 1 > LIMITS.USER_MAX_BUSES) fail(errno.EMFILE, `uid ${u.uid} has too many buses`);
    u.buses++;
  }

  uncharge(u: User, what: 'connections' | 'buses'): void {
    u.uncharge(what);
  }

  /** A user with nothing charged leaves the registry. */
  forget(u: User): void {
    if (this.users.get(u.uid) === u) this.users.delete(u.uid);
  }

  /** Teardown check. */
  get size(): number {
    return this.users.size;
  }

  /** Every user charged for something (for the census). */
  all(): IterableIterator<User> {
    return this.users.values();
  }
}
