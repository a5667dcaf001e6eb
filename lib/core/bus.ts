// A bus (ipc/kdbus/bus.c): its connections, names, bloom parameters and
// attach-flag requirements, message routing (unicast, broadcast, monitors)
// and kernel notifications (notify.c), which are queued while an operation
// runs and delivered when it ends, as kdbus_notify_flush does.
import { randomBytes } from 'node:crypto';
import { CMD_MAKE, MAKE_ACCESS_GROUP, MAKE_ACCESS_WORLD, LIMITS } from '../abi/kdbus.js';
import { ATTACH, INFO, ITEM, KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, MSG_EXPECT_REPLY,
  MSG_NO_AUTO_START, MSG_SIGNAL, PAYLOAD_KERNEL, SIZEOF_NOTIFY_ID_CHANGE,
  SIZEOF_NOTIFY_NAME_CHANGE, ITEM_HEADER_SIZE, align8 } from '../abi/kdbus.js';
import { errno, fail, KdbusError } from './errors.js';
import { Kmsg, stagePayload, type FdAccess, type QueueEntry } from './message.js';
import { NameRegistry } from './names.js';
import { PROC_ATTACH, ProcMeta, exportMeta, timestampNow } from './metadata.js';
import { replyFind, replyLink, replyNew, replyUnlink, replyWakeSync, type Reply, type SyncWaiter } from './reply.js';
import { callerCreds, sanitizeAttachFlags, type Connection } from './connection.js';
import { PolicyDb, policyOwnName, policySeeName, policySeeNotification, policyTalk } from './policy.js';
import type { Domain } from './domain.js';
import { Endpoint, endpointMode } from './endpoint.js';
import { ROOT_INO } from './domain.js';
import type { User } from './user.js';
import type { Pool } from './pool.js';
import { log, logError } from '../log.js';
import { items, itemSysname, sysnameBytes, sysnameShown } from '../abi/items.js';

function uuid4(): Buffer {
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}

export interface BloomParameter { size: bigint; nHash: bigint }

/** A BUS_MAKE, decoded and checked by the edge. */
export interface BusMake {
  domain: Domain;
  tid: number;
  /** the kernel's copy of struct kdbus_cmd_make */
  cmd: Buffer;
  itemsSize: number;
  fds: FdAccess;
  /** puts the bus's default endpoint file into the tree */
  makeEndpointFile(bus: Bus, ep: Endpoint): void;
}

