// A connection to a bus (ipc/kdbus/connection.c): made by HELLO on an
// endpoint handle, it owns a pool, a queue, a match database and pending
// replies, and is torn down by BYEBYE or the handle's release.
import { ATTACH, ATTACH_ALL, ATTACH_ANY, CMD_HELLO, HELLO_ACCEPT_FD, HELLO_ACTIVATOR, HELLO_MONITOR,
  HELLO_POLICY_HOLDER, ITEM, INFO, ITEM_HEADER_SIZE, KDBUS_FLAG_KERNEL, LIMITS, MSG, NAME_ACTIVATOR,
  RECV_DROP, RECV_PEEK, RECV_USE_PRIORITY, SIZEOF_CREDS, SIZEOF_PIDS, align8 } from '../abi/kdbus.js';
import { POLL } from '../abi/poll.js';
import { items, itemSysname, sysnameShown } from '../abi/items.js';
import { errno, fail } from './errors.js';
import { Pool, type PoolBacking } from './pool.js';
import { Queue } from './queue.js';
import { MatchDb } from './match.js';
import { msgHeader, payloadItems, type Kmsg, type QueueEntry, type FdAccess } from './message.js';
import { exportMeta, PROC_ATTACH, ProcMeta, timestampNow, type ConnMeta } from './metadata.js';
import { nameValid } from './names.js';
import type { Reply, ReplyPeer } from './reply.js';
import type { Bus } from './bus.js';
import type { Endpoint } from './endpoint.js';
import { bytes, type User } from './user.js';
import type { NameClient } from './names.js';
import type { PolicyConn, PolicyCreds } from './policy.js';
import type { InstallDone } from './call.js';
import { TaskCreds, taskCreds } from './task.js';
import { procStatus } from './proc.js';
import { log } from '../log.js';

/** kdbus_sanitize_attach_flags: ANY means ALL; unknown bits are EINVAL. */
export function sanitizeAttachFlags(flags: bigint): bigint {
  if (flags === ATTACH_ANY) return ATTACH_ALL;
  if (flags & ~ATTACH_ALL) fail(errno.EINVAL, `unknown attach flags 0x${flags.toString(16)}`);
  return flags;
}

/** Wakes the connection's poller (FUSE_NOTIFY_POLL). */
export type Waker = () => void;

/** The credentials of an ioctl's caller; ESRCH if it is gone. */
export function callerCreds(tid: number): TaskCreds {
  const c = taskCreds(tid);
  if (!c) fail(errno.ESRCH, `caller ${tid} vanished`);
  return c;
}

/**
 * A message being received with fds (kdbus_queue_entry_install with
 * install_fds): taken out of the queue, laid out in a slice of the pool that
 * is reserved but not written yet, while the fds are installed in the
 * receiver. Then finishInstall writes the numbers and hands the slice over, or
 * abortInstall puts things back.
 */
export interface PendingInstall {
  entry: QueueEntry;
  /** the entry came from the queue (RECV), not a synchronous reply */
  queued: boolean;
  off: number;
  size: number;
  /** the message as the receiver will see it, every fd number -1 */
  buf: Buffer;
  /** where in buf each installed fd's number goes, in fds order */
  slots: number[];
  /** the server's copies, in install order (kdbus_msg_make_items: memfds, then the FDS item) */
  fds: number[];
}

/** Where a received message went (struct kdbus_msg_info). */
export interface Received {
  off: number;
  size: number;
  /** some fd could not be installed (RECV_RETURN_INCOMPLETE_FDS) */
  incomplete: boolean;
}

/** What a RECV found: a message (in the pool, or to install with fds), or lost messages to report. */
export type RecvResult =
  | { kind: 'received'; msg: Received }
  | { kind: 'install'; install: PendingInstall }
  | { kind: 'lost'; dropped: bigint };

/** Everything a connection is made with (kdbus_conn_new). */
export interface ConnectionOptions {
  bus: Bus;
  ep: Endpoint;
  id: bigint;
  /** HELLO flags */
  flags: bigint;
  attachFlagsSend: bigint;
  attachFlagsRecv: bigint;
  pool: Pool;
  user: User;
  privileged: boolean;
  /** CONN_DESCRIPTION, a byte string (itemSysname) */
  description: string | null;
  /** process metadata at HELLO, or what a privileged HELLO claimed */
  meta: ProcMeta;
  fakedMeta: boolean;
  /** the caller's thread at HELLO */
  tid: number;
  /** credentials at HELLO (conn->cred) */
  creds: PolicyCreds;
  fds: FdAccess;
  wake: Waker;
}

