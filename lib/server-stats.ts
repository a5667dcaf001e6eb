// What the running server can tell that no kdbus ABI shows, per bus and per
// connection: queue depths (in all, and per sending user), pool size and
// bytes in use, pending replies (waited for and owed), parked synchronous
// calls, matches, names, fds held in queued messages, and per user the
// quota use against kdbusfs's limits; with the server's census
// (lib/core/census.ts). `kdbusfs stats` reads it from the stats socket
// (lib/stats-socket.ts). Plain JSON: ids are numbers (kdbus ids stay far
// below 2^53).
import { KDBUS_SRC_ID_KERNEL, LIMITS } from './abi/kdbus.js';
import type { Bus } from './core/bus.js';
import type { Census } from './core/census.js';
import type { Connection } from './core/connection.js';
import type { Domain } from './core/domain.js';
import type { Charge, User } from './core/user.js';

export const STATS_VERSION = 1;

export interface ConnectionStats {
  id: number;
  kind: 'ordinary' | 'activator' | 'policy-holder' | 'monitor';
  description: string | null;
  /** the uid it is charged to (-1: a custom endpoint's anonymous user) */
  uid: number;
  /** the process and thread that said HELLO, where known */
  pid: number | null;
  tid: number;
  comm: string | null;
  endpoint: string;
  /** names it owns (primary owner) */
  names: string[];
  matches: number;
  queue: {
    /** messages in its receive queue */
    messages: number;
    /** pool bytes those messages' payloads take */
    bytes: number;
    /** messages per sending uid ("kernel" for notifications, "gone" when the sender left uncharged) */
    bySender: Record<string, number>;
    /** out of the queue while their fds are installed */
    installing: number;
    /** messages lost because they could not be queued (dropped_msgs not read yet) */
    lost: number;
  };
  pool: { size: number; used: number; slices: number };
  replies: {
    /** replies this connection waits for */
    waiting: number;
    /** of those, synchronous calls parked in the server until the reply */
    parkedCalls: number;
    /** replies others wait for from this connection */
    owed: number;
  };
  /** fds held in the messages queued here (FDS items and memfds) */
  heldFds: number;
}

/** A well-known name's line: who owns it, who waits for it (KDBUS_NAME_* flags as numbers). */
export interface NameQueueStats {
  name: string;
  owner: { id: number; flags: number };
  /** the activator standing in for the name (it owns it while no implementer does), if any */
  activator: number | null;
  /** the connections queued for it, first in line first, with the flags they asked with */
  waiters: Array<{ id: number; flags: number }>;
}

export interface BusStats {
  name: string;
  id: number;
  uid: number;
  endpoints: string[];
  connections: ConnectionStats[];
  monitors: number;
  names: number;
  /** connections waiting in line for a name someone else owns */
  nameWaiters: number;
  /** per well-known name: its owner and the connections queued for it */
  nameQueues: NameQueueStats[];
  policyEntries: number;
  /** kernel notifications announced and not delivered yet */
  pendingNotifications: number;
  /** messages queued on the bus's connections in all */
  queued: number;
}

export interface UserStats {
  uid: number;
  /** what it is charged, beside each the limit bounding it */
  use: Record<Charge, number>;
  limits: Record<Charge, number>;
}

export interface ServerStats {
  version: typeof STATS_VERSION;
  mountpoint: string;
  pid: number;
  /** milliseconds since the epoch */
  time: number;
  buses: BusStats[];
  users: UserStats[];
  census: Census;
}

function kindOf(c: Connection): ConnectionStats['kind'] {
  if (c.isMonitor) return 'monitor';
  if (c.isActivator) return 'activator';
  if (c.isPolicyHolder) return 'policy-holder';
  return 'ordinary';
}