/** kdbus_bus_new + kdbus_bus_activate: the bus, its directory and its endpoint "bus". */
export function busNew(b: BusMake): Bus {
  const { domain, cmd: buf } = b;
  let name: string | null = null;
  let bloom: BloomParameter | null = null;
  let attachOwner: bigint | null = null;
  let attachRecv: bigint | null = null;
  for (const it of items(buf, CMD_MAKE.items, b.itemsSize)) {
    switch (it.type) {
      case ITEM.MAKE_NAME:
        if (name !== null) fail(errno.EEXIST, 'MAKE_NAME repeated');
        name = itemSysname(buf, it);
        break;
      case ITEM.BLOOM_PARAMETER:
        if (bloom) fail(errno.EEXIST, 'BLOOM_PARAMETER repeated');
        bloom = { size: buf.readBigUInt64LE(it.data), nHash: buf.readBigUInt64LE(it.data + 8) };
        break;
      case ITEM.ATTACH_FLAGS_SEND:
        if (attachOwner !== null) fail(errno.EEXIST, 'ATTACH_FLAGS_SEND repeated');
        attachOwner = buf.readBigUInt64LE(it.data);
        break;
      case ITEM.ATTACH_FLAGS_RECV:
        if (attachRecv !== null) fail(errno.EEXIST, 'ATTACH_FLAGS_RECV repeated');
        attachRecv = buf.readBigUInt64LE(it.data);
        break;
      default:
        fail(errno.EINVAL, `item ${it.type} not allowed in BUS_MAKE`);
    }
  }
  if (name === null || !bloom) fail(errno.EBADMSG, 'BUS_MAKE needs MAKE_NAME and BLOOM_PARAMETER');
  if (bloom.size < 8n || bloom.size > BigInt(LIMITS.BUS_BLOOM_MAX_SIZE)) fail(errno.EINVAL, 'bloom size');
  if (bloom.size % 8n !== 0n) fail(errno.EINVAL, 'bloom size not 8-aligned');
  if (bloom.nHash < 1n) fail(errno.EINVAL, 'bloom n_hash');
  const req = sanitizeAttachFlags(attachRecv ?? 0n);
  const owner = sanitizeAttachFlags(attachOwner ?? 0n);
  const creds = callerCreds(b.tid);
  if (!name.startsWith(`${creds.euid}-`)) {
    fail(errno.EINVAL, `bus name "${sysnameShown(name)}" lacks the "${creds.euid}-" prefix`);
  }
  if (domain.buses.has(name)) fail(errno.EEXIST, `bus ${sysnameShown(name)} exists`);

  const user = domain.users.get(creds.uid);
  domain.users.chargeBus(user);
  const flags = buf.readBigUInt64LE(CMD_MAKE.flags);
  const meta = ProcMeta.collect(b.tid, PROC_ATTACH);
  const bus = new Bus(domain, name, domain.nextBusId(), flags, bloom, req, owner,
    creds.euid, creds.egid, user, meta, b.fds);
  const group = (flags & MAKE_ACCESS_GROUP) !== 0n;
  const world = (flags & MAKE_ACCESS_WORLD) !== 0n;
  const dirMode = 0o500 | (group || world ? 0o050 : 0) | (world ? 0o005 : 0);
  bus.ino = domain.tree.addDir(ROOT_INO, name, dirMode, bus.uid, bus.gid);
  domain.buses.set(name, bus);
  const ep = new Endpoint(bus, 'bus', bus.uid, bus.gid, endpointMode(group, world), false);
  bus.endpoints.set('bus', ep);
  b.makeEndpointFile(bus, ep);
  log('bus', `bus ${sysnameShown(name)} created by uid ${creds.euid} (tid ${b.tid})`);
  return bus;
}

/** The end of a bus its control file made: everything on it goes, then the bus itself. */
export function busRelease(bus: Bus): void {
  bus.deactivate();
  bus.domain.buses.delete(bus.name);
  bus.domain.tree.remove(bus.ino);
  bus.domain.users.uncharge(bus.creator, 'buses');
}

export class Bus {
  /** generate_random_uuid: a version 4 UUID */
  readonly id128 = uuid4();
  readonly connections = new Map<bigint, Connection>();
  readonly monitors = new Set<Connection>();
  readonly endpoints = new Map<string, Endpoint>();
  readonly names: NameRegistry;
  /** policy from policy holders and activators */
  readonly policy = new PolicyDb();
  private connSeq = 0n;
  private readonly pendingNotifications: Kmsg[] = [];
  active = true;
  /** the directory node in the tree */
  ino = 0;

  constructor(readonly domain: Domain,
              /** MAKE_NAME, a byte string (itemSysname) */ readonly name: string, readonly id: bigint,
              readonly flags: bigint, readonly bloom: BloomParameter,
              /** ATTACH_FLAGS_RECV of BUS_MAKE: what every sender must attach */
              readonly attachFlagsReq: bigint,
              /** ATTACH_FLAGS_SEND of BUS_MAKE: what the creator shares in BUS_CREATOR_INFO */
              readonly attachFlagsOwner: bigint,
              readonly uid: number, readonly gid: number, readonly creator: User,
              readonly creatorMeta: ProcMeta, readonly fds: FdAccess) {
    this.names = new NameRegistry({
      nameChanged: (type, oldId, oldFlags, newId, newFlags, name) =>
        this.notifyNameChange(type, oldId, oldFlags, newId, newFlags, name),
      // the registry only ever holds this bus's connections
      moveMessages: (from, to, nameId) => this.moveMessages(from as Connection, to as Connection, nameId),
      // NAME_ACQUIRE and NAME_LIST decide with the caller's current credentials
      canOwn: (conn, name) => policyOwnName(conn as Connection, name, (conn as Connection).currentCreds()),
      canSee: (viewer, name) => policySeeName(viewer as Connection, name, (viewer as Connection).currentCreds()),
      seesAll: (viewer) => !(viewer as Connection).ep.hasPolicy,
    });
  }