/** The message laid out for a receiver, with where its fd numbers go. */
interface Composed {
  buf: Buffer;
  slots: number[];
}

export class Connection implements ReplyPeer, NameClient, PolicyConn {
  state: 'active' | 'dead' = 'active';
  /** told of every change of the state, and of the queue becoming empty or not (lib/core/fast-state.ts) */
  onChange: (() => void) | null = null;
  readonly queue = new Queue(() => this.changed());
  readonly matches = new MatchDb();
  readonly replies = new Set<Reply>();
  /** messages lost because they could not be queued (reported as dropped_msgs) */
  lostCount = 0;
  /**
   * Per sending user: messages queued here beyond the unaccounted share, and
   * payload bytes of its messages queued here (kdbusfs's byte quota). Made at
   * their first entry: most connections never need them.
   */
  private msgUsersMap: Map<User, number> | null = null;
  private queuedBytesMap: Map<User, number> | null = null;
  /** matches and their bytes charged to our user (chargeMatches) */
  private chargedMatches = 0;
  private chargedMatchBytes = 0;
  attachFlagsSend: bigint;
  attachFlagsRecv: bigint;
  readonly wake: Waker;
  /** entries out of the queue while their fds are installed (BYEBYE waits for them too) */
  installing = 0;
  /** current_cred() of the ioctl being served (beginCall) */
  private readonly caller = new CallerCreds(this);
  readonly bus: Bus;
  readonly ep: Endpoint;
  readonly id: bigint;
  readonly flags: bigint;
  readonly pool: Pool;
  readonly user: User;
  readonly privileged: boolean;
  readonly description: string | null;
  readonly meta: ProcMeta;
  readonly fakedMeta: boolean;
  readonly tid: number;
  readonly creds: PolicyCreds;
  readonly fds: FdAccess;

  constructor(o: ConnectionOptions) {
    this.bus = o.bus;
    this.ep = o.ep;
    this.id = o.id;
    this.flags = o.flags;
    this.attachFlagsSend = o.attachFlagsSend;
    this.attachFlagsRecv = o.attachFlagsRecv;
    this.pool = o.pool;
    this.user = o.user;
    this.privileged = o.privileged;
    this.description = o.description;
    this.meta = o.meta;
    this.fakedMeta = o.fakedMeta;
    this.tid = o.tid;
    this.creds = o.creds;
    this.fds = o.fds;
    this.wake = o.wake;
  }

  get isActivator(): boolean { return (this.flags & HELLO_ACTIVATOR) !== 0n; }
  get isPolicyHolder(): boolean { return (this.flags & HELLO_POLICY_HOLDER) !== 0n; }
  get isMonitor(): boolean { return (this.flags & HELLO_MONITOR) !== 0n; }
  get isOrdinary(): boolean { return !this.isActivator && !this.isPolicyHolder && !this.isMonitor; }
  get acceptsFds(): boolean { return (this.flags & HELLO_ACCEPT_FD) !== 0n; }
  get active(): boolean { return this.state === 'active'; }
  get msgUsers(): ReadonlyMap<User, number> { return this.msgUsersMap ?? NO_COUNTS; }
  get queuedBytesBy(): ReadonlyMap<User, number> { return this.queuedBytesMap ?? NO_COUNTS; }

  /** Names this connection is the primary owner of (for policy). */
  ownedNames(): string[] {
    return this.bus.names.ownedNames(this).map((n) => n.name);
  }

  changed(): void {
    this.onChange?.();
  }

  /** Starts serving an ioctl of thread tid on this connection. */
  beginCall(tid: number): void {
    this.caller.begin(tid);
  }

  /**
   * current_cred() of the ioctl being served. Its fields are read from /proc
   * only when a decision looks at one (a privileged sender's talk check never
   * does); HELLO's credentials if the caller is gone.
   */
  currentCreds(): PolicyCreds {
    return this.caller;
  }