function connectionStats(bus: Bus, c: Connection, owed: Map<bigint, number>): ConnectionStats {
  const bySender: Record<string, number> = {};
  let bytes = 0;
  let heldFds = 0;
  for (const e of c.queue.entries()) {
    const m = e.kmsg;
    const sender = m.srcId === KDBUS_SRC_ID_KERNEL ? 'kernel'
      : String(bus.connection(m.srcId)?.user.uid ?? e.user?.uid ?? e.payer?.uid ?? 'gone');
    bySender[sender] = (bySender[sender] ?? 0) + 1;
    if (e.payloadOff >= 0) bytes += m.payloadSize;
    heldFds += m.fds.length + m.parts.filter((p) => p.kind === 'memfd').length;
  }
  let parkedCalls = 0;
  for (const r of c.replies) if (r.syncWaiter) parkedCalls++;
  const pid = c.meta.pids?.tgid.numbers[0] ?? null;
  return {
    id: Number(c.id), kind: kindOf(c), description: c.description, uid: c.user.uid, pid, tid: c.tid,
    comm: c.meta.pidComm ? c.meta.pidComm.toString('utf8').replace(/\0.*$/s, '') : null,
    endpoint: c.ep.name, names: c.ownedNames(), matches: c.matches.size,
    queue: { messages: c.queue.count, bytes, bySender, installing: c.installing, lost: c.lostCount },
    pool: { size: c.pool.size, used: c.pool.size - c.pool.remain(), slices: c.pool.slicesInUse() },
    replies: { waiting: c.replies.size, parkedCalls, owed: owed.get(c.id) ?? 0 },
    heldFds,
  };
}

function busStats(bus: Bus): BusStats {
  const owed = new Map<bigint, number>();
  for (const c of bus.connections.values()) {
    for (const r of c.replies) owed.set(r.replier.id, (owed.get(r.replier.id) ?? 0) + 1);
  }
  const connections = [...bus.connections.values()].sort((a, b) => Number(a.id - b.id))
    .map((c) => connectionStats(bus, c, owed));
  const counts = bus.names.counts();
  const nameQueues = bus.names.queues().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((q) => ({
    name: q.name, owner: { id: Number(q.owner), flags: Number(q.flags) },
    activator: q.activator === null ? null : Number(q.activator),
    waiters: q.waiters.map((w) => ({ id: Number(w.id), flags: Number(w.flags) })),
  }));
  return {
    name: bus.name, id: Number(bus.id), uid: bus.uid, endpoints: [...bus.endpoints.keys()].sort(),
    connections, monitors: bus.monitors.size, names: counts.names, nameWaiters: counts.waiters, nameQueues,
    policyEntries: bus.policy.size, pendingNotifications: bus.notificationsPending,
    queued: connections.reduce((n, c) => n + c.queue.messages, 0),
  };
}

function userStats(u: User): UserStats {
  const l = u.limits;
  return {
    uid: u.uid,
    use: u.charges(),
    limits: {
      connections: LIMITS.USER_MAX_CONN, buses: LIMITS.USER_MAX_BUSES, queuedBytes: l.user_queued_bytes,
      copyBytes: l.user_payload_copy_bytes, fds: l.user_fds, names: l.user_names, matches: l.user_matches,
      matchBytes: l.user_match_bytes, replies: l.user_replies,
    },
  };
}

/** The whole picture, now. */
export function gatherStats(domain: Domain, mountpoint: string, census: Census): ServerStats {
  const buses = [...domain.buses.values()].sort((a, b) => a.name.localeCompare(b.name)).map(busStats);
  const users = [...domain.users.all()].sort((a, b) => a.uid - b.uid).map(userStats);
  // custom endpoints' anonymous users are charged apart from the registry
  for (const bus of domain.buses.values()) {
    for (const ep of bus.endpoints.values()) if (ep.user && !ep.user.idle) users.push(userStats(ep.user));
  }
  return { version: STATS_VERSION, mountpoint, pid: process.pid, time: Date.now(), buses, users, census };
}