  get bloomWords(): number {
    return Number(this.bloom.size) / 8;
  }

  nextConnId(): bigint {
    return ++this.connSeq;
  }

  /** Kernel notifications announced and not yet delivered (for the census). */
  get notificationsPending(): number {
    return this.pendingNotifications.length;
  }

  /** The connection with a wire id, if any. */
  connection(id: bigint): Connection | undefined {
    return this.connections.get(id);
  }

  /** Links a new connection in and announces it (kdbus_conn_connect). */
  connect(conn: Connection): void {
    this.connections.set(conn.id, conn);
    this.names.changed();
    if (conn.isMonitor) this.monitors.add(conn);
    else this.notifyIdChange(ITEM.ID_ADD, conn.id, conn.flags);
  }

  /**
   * kdbus_conn_disconnect: unlink, drop names, tell waiters their replies are
   * dead, free the queue, announce ID_REMOVE. The caller flushes notifications.
   */
  disconnect(conn: Connection): void {
    if (conn.state === 'dead') return;
    conn.state = 'dead';
    conn.changed();
    // the one place a connection stops counting against its user (HELLO charged it)
    this.domain.users.uncharge(conn.user, 'connections');
    conn.chargeMatches();
    this.policy.removeOwner(conn);
    this.connections.delete(conn.id);
    this.names.changed();
    this.monitors.delete(conn);
    conn.ep.connections.delete(conn);
    this.names.releaseAll(conn);
    for (const e of [...conn.queue.entries()]) {
      if (e.reply) this.notifyReply(ITEM.REPLY_DEAD, e.kmsg.srcId, e.kmsg.cookie);
      conn.dequeue(e, true);
    }
    // our own waits end: a parked synchronous call learns its connection is gone
    for (const r of [...conn.replies]) {
      if (r.syncWaiter) replyWakeSync(r, errno.ECONNRESET, null);
      else replyUnlink(r);
    }
    // whoever waits for a reply from us learns it will not come
    for (const c of this.connections.values()) {
      if (!c.replies.size) continue;
      for (const r of [...c.replies]) {
        if (r.replier !== conn) continue;
        if (r.syncWaiter) {
          replyWakeSync(r, errno.EPIPE, null);
          continue;
        }
        replyUnlink(r);
        this.notifyReply(ITEM.REPLY_DEAD, c.id, r.cookie);
      }
    }
    if (!conn.isMonitor) this.notifyIdChange(ITEM.ID_REMOVE, conn.id, conn.flags);
    conn.wake();
  }

  private stage = (m: Kmsg, pool: Pool): number => stagePayload(m, pool, this.fds);