  /** Active-reference check of every connected ioctl (kdbus_conn_acquire). */
  acquire(): void {
    if (!this.active) fail(errno.ECONNRESET, 'connection is shut down');
  }

  /**
   * kdbus_conn_entry_insert: queue a message (its payload is copied into our
   * pool here), charging the sending user beyond the unaccounted share.
   */
  enqueue(m: Kmsg, sender: Connection | null, reply: Reply | null,
          stage: (m: Kmsg, pool: Pool) => number): void {
    if (this.queue.count >= LIMITS.CONN_MAX_MSGS) fail(errno.ENOBUFS, `queue of ${this.id} full`);
    if (!this.active) fail(errno.ECONNRESET, 'receiver is gone');
    if (m.fds.length && !this.acceptsFds) fail(errno.ECOMM, `${this.id} does not accept fds`);
    if (sender && this.queue.count >= LIMITS.CONN_MAX_MSGS_UNACCOUNTED &&
        (this.msgUsers.get(sender.user) ?? 0) >= LIMITS.CONN_MAX_MSGS_PER_USER) {
      fail(errno.ENOBUFS, `uid ${sender.user.uid} has too many messages queued at ${this.id}`);
    }
    // charged before the payload is read: a refused message costs no copy
    const payer = sender && m.payloadSize > 0 ? sender.user : null;
    if (payer) this.chargeQueued(payer, m.payloadSize);
    let payloadOff: number;
    try {
      payloadOff = stage(m, this.pool);
    } catch (e) {
      if (payer) this.unchargeQueued(payer, m.payloadSize);
      throw e;
    }
    let user: User | null = null;
    if (sender && this.queue.count >= LIMITS.CONN_MAX_MSGS_UNACCOUNTED) {
      this.msgUsersMap = counted(this.msgUsersMap, sender.user, (this.msgUsers.get(sender.user) ?? 0) + 1);
      user = sender.user;
    }
    this.queue.add({ kmsg: m, priority: m.priority, payloadOff, reply, user, payer, bytes: payer ? m.payloadSize : 0 });
    m.hold();
    this.wake();
  }

  /** kdbus_conn_entry_make: a message for us that does not go through the queue (a synchronous reply). */
  makeEntry(m: Kmsg, stage: (m: Kmsg, pool: Pool) => number): QueueEntry {
    if (!this.active) fail(errno.ECONNRESET, 'receiver is gone');
    if (m.fds.length && !this.acceptsFds) fail(errno.ECOMM, `${this.id} does not accept fds`);
    const e = { kmsg: m, priority: m.priority, payloadOff: stage(m, this.pool), reply: null, user: null, payer: null, bytes: 0 };
    m.hold();
    return e;
  }

  /**
   * kdbus_queue_entry_move: takes over another connection's queued entry
   * (an activator's, when its name gets an owner, or back). kdbus copies the
   * payload pool to pool; the old pool's client may have written there, so
   * it comes from the message's own copy (stagePayload keeps one for every
   * message sent to a name, and only those move). The caller releases the
   * entry from the old pool.
   */
  adopt(e: QueueEntry): void {
    let payloadOff = -1;
    if (e.payloadOff >= 0) {
      const bytes = e.kmsg.payload;
      if (!bytes) fail(errno.EFAULT, 'a message sent by id does not move');
      payloadOff = this.pool.alloc(bytes.length);
      this.pool.fill(payloadOff, bytes);
    }
    this.queue.add({ kmsg: e.kmsg, priority: e.priority, payloadOff, reply: e.reply, user: null, payer: null, bytes: 0 });
    e.kmsg.hold();
    this.wake();
  }

  /** Frees an entry that will never be received. */
  discard(e: QueueEntry): void {
    this.settleQueued(e);
    if (e.payloadOff >= 0) this.pool.release(e.payloadOff);
    e.kmsg.release(this.fds);
  }

  /**
   * kdbus_queue_entry_remove: unlink, uncharge, drop the payload slice unless
   * it moved on, and the entry's hold on the message's files unless kept
   * (with it the sender's byte charge, which settleQueued ends then).
   */
  dequeue(e: QueueEntry, releasePayload: boolean, keepHold = false): void {
    this.queue.remove(e);
    if (!keepHold) this.settleQueued(e);
    if (e.user) {
      this.msgUsersMap = counted(this.msgUsersMap, e.user, (this.msgUsers.get(e.user) ?? 1) - 1);
    }
    if (releasePayload && e.payloadOff >= 0) this.pool.release(e.payloadOff);
    if (!keepHold) e.kmsg.release(this.fds);
  }

