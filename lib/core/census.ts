// The server's state, counted: every live object the core keeps (buses,
// endpoints, connections, names and their queued owners, matches, pending
// replies, queued messages, pool slices, per-user charges) and what the
// server holds for them (open files, parked ioctls, pollers, fds taken from
// clients). Once every client is gone, each count is back where it was
// before they came. Tests read it from outside (`kdbusfs mount` writes one
// JSON line to stderr on SIGUSR2, lib/cli.ts) instead of guessing from the
// server's fd count and RSS.
import type { Connection } from './connection.js';
import type { Domain } from './domain.js';
import type { Charge, User } from './user.js';

export interface Census {
  buses: number;
  /** default and custom endpoints of live buses */
  endpoints: number;
  /** connections linked into a bus (monitors, activators and policy holders included) */
  connections: number;
  /** open files: control and endpoint handles */
  handles: number;
  /** name registry entries */
  names: number;
  /** connections queued for a name someone else owns */
  nameWaiters: number;
  /** connections the name registry keeps bookkeeping for */
  nameClients: number;
  /** bus policy entries (from policy holders and activators) */
  policyEntries: number;
  matches: number;
  /** replies a connection waits for (asynchronous and synchronous) */
  replies: number;
  /** ioctls parked on their FUSE request: synchronous calls, RECVs installing fds */
  parked: number;
  /** messages in receive queues */
  queued: number;
  /** messages out of their queue while their fds are installed */
  installing: number;
  /** queued messages charged to their sending user (the per-user quota) */
  chargedMessages: number;
  /** pool slices allocated, and their bytes, in every pool of an open file */
  poolSlices: number;
  poolBytes: number;
  /** kernel notifications announced but not delivered yet */
  notifications: number;
  /** users charged for something, and their connection and bus charges */
  users: number;
  userCharges: number;
  /** fds clients' messages hold, all users together */
  serverFds: number;
  /**
   * Per-user accounting (lib/core/user.ts): per uid (-1: custom endpoints'
   * anonymous users) what it is charged for, and the fd budget every user's
   * messages share (RLIMIT_NOFILE less the reserve).
   */
  accounts: { byUid: Record<string, Record<Charge, number>>; fdBudget: number };
  /** fds the server took from clients (message fds, memfds, CANCEL_FDs) and holds */
  heldFds: number;
  /** CANCEL_FD watches */
  fdWatches: number;
  /** files whose pollers wait for a wakeup */
  pollers: number;
  /** endpoint files in the tree */
  endpointFiles: number;
  /** the server process (process.memoryUsage), bytes */
  memory: { rss: number; heapUsed: number; external: number; arrayBuffers: number };
}

/**
 * Fds the server took from clients and has not let go of, and its fd
 * watches: the server's fd access (lib/server.ts) reports each take, release
 * and watch here.
 */
export class FdLedger {
  held = 0;
  watches = 0;

  /** A takeFd result: counts it if it is an fd. */
  took(fd: number): number {
    if (fd >= 0) this.held++;
    return fd;
  }

  released(count: number): void {
    this.held -= count;
  }

  /** A watchFd result: counts it if it is a watch. */
  watching(id: number): number {
    if (id >= 0) this.watches++;
    return id;
  }

  unwatched(): void {
    this.watches--;
  }
}

/** What the server holds beside the domain. */
export interface ServerHoldings {
  /** every open file's handle (lib/core/handle.ts) */
  handles: Iterable<{ connection(): Connection | null }>;
  parked: number;
  pollers: number;
  endpointFiles: number;
  fds: FdLedger;
}

export function takeCensus(domain: Domain, held: ServerHoldings): Census {
  const c: Census = {
    buses: domain.buses.size, endpoints: 0, connections: 0, handles: 0, names: 0, nameWaiters: 0, nameClients: 0,
    policyEntries: 0, matches: 0, replies: 0, parked: held.parked, queued: 0, installing: 0, chargedMessages: 0,
    poolSlices: 0, poolBytes: 0, notifications: 0, users: domain.users.size, userCharges: 0,
    serverFds: domain.users.serverFds, accounts: { byUid: {}, fdBudget: domain.users.serverFdBudget },
    heldFds: held.fds.held, fdWatches: held.fds.watches, pollers: held.pollers, endpointFiles: held.endpointFiles,
    memory: { rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0 },
  };
  // Connections linked into a bus, and those a handle still holds after they
  // ended (their pools live until the file closes): a leak in either shows.
  const conns = new Set<Connection>();
  for (const bus of domain.buses.values()) {
    c.endpoints += bus.endpoints.size;
    c.connections += bus.connections.size;
    const names = bus.names.counts();
    c.names += names.names;
    c.nameWaiters += names.waiters;
    c.nameClients += names.clients;
    c.policyEntries += bus.policy.size;
    c.notifications += bus.notificationsPending;
    for (const conn of bus.connections.values()) conns.add(conn);
    // a custom endpoint's connections are charged to its own anonymous user
    for (const ep of bus.endpoints.values()) if (ep.user && !ep.user.idle) addCharges(c, ep.user);
  }
  for (const h of held.handles) {
    c.handles++;
    const conn = h.connection();
    if (conn) conns.add(conn);
  }
  for (const conn of conns) {
    c.matches += conn.matches.size;
    c.replies += conn.replies.size;
    c.queued += conn.queue.count;
    c.installing += conn.installing;
    for (const n of conn.msgUsers.values()) c.chargedMessages += n;
    c.poolSlices += conn.pool.slicesInUse();
    c.poolBytes += conn.pool.size - conn.pool.remain();
  }
  for (const u of domain.users.all()) addCharges(c, u);
  const m = process.memoryUsage();
  c.memory = { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
  return c;
}

function addCharges(c: Census, u: User): void {
  c.userCharges += u.connections + u.buses;
  const mine = u.charges();
  const had = c.accounts.byUid[u.uid];
  if (had) for (const k of Object.keys(mine) as Charge[]) had[k] += mine[k];
  else c.accounts.byUid[u.uid] = mine;
}

/** The census as the one stderr line `kdbusfs mount` writes on SIGUSR2. */
export function censusLine(c: Census): string {
  return `${new Date().toISOString()} kdbusfs[census] ${JSON.stringify(c)}\n`;
}