  /**
   * kdbus_cmd_msg_send. For a synchronous call (sync set), returns the
   * reply the caller then waits on, linked to `sync`.
   */
  send(src: Connection, m: Kmsg, sync: SyncWaiter | null = null): Reply | null {
    m.seq = this.domain.nextMsgSeq();
    if (m.dstId === KDBUS_DST_ID_BROADCAST) {
      this.broadcast(src, m);
      return null;
    }
    let dst: Connection;
    if (m.dstName !== null) {
      const entry = this.names.lookup(m.dstName);
      if (!entry) fail(errno.ESRCH, `no owner for ${sysnameShown(m.dstName)}`);
      if (m.dstId !== KDBUS_DST_ID_NAME && m.dstId !== entry.owner.id) {
        fail(errno.EREMCHG, `${sysnameShown(m.dstName)} is not owned by ${m.dstId}`);
      }
      dst = entry.owner as Connection;
      m.dstNameId = entry.nameId;
      if ((m.flags & MSG_NO_AUTO_START) && dst.isActivator) fail(errno.EADDRNOTAVAIL, 'no auto-start');
    } else {
      const found = this.connection(m.dstId);
      if (!found || !found.isOrdinary) fail(errno.ENXIO, `no connection ${m.dstId}`);
      dst = found;
    }

    this.collectMeta(src, dst, m);
    let replyWait: Reply | null = null;
    let replyWake: Reply | null = null;
    if (m.flags & MSG_EXPECT_REPLY) {
      this.checkTalk(src, dst, true);
      replyWait = replyNew(dst, src, m.cookie, m.timeoutOrReply, m.dstNameId);
      replyWait.syncWaiter = sync;
    } else if (m.flags & MSG_SIGNAL) {
      if (!dst.matches.matches(this.userSubject(src, m), this.bloomWords)) fail(errno.EPERM, 'receiver has no match for this signal');
      // a signal needs the receiver to be allowed to talk to the sender
      this.checkTalk(dst, src, false);
    } else if (m.timeoutOrReply > 0n) {
      // a reply: only to a connection that waits for it from us
      const r = replyFind(src, dst, m.timeoutOrReply);
      if (!r) fail(errno.EPERM, `no pending reply with cookie ${m.timeoutOrReply}`);
      if (r.syncWaiter) replyWake = r;
      else replyUnlink(r);
    } else {
      this.checkTalk(src, dst, true);
    }

    this.eavesdrop(src, m);
    if (replyWake) {
      this.syncAttach(dst, m, replyWake);
      return null;
    }
    dst.enqueue(m, src, replyWait, this.stage);
    if (replyWait) replyLink(replyWait, (r) => this.replyTimedOut(r));
    return replyWait;
  }

  /**
   * kdbus_conn_entry_sync_attach: a reply to a parked synchronous call goes
   * straight to the caller. The replier learns a failure; the caller gets
   * EREMOTEIO for what the replier sees as ECOMM.
   */
  private syncAttach(waiter: Connection, m: Kmsg, r: Reply): void {
    let err = 0;
    let entry: QueueEntry | null = null;
    try {
      entry = waiter.makeEntry(m, this.stage);
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      err = e.errno;
    }
    replyWakeSync(r, err === errno.ECOMM ? errno.EREMOTEIO : err, entry);
    if (err) fail(err, 'the synchronous caller cannot take the reply');
  }

  /** kdbus_bus_broadcast: every ordinary connection whose matches accept it. */
  private broadcast(src: Connection | null, m: Kmsg): void {
    this.eavesdrop(src, m);
    const subject = src ? this.userSubject(src, m) : this.notifySubject(m);
    const bloomWords = this.bloomWords;
    for (const dst of this.connections.values()) {
      // most connections watch no notification: a connection's close sends hundreds past all of them
      if (!src && !dst.matches.watchesNotifications) continue;
      if (dst.id === m.srcId || !dst.isOrdinary) continue;
      if (!dst.matches.matches(subject, bloomWords)) continue;
      if (src) {
        if (!policyTalk(dst, src)) continue;
        this.collectMeta(src, dst, m);
      } else if (!policySeeNotification(dst, m.notify!)) {
        continue;
      }
      this.deliverOrCountLost(dst, m, src);
    }
  }

  /** Monitors see every message (kdbus_bus_eavesdrop). */
  private eavesdrop(src: Connection | null, m: Kmsg): void {
    for (const mon of this.monitors) {
      if (src) this.collectMeta(src, mon, m);
      this.deliverOrCountLost(mon, m, src);
    }
  }

  private deliverOrCountLost(dst: Connection, m: Kmsg, src: Connection | null): void {
    try {
      dst.enqueue(m, src, null, this.stage);
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      dst.lostCount++;
    }
  }