  /** The message as the receiver sees it: header, notification or payload items, metadata. */
  private compose(e: QueueEntry, receiverTid: number): Composed {
    const m = e.kmsg;
    const parts: Buffer[] = [];
    let size = MSG.items;
    let slots: number[] = [];
    if (m.notifyItems) {
      parts.push(m.notifyItems);
      size += m.notifyItems.length;
    }
    if (m.parts.length || m.dstName !== null || m.fds.length) {
      const p = payloadItems(e);
      const at = size;
      if (p.fdSlots.length) slots = p.fdSlots.map((o) => o + at);
      parts.push(p.items);
      size += p.items.length;
    }
    if (m.procMeta || m.connMeta) {
      const meta = exportMeta(m.procMeta, m.connMeta, this.attachFlagsRecv, { tid: receiverTid });
      if (meta.length) {
        parts.push(meta);
        size += meta.length;
      }
    }
    return { buf: Buffer.concat([msgHeader(m, size), ...parts], size), slots };
  }

  /**
   * kdbus_queue_entry_install without installing fds (every fd number -1):
   * writes the message into our pool and returns its slice offset and size;
   * the payload slice becomes its child.
   */
  install(e: QueueEntry, ownsPayload: boolean, receiverTid: number): { off: number; size: number } {
    const { buf } = this.compose(e, receiverTid);
    const size = buf.length;
    const off = this.pool.alloc(size);
    this.pool.fill(off, buf);
    if (ownsPayload && e.payloadOff >= 0) this.pool.setChild(off, e.payloadOff);
    return { off, size };
  }

  /**
   * Receiving e with its fds, part 1: lays the message out and reserves its
   * slice (ENOBUFS leaves everything as it was), and takes a queued entry out
   * of the queue, keeping its hold on the files.
   */
  beginInstall(e: QueueEntry, receiverTid: number, queued: boolean): PendingInstall {
    const { buf, slots } = this.compose(e, receiverTid);
    const off = this.pool.alloc(buf.length);
    if (queued) this.dequeue(e, false, true);
    this.installing++;
    return { entry: e, queued, off, size: buf.length, buf, slots, fds: e.kmsg.installFds() };
  }

  /**
   * Part 2, the fds installed: numbers[i] is the receiver's number for fds[i],
   * or -errno. Writes the message, hands its slice to the receiver and
   * returns whether some fd could not be installed (RECV_RETURN_INCOMPLETE_FDS).
   */
  finishInstall(p: PendingInstall, numbers: number[]): boolean {
    this.installing--;
    let incomplete = false;
    for (let i = 0; i < p.slots.length; i++) {
      const n = numbers[i] ?? -1;
      if (n < 0) incomplete = true;
      p.buf.writeInt32LE(n < 0 ? -1 : n, p.slots[i]!);
    }
    this.pool.fill(p.off, p.buf);
    if (p.entry.payloadOff >= 0) this.pool.setChild(p.off, p.entry.payloadOff);
    this.pool.publish(p.off);
    this.pool.release(p.off);
    this.settleQueued(p.entry);
    p.entry.kmsg.release(this.fds);
    return incomplete;
  }

  /**
   * Part 2 when nothing was installed (the receiver could not be reached, or
   * we are gone). A queued message goes back to the head of the queue, where
   * RECV finds it again (and PEEK or DROP can deal with it); a synchronous
   * reply is dropped.
   */
  abortInstall(p: PendingInstall): void {
    this.installing--;
    this.pool.release(p.off);
    if (!p.queued || !this.active) {
      this.discard(p.entry);
      return;
    }
    this.requeue(p.entry);
  }

  /**
   * Installs p's fds in the receiver (install: native fdInstall, through the
   * handle that parked the ioctl), then hands the message over and lets
   * `received` write where it went (it returns the ioctl's result), or puts
   * everything back when nothing could be installed or we went away
   * meanwhile. If the install cannot start, p is put back and its errno raised.
   */
  installThen(p: PendingInstall, install: (fds: number[], done: InstallDone) => number,
              received: (msg: Received) => number): void {
    const started = install(p.fds, (result, why) => {
      if (typeof result === 'number') {
        this.abortInstall(p);
        log(p.queued ? 'recv' : 'call', `connection ${this.id}: ${p.queued ? 'RECV of a message' : 'a synchronous reply'}` +
          ` with ${p.fds.length} fds failed: ${why ?? 'fd install failed'} (errno ${-result})` +
          `${!p.queued ? '; the reply is lost' : this.active ? '; it stays queued' : ''}`);
        return result;
      }
      if (!this.active) {
        this.abortInstall(p);
        return -errno.ECONNRESET;
      }
      const incomplete = this.finishInstall(p, result);
      return received({ off: p.off, size: p.size, incomplete });
    });
    if (started < 0) {
      this.abortInstall(p);
      fail(-started, 'cannot start installing fds');
    }
  }

  /**
   * Brings the user's match charges in line with our matches (after
   * MATCH_ADD, which checked the limits, and MATCH_REMOVE); none once we are
   * disconnected.
   */
  chargeMatches(): void {
    const n = this.active ? this.matches.size : 0;
    const b = this.active ? this.matches.bytes : 0;
    if (n > this.chargedMatches) this.user.charge('matches', n - this.chargedMatches);
    else if (n < this.chargedMatches) this.user.uncharge('matches', this.chargedMatches - n);
    if (b > this.chargedMatchBytes) this.user.charge('matchBytes', b - this.chargedMatchBytes);
    else if (b < this.chargedMatchBytes) this.user.uncharge('matchBytes', this.chargedMatchBytes - b);
    this.chargedMatches = n;
    this.chargedMatchBytes = b;
  }

  /** Charges payer n bytes queued here, within its limits here and in total. */
  private chargeQueued(payer: User, n: number): void {
    const here = this.queuedBytesBy.get(payer) ?? 0;
    const limit = payer.limits.user_queued_bytes_per_receiver;
    if (here + n > limit) {
      fail(errno.ENOBUFS, `uid ${payer.uid}: ${bytes(limit)} of queued message bytes at ${this.id} ` +
        '(limit user_queued_bytes_per_receiver)');
    }
    payer.charge('queuedBytes', n);
    this.queuedBytesMap = counted(this.queuedBytesMap, payer, here + n);
  }

  private unchargeQueued(payer: User, n: number): void {
    this.queuedBytesMap = counted(this.queuedBytesMap, payer, (this.queuedBytesBy.get(payer) ?? 0) - n);
    payer.uncharge('queuedBytes', n);
  }

  /** Ends e's byte charge (once: e is received, dropped, or moved on). */
  settleQueued(e: QueueEntry): void {
    if (!e.payer) return;
    this.unchargeQueued(e.payer, e.bytes);
    e.payer = null;
    e.bytes = 0;
  }

  /** Puts an entry taken out of the queue back at its head (rare: an aborted install). */
  private requeue(e: QueueEntry): void {
    const rest = [...this.queue.entries()];
    for (const x of rest) this.queue.remove(x);
    this.queue.add(e);
    for (const x of rest) this.queue.add(x);
    if (e.user) this.msgUsersMap = counted(this.msgUsersMap, e.user, (this.msgUsers.get(e.user) ?? 0) + 1);
    this.wake();
  }

  /**
   * KDBUS_CMD_RECV: the message at the head of the queue (EAGAIN if none,
   * ENOMSG if none at that priority) handed over, or, for a message whose fds
   * must be installed, the install to carry out; or the count of messages
   * lost since the last RECV, which the edge reports with EOVERFLOW.
   */
  recv(flags: bigint, priority: bigint, receiverTid: number): RecvResult {
    const e = this.queue.peek(priority, (flags & RECV_USE_PRIORITY) !== 0n);
    if (flags & RECV_DROP) {
      this.dequeue(e, true);
      if (e.reply && e.reply.waiter.replies.has(e.reply)) this.bus.replyDropped(e.reply, e);
      return { kind: 'received', msg: { off: 0, size: 0, incomplete: false } };
    }
    if (this.lostCount) {
      const dropped = BigInt(this.lostCount);
      this.lostCount = 0;
      return { kind: 'lost', dropped };
    }
    const peek = (flags & RECV_PEEK) !== 0n;
    // PEEK installs no fds (their numbers read -1)
    if (!peek && e.kmsg.installCount > 0) {
      return { kind: 'install', install: this.beginInstall(e, receiverTid, true) };
    }
    return { kind: 'received', msg: this.handOver(e, !peek, true, receiverTid) };
  }