  /**
   * Sender metadata for this receiver: proc metadata read now, names and
   * timestamp at send. A sender that faked its credentials at HELLO sends no
   * process metadata at all (kdbus collects it only if !faked_meta); its
   * faked values show in CONN_INFO only.
   */
  private collectMeta(src: Connection, dst: Connection, m: Kmsg): void {
    const flags = src.attachFlagsSend & dst.attachFlagsRecv;
    const procFlags = flags & PROC_ATTACH;
    if (!src.fakedMeta && procFlags) {
      if (!m.procMeta) m.procMeta = ProcMeta.collect(m.senderTid, procFlags);
      else m.procMeta.collectMore(m.senderTid, procFlags);
    }
    const want = flags & (ATTACH.TIMESTAMP | ATTACH.NAMES | ATTACH.CONN_DESCRIPTION);
    const have = m.connMeta ? (m.connMeta.timestamp ? ATTACH.TIMESTAMP : 0n) |
      (m.connMeta.names ? ATTACH.NAMES : 0n) | (m.connMeta.description !== undefined ? ATTACH.CONN_DESCRIPTION : 0n) : 0n;
    if (want & ~have) m.connMeta = { ...m.connMeta, ...src.connMeta(m.seq, want & ~have) };
  }

  private userSubject(src: Connection, m: Kmsg) {
    return { kind: 'user' as const, srcId: src.id, bloomGeneration: m.bloomGeneration, bloom: m.bloom,
      srcHasName: (name: string) => this.names.lookup(name)?.owner.id === src.id };
  }

  private notifySubject(m: Kmsg) {
    return { kind: 'notify' as const, ...m.notify! };
  }

  /** kdbus_conn_check_access: with the sender's current credentials, or the HELLO ones. */
  private checkTalk(src: Connection, dst: Connection, current: boolean): void {
    if (!policyTalk(src, dst, current ? src.currentCreds() : src.creds)) {
      fail(errno.EPERM, `${src.id} may not talk to ${dst.id}`);
    }
  }

  private replyTimedOut(r: Reply): void {
    this.notifyReply(ITEM.REPLY_TIMEOUT, r.waiter.id, r.cookie);
    this.flushNotifications();
  }

  /** kdbus_conn_move_messages: an activator's queued messages (for one name entry, or all) go to the new owner. */
  private moveMessages(from: Connection, to: Connection, nameId: bigint): void {
    for (const e of [...from.queue.entries()]) {
      if (nameId > 0n && e.kmsg.dstNameId !== nameId) continue;
      from.dequeue(e, false, true);
      try {
        // a connection that refused fds never gets a message with fds
        if (e.kmsg.fds.length && !to.acceptsFds) fail(errno.ECOMM, `${to.id} does not accept fds`);
        to.adopt(e);
      } catch (err) {
        if (!(err instanceof KdbusError)) throw err;
        to.lostCount++;
      } finally {
        from.settleQueued(e);
        if (e.payloadOff >= 0) from.pool.release(e.payloadOff);
        e.kmsg.release(this.fds);
      }
    }
    for (const c of this.connections.values()) {
      if (c === from || c === to) continue;
      for (const r of c.replies) if (r.replier === from && (nameId === 0n || r.nameId === nameId)) r.replier = to;
    }
  }

  // --- kernel notifications (notify.c) ---

  private kernelMsg(dstId: bigint, itemType: number, payload: Buffer): Kmsg {
    const m = new Kmsg();
    m.dstId = dstId;
    m.srcId = 0n;
    m.payloadType = PAYLOAD_KERNEL;
    const item = Buffer.alloc(align8(ITEM_HEADER_SIZE + payload.length));
    item.writeBigUInt64LE(BigInt(item.length), 0);
    item.writeBigUInt64LE(BigInt(itemType), 8);
    payload.copy(item, ITEM_HEADER_SIZE);
    m.notifyItems = item;
    return m;
  }

  notifyIdChange(type: number, id: bigint, flags: bigint): void {
    const p = Buffer.alloc(SIZEOF_NOTIFY_ID_CHANGE);
    p.writeBigUInt64LE(id, 0);
    p.writeBigUInt64LE(flags, 8);
    const m = this.kernelMsg(KDBUS_DST_ID_BROADCAST, type, p);
    m.notify = { type, oldId: type === ITEM.ID_REMOVE ? id : 0n, newId: type === ITEM.ID_ADD ? id : 0n, name: null };
    this.pendingNotifications.push(m);
  }