  /**
   * A message without fds to install, handed to the receiver. A taken entry
   * gives its payload slice to the message's and, if queued, leaves the
   * queue; a peeked one stays as it was.
   */
  handOver(e: QueueEntry, take: boolean, queued: boolean, receiverTid: number): Received {
    const { off, size } = this.install(e, take, receiverTid);
    this.pool.publish(off);
    if (take && queued) this.dequeue(e, false);
    // a synchronous reply's entry (makeEntry) is done with too
    else if (take) e.kmsg.release(this.fds);
    this.pool.release(off);
    return { off, size, incomplete: false };
  }

  /** KDBUS_CMD_CONN_UPDATE attach flags part (policy is the bus's). */
  updateAttachFlags(send: bigint | null, recv: bigint | null): void {
    if (send !== null) {
      if (this.bus.attachFlagsReq & ~send) fail(errno.EINVAL, 'cannot drop attach flags the bus requires');
      this.attachFlagsSend = send;
    }
    if (recv !== null) this.attachFlagsRecv = recv;
  }

  /** Connection metadata of this sender at send time (kdbus_meta_conn_collect). */
  connMeta(seq: bigint, flags: bigint): ConnMeta {
    const c: ConnMeta = {};
    if (flags & ATTACH.TIMESTAMP) c.timestamp = timestampNow(seq);
    if (flags & ATTACH.NAMES) c.names = this.bus.names.ownedNames(this);
    if ((flags & ATTACH.CONN_DESCRIPTION) && this.description !== null) c.description = this.description;
    return c;
  }

  /** struct kdbus_info for CONN_INFO: id, flags and the metadata cached at HELLO. */
  info(requested: bigint, viewerTid: number): Buffer {
    const flags = requested & this.attachFlagsSend;
    const conn = this.connMeta(0n, flags & ~ATTACH.TIMESTAMP);
    const meta = exportMeta(this.meta, conn, flags & ~ATTACH.TIMESTAMP, { tid: viewerTid });
    const head = Buffer.alloc(INFO.items);
    head.writeBigUInt64LE(BigInt(INFO.items + meta.length), INFO.size);
    head.writeBigUInt64LE(this.id, INFO.id);
    head.writeBigUInt64LE(this.flags, INFO.flags);
    return Buffer.concat([head, meta]);
  }

  pollMask(): number {
    if (!this.active) return POLL.ERR | POLL.HUP;
    return POLL.OUT | POLL.WRNORM | (this.queue.count ? POLL.IN | POLL.RDNORM : 0);
  }
}

const NO_COUNTS: ReadonlyMap<User, number> = new Map();

/** A per-user count set to n (dropped at 0), in map, made if needed; returns the map. */
function counted(map: Map<User, number> | null, user: User, n: number): Map<User, number> | null {
  if (n > 0) (map ??= new Map()).set(user, n);
  else map?.delete(user);
  return map;
}

/** A HELLO's returned item list: just the bus's BLOOM_PARAMETER. */
export function helloItems(bloomSize: bigint, bloomHashes: bigint): Buffer {
  const b = Buffer.alloc(8 + align8(ITEM_HEADER_SIZE + 16));
  b.writeBigUInt64LE(BigInt(b.length), 0);
  b.writeBigUInt64LE(BigInt(ITEM_HEADER_SIZE + 16), 8);
  b.writeBigUInt64LE(BigInt(ITEM.BLOOM_PARAMETER), 16);
  b.writeBigUInt64LE(bloomSize, 24);
  b.writeBigUInt64LE(bloomHashes, 32);
  return b;
}

/** A HELLO, decoded and checked by the edge. */
export interface Hello {
  ep: Endpoint;
  /** decided when the handle was opened (EndpointHandle.privilegedAtOpen) */
  privileged: boolean;
  tid: number;
  /** the kernel's copy of struct kdbus_cmd_hello: the answer's fields are written into it */
  cmd: Buffer;
  flags: bigint;
  itemsSize: number;
  /** sizes the handle's pool (its file's memory) */
  poolSetup(size: number): PoolBacking | number;
  fds: FdAccess;
  wake: Waker;
}

/**
 * KDBUS_CMD_HELLO: the connection made (connNew) and linked into its bus; an
 * activator takes its name, an activator or policy holder brings the bus
 * policy for it.
 */
export function connHello(h: Hello): Connection {
  const conn = connNew(h);
  const bus = conn.bus;
  bus.connect(conn);
  try {
    if (conn.isActivator) {
      for (const it of items(h.cmd, CMD_HELLO.items, h.itemsSize)) {
        if (it.type === ITEM.NAME) bus.names.acquire(conn, itemSysname(h.cmd, it), NAME_ACTIVATOR);
      }
    }
    if (conn.isActivator || conn.isPolicyHolder) {
      bus.policy.set(h.cmd, CMD_HELLO.items, h.itemsSize, 1, conn.isPolicyHolder, conn);
    }
  } catch (e) {
    bus.disconnect(conn);
    throw e;
  } finally {
    bus.flushNotifications();
  }
  return conn;
}

/** kdbus_conn_new: every HELLO rule, in the kernel's order. */
function connNew(h: Hello): Connection {
  const { ep, cmd: buf, flags, itemsSize, privileged } = h;
  const bus = ep.bus;
  const poolSize = buf.readBigUInt64LE(CMD_HELLO.pool_size);
  if (poolSize === 0n || poolSize % 4096n !== 0n) fail(errno.EFAULT, `bad pool size ${poolSize}`);
  if (poolSize > 0xffff_ffffn) fail(errno.ENOMEM, 'pool too large');
  if (!ep.active) fail(errno.ESHUTDOWN, 'endpoint is gone');
  const isMonitor = (flags & HELLO_MONITOR) !== 0n;
  const isActivator = (flags & HELLO_ACTIVATOR) !== 0n;
  const isHolder = (flags & HELLO_POLICY_HOLDER) !== 0n;
  if (Number(isMonitor) + Number(isActivator) + Number(isHolder) > 1) fail(errno.EINVAL, 'conflicting HELLO flags');
  if (isMonitor && ep.hasPolicy) fail(errno.EOPNOTSUPP, 'no monitors on custom endpoints');
  if (!privileged && (isActivator || isHolder || isMonitor)) fail(errno.EPERM, 'unprivileged special connection');
  let name: string | null = null;
  let creds: Buffer | null = null;
  let pids: Buffer | null = null;
  let seclabel: Buffer | null = null;
  let description: string | null = null;
  for (const it of items(buf, CMD_HELLO.items, itemsSize)) {
    switch (it.type) {
      case ITEM.NAME:
        if (!isActivator && !isHolder) fail(errno.EINVAL, 'NAME needs ACTIVATOR or POLICY_HOLDER');
        if (name !== null) fail(errno.EINVAL, 'NAME repeated');
        name = itemSysname(buf, it);
        if (!nameValid(name, true)) fail(errno.EINVAL, `invalid name "${sysnameShown(name)}"`);
        break;
      case ITEM.CREDS:
        if (!privileged) fail(errno.EPERM, 'unprivileged CREDS');
        if (it.size !== align8(ITEM_HEADER_SIZE + SIZEOF_CREDS)) fail(errno.EINVAL, 'bad CREDS');
        creds = buf.subarray(it.data, it.data + SIZEOF_CREDS);
        break;
      case ITEM.PIDS:
        if (!privileged) fail(errno.EPERM, 'unprivileged PIDS');
        if (it.size !== align8(ITEM_HEADER_SIZE + SIZEOF_PIDS)) fail(errno.EINVAL, 'bad PIDS');
        pids = buf.subarray(it.data, it.data + SIZEOF_PIDS);
        break;
      case ITEM.SECLABEL:
        if (!privileged) fail(errno.EPERM, 'unprivileged SECLABEL');
        seclabel = buf.subarray(it.data, it.data + it.len - 1); // a label is bytes, not text
        break;
      case ITEM.CONN_DESCRIPTION:
        if (description !== null) fail(errno.EINVAL, 'CONN_DESCRIPTION repeated');
        description = itemSysname(buf, it);
        break;
      case ITEM.POLICY_ACCESS:
      case ITEM.BLOOM_MASK:
      case ITEM.ID:
      case ITEM.NAME_ADD:
      case ITEM.NAME_REMOVE:
      case ITEM.NAME_CHANGE:
      case ITEM.ID_ADD:
      case ITEM.ID_REMOVE:
        break;
      default:
        fail(errno.EINVAL, `item ${it.type} not allowed in HELLO`);
    }
  }
  if ((isActivator || isHolder) && name === null) fail(errno.EINVAL, 'ACTIVATOR and POLICY_HOLDER need a NAME');
  const attachFlagsSend = sanitizeAttachFlags(buf.readBigUInt64LE(CMD_HELLO.attach_flags_send));
  const attachFlagsRecv = sanitizeAttachFlags(buf.readBigUInt64LE(CMD_HELLO.attach_flags_recv));
  buf.writeBigUInt64LE(bus.attachFlagsReq | KDBUS_FLAG_KERNEL, CMD_HELLO.attach_flags_send);
  if (bus.attachFlagsReq & ~attachFlagsSend) fail(errno.ECONNREFUSED, 'HELLO lacks attach flags the bus requires');

  // One read of the caller's status at HELLO serves its credentials and its metadata.
  const status = procStatus(h.tid);
  if (!status) fail(errno.ESRCH, `caller ${h.tid} vanished`);
  const task = new TaskCreds(h.tid, status);
  // connections on a custom endpoint share its anonymous user (kdbus_ep_new)
  const user = ep.user ?? bus.domain.users.get(task.uid);
  bus.domain.users.chargeConnection(user);
  try {
    const backing = h.poolSetup(Number(poolSize));
    if (typeof backing === 'number') fail(-backing, 'pool setup failed');
    const pool = new Pool(Number(poolSize), backing);
    // privileged processes can impersonate somebody else
    const fakedMeta = creds !== null || pids !== null || seclabel !== null;
    const meta = fakedMeta ? ProcMeta.fake(creds, pids, seclabel, h.tid) : ProcMeta.collect(h.tid, PROC_ATTACH, status);
    const conn = new Connection({ bus, ep, id: bus.nextConnId(), flags, attachFlagsSend, attachFlagsRecv, pool, user,
      privileged, description, meta, fakedMeta, tid: h.tid, creds: policyCreds(task), fds: h.fds, wake: h.wake });
    ep.connections.add(conn);

    buf.writeBigUInt64LE(bus.flags, CMD_HELLO.bus_flags);
    buf.writeBigUInt64LE(conn.id, CMD_HELLO.id);
    bus.id128.copy(buf, CMD_HELLO.id128);
    const list = helloItems(bus.bloom.size, bus.bloom.nHash);
    buf.writeBigUInt64LE(BigInt(pool.handOver(list)), CMD_HELLO.offset);
    buf.writeBigUInt64LE(BigInt(list.length), CMD_HELLO.items_size);
    return conn;
  } catch (e) {
    bus.domain.users.uncharge(user, 'connections');
    throw e;
  }
}