  notifyNameChange(type: number, oldId: bigint, oldFlags: bigint, newId: bigint, newFlags: bigint, name: string): void {
    const nameBytes = Buffer.concat([sysnameBytes(name), Buffer.alloc(1)]);
    const p = Buffer.alloc(SIZEOF_NOTIFY_NAME_CHANGE + nameBytes.length);
    p.writeBigUInt64LE(oldId, 0);
    p.writeBigUInt64LE(oldFlags, 8);
    p.writeBigUInt64LE(newId, 16);
    p.writeBigUInt64LE(newFlags, 24);
    nameBytes.copy(p, SIZEOF_NOTIFY_NAME_CHANGE);
    const m = this.kernelMsg(KDBUS_DST_ID_BROADCAST, type, p);
    m.notify = { type, oldId, newId, name };
    this.pendingNotifications.push(m);
  }

  notifyReply(type: number, dstId: bigint, cookie: bigint): void {
    const m = this.kernelMsg(dstId, type, Buffer.alloc(0));
    m.timeoutOrReply = cookie;
    m.notify = { type, oldId: 0n, newId: 0n, name: null };
    this.pendingNotifications.push(m);
  }

  /** kdbus_notify_flush: deliver what the last operation announced, in order. */
  flushNotifications(): void {
    // by index: a close announces hundreds, and shift() would move the rest each time
    const pending = this.pendingNotifications;
    for (let i = 0; i < pending.length; i++) {
      const m = pending[i]!;
      m.seq = this.domain.nextMsgSeq();
      m.connMeta = { timestamp: timestampNow(m.seq) };
      if (m.dstId !== KDBUS_DST_ID_BROADCAST) {
        const dst = this.connection(m.dstId);
        if (dst) {
          this.eavesdrop(null, m);
          this.deliverOrCountLost(dst, m, null);
        }
      } else {
        this.broadcast(null, m);
      }
    }
    pending.length = 0;
  }

  /** Tears the bus down when its creator's control handle closes. */
  deactivate(): void {
    if (!this.active) return;
    this.active = false;
    for (const ep of [...this.endpoints.values()]) ep.deactivate();
    this.flushNotifications();
    // with every endpoint gone, nothing of the bus may be left behind
    const left = [this.connections.size && `${this.connections.size} connections`,
      this.names.size() && `${this.names.size()} names`, this.policy.size && `${this.policy.size} policy entries`,
      this.pendingNotifications.length && `${this.pendingNotifications.length} notifications`].filter(Boolean);
    if (left.length) logError('bus', `bus ${sysnameShown(this.name)} torn down with ${left.join(', ')} left: a kdbusfs bug`);
    log('bus', `bus ${sysnameShown(this.name)} removed`);
  }

  /**
   * kdbus_cmd_bus_creator_info: the bus id and flags, its name, and the
   * creator's metadata as far as the creator agreed to share it.
   */
  creatorInfo(requested: bigint, viewerTid: number): Buffer {
    const name = sysnameBytes(this.name);
    const nameItem = Buffer.alloc(align8(ITEM_HEADER_SIZE + name.length + 1));
    nameItem.writeBigUInt64LE(BigInt(ITEM_HEADER_SIZE + name.length + 1), 0);
    nameItem.writeBigUInt64LE(BigInt(ITEM.MAKE_NAME), 8);
    name.copy(nameItem, ITEM_HEADER_SIZE);
    const meta = exportMeta(this.creatorMeta, null, requested & this.attachFlagsOwner, { tid: viewerTid });
    const head = Buffer.alloc(INFO.items);
    head.writeBigUInt64LE(BigInt(INFO.items + nameItem.length + meta.length), INFO.size);
    head.writeBigUInt64LE(this.id, INFO.id);
    head.writeBigUInt64LE(this.flags, INFO.flags);
    return Buffer.concat([head, nameItem, meta]);
  }

  /** A receiver dropped a message unread (RECV with DROP): its sender learns the reply will not come. */
  replyDropped(r: Reply, e: QueueEntry): void {
    if (r.syncWaiter) {
      replyWakeSync(r, errno.EPIPE, null);
      return;
    }
    replyUnlink(r);
    this.notifyReply(ITEM.REPLY_DEAD, e.kmsg.srcId, e.kmsg.cookie);
  }
}