/**
 * The credentials a connection keeps from HELLO: the fields policy reads,
 * copied, not the status text they were parsed from (a connection lives long).
 */
function policyCreds(c: TaskCreds): PolicyCreds {
  return { uid: c.uid, euid: c.euid, fsuid: c.fsuid, gid: c.gid, egid: c.egid, fsgid: c.fsgid, groups: c.groups };
}

/**
 * The credentials of a connection's current caller, read from /proc at the
 * first field looked at, once per ioctl: the read costs more than a whole
 * message's routing, and most ioctls decide without it.
 */
class CallerCreds implements PolicyCreds {
  private tid = 0;
  private read: PolicyCreds | null = null;
  constructor(private readonly conn: { readonly creds: PolicyCreds }) {}

  begin(tid: number): void {
    this.tid = tid;
    this.read = null;
  }
  private get c(): PolicyCreds {
    this.read ??= (this.tid && taskCreds(this.tid)) || this.conn.creds;
    return this.read;
  }
  get uid(): number { return this.c.uid; }
  get euid(): number { return this.c.euid; }
  get fsuid(): number { return this.c.fsuid; }
  get gid(): number { return this.c.gid; }
  get egid(): number { return this.c.egid; }
  get fsgid(): number { return this.c.fsgid; }
  get groups(): number[] { return this.c.groups; }
}
