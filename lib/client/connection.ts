// A kdbus connection: HELLO on a bus endpoint, the pool mapped read-only,
// commands as synchronous (never waiting) ioctls, and receiving driven by
// poll readiness on Node's event loop.
//
// Events (EventEmitter):
//   'message'      (msg: Message)       a message that is not the reply to one of our call()s
//   'notification' (n: Notification, msg: Message)  a kernel notification (already freed)
//   'dropped'      (count: number)      messages the kernel dropped for us (RECV's EOVERFLOW)
//   'readable'     ()                   data queued, when autoReceive is off: emitted once, then
//                                       not again until the caller's next recv() or resume()
//   'hangup'       (cause?: Error)      POLLHUP/POLLERR or a failing RECV: the connection or bus is gone;
//                                       pending calls reject with ECONNRESET; close() is still the caller's
//   'close'        ()                   close() ran
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import {
  ATTACH_ALL, ATTACH_ANY, CMD, CMD_FREE, CMD_HELLO, CMD_INFO, CMD_MATCH, CMD_NAME, CMD_NAME_LIST, CMD_RECV, CMD_SEND, CMD_UPDATE,
  HELLO_ACCEPT_FD, HELLO_ACTIVATOR, HELLO_MONITOR, HELLO_POLICY_HOLDER, ITEM, KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME,
  MATCH_REPLACE, MSG, MSG_EXPECT_REPLY, MSG_NO_AUTO_START, MSG_SIGNAL, NAME_ALLOW_REPLACEMENT, NAME_IN_QUEUE,
  NAME_LIST_ACTIVATORS, NAME_LIST_NAMES, NAME_LIST_QUEUED, NAME_LIST_UNIQUE, NAME_QUEUE, NAME_REPLACE_EXISTING,
  MEMFD, PAYLOAD_DBUS, RECV_DROP, RECV_PEEK, RECV_RETURN_INCOMPLETE_FDS, RECV_USE_PRIORITY, SIZEOF_BLOOM_FILTER, SIZEOF_MEMFD, ITEM_LIST_HEADER,
} from '../abi/kdbus.js';
import { CommandBuilder, type U64 } from './command.js';
import { KdbusClientError, check, commandError, errnoName } from './errors.js';
import { bloomParameter, decodeInfo, decodeNameList, type BloomParameter, type Info, type NameListEntry } from './info.js';
import { addMatchRule, type MatchRule } from './match-items.js';
import { decodeMessage, type Message, type Notification } from './message.js';
import { rawItems, type Creds, type Pids } from './metadata.js';
import { clientNative as nat, POLL_DISCONNECT, POLL_READABLE, type PollHandle } from './native.js';
import { addGrants, addPolicy, type Grant, type PolicyEntry } from './policy.js';

export const DEFAULT_ROOT = '/sys/fs/kdbus';
export const DEFAULT_POOL_SIZE = 16 << 20;
/** The default call timeout, D-Bus's 25 s. */
export const DEFAULT_CALL_TIMEOUT_MS = 25_000;
/**
 * Messages taken per readiness event in a burst, and at a hangup (no
 * readiness follows; what is queued is taken before 'hangup'). A readiness
 * event after the loop slept takes one message: libuv's poll is
 * level-triggered, so after each callback it polls the fd again (a
 * FUSE_POLL) before it sleeps, and that poll says whether more is queued; a
 * RECV finding the queue empty would be one more request on every wakeup.
 * When that poll finds the fd ready at once (the loop did not sleep), a burst
 * is queued: it is taken until the queue is empty, a RECV per message
 * instead of a FUSE_POLL and a RECV.
 */
const RECV_BATCH = 64;

export type ConnectionKind = 'ordinary' | 'activator' | 'policy-holder' | 'monitor';

export interface ConnectOptions {
  /** where bus names (not paths) are looked up: ROOT/NAME/bus (default /sys/fs/kdbus) */
  root?: string;
  /** pool size in bytes, a multiple of the page size (default 16 MiB) */
  poolSize?: number;
  /** HELLO_ACCEPT_FD (default true) */
  acceptFds?: boolean;
  /** metadata this connection lets the kernel attach to what it sends (default: any) */
  attachSend?: bigint;
  /** metadata this connection wants on what it receives (default: none) */
  attachRecv?: bigint;
  /** CONN_DESCRIPTION */
  description?: string;
  kind?: ConnectionKind;
  /** activator / policy holder: the name (HELLO's NAME item) */
  name?: string;
  /** policy holder: who may see, talk to or own `name` */
  grants?: Grant[];
  /** ordinary connections: names acquired right after HELLO */
  names?: Array<string | { name: string; flags?: NameFlags }>;
  /** 'copy' (default): payloads copied, slices freed at once; 'view': payloads are pool views until msg.free() */
  receive?: 'copy' | 'view';
  /** drain the queue on readiness and emit 'message' (default true); off: 'readable', then recv() */
  autoReceive?: boolean;
  /**
   * Privileged: HELLO's CREDS, PIDS and SECLABEL items, the identity the bus
   * gives this connection instead of the opener's (a proxy speaking for its client).
   */
  impersonate?: { creds?: Creds; pids?: Pids; seclabel?: string };
}

export interface NameFlags { replaceExisting?: boolean; allowReplacement?: boolean; queue?: boolean }

export interface SendOptions {
  /** destination connection id */
  dst?: U64;
  /** destination well-known name (with dst as well: EREMCHG unless dst owns it) */
  name?: string;
  /** to every connection whose matches accept it (dst and name must be absent) */
  broadcast?: boolean;
  payload?: Buffer | Buffer[];
  /** sealed memfds (see sealedMemfd), sent as PAYLOAD_MEMFD */
  memfds?: Array<{ fd: number; size: number; start?: number }>;
  /** fds passed with KDBUS_ITEM_FDS */
  fds?: number[];
  /** a signal's bloom filter: exactly the bus's bloom size (Connection.bloom); broadcasts need one */
  bloom?: Buffer;
  bloomGeneration?: U64;
  /** default: the next of this connection's cookies */
  cookie?: U64;
  cookieReply?: U64;
  expectReply?: boolean;
  /** with expectReply: the reply's deadline from now (default 25 s) */
  timeoutMs?: number;
  noAutoStart?: boolean;
  /** MSG_SIGNAL; default: set for broadcasts and whenever a bloom filter is given (kdbus requires both together) */
  signal?: boolean;
  priority?: U64;
  payloadType?: bigint;
}

export interface RecvOptions { peek?: boolean; drop?: boolean; priority?: U64 }

export interface NameListFlags { unique?: boolean; names?: boolean; activators?: boolean; queued?: boolean }

interface PendingCall { resolve(m: Message): void; reject(e: Error): void }

/** HELLO's CREDS (8 u32), PIDS (3 u64) and SECLABEL items. */
function addImpersonation(cmd: CommandBuilder, who: NonNullable<ConnectOptions['impersonate']>): void {
  if (who.creds) {
    const c = who.creds;
    const d = Buffer.alloc(32);
    [c.uid, c.euid, c.suid, c.fsuid, c.gid, c.egid, c.sgid, c.fsgid].forEach((v, i) => d.writeUInt32LE(v, i * 4));
    cmd.bytes(ITEM.CREDS, d);
  }
  if (who.pids) cmd.u64s(ITEM.PIDS, [who.pids.pid, who.pids.tid, who.pids.ppid]);
  if (who.seclabel !== undefined) cmd.string(ITEM.SECLABEL, who.seclabel);
}

/** ROOT/NAME/bus for a bus name, the path itself for anything with a slash. */
export function endpointPath(bus: string, root = DEFAULT_ROOT): string {
  return bus.includes('/') ? bus : join(root, bus, 'bus');
}

export class Connection extends EventEmitter {
  /** this connection's unique id */
  readonly id: bigint;
  readonly bloom: BloomParameter;
  /** the bus's 128-bit id */
  readonly busId: Buffer;
  readonly busFlags: bigint;
  /** the send attach flags the bus requires (HELLO's answer) */
  readonly requiredAttachSend: bigint;
  readonly kind: ConnectionKind;
  private readonly pool: Buffer;
  private watch: PollHandle | null = null;
  /** autoReceive off: the watch's events are on (off between a 'readable' left unanswered and the next recv()) */
  private watching = false;
  /** autoReceive off: recv() or resume() ran since the last 'readable' was emitted */
  private answered = false;
  private hungUp = false;
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, PendingCall>();
  private closed = false;
  /** a SEND's message and payload Buffers while the kernel reads them (see send) */
  private inFlight: Buffer[] | null = null;
  private readonly copy: boolean;
  /** autoReceive off: readiness is told once ('readable') and watched again at the next recv() or resume() */
  private readonly manual: boolean;

  private constructor(readonly path: string, readonly fd: number, hello: Buffer, pool: Buffer, opts: ConnectOptions) {
    super();
    this.pool = pool;
    this.kind = opts.kind ?? 'ordinary';
    this.copy = (opts.receive ?? 'copy') === 'copy';
    this.manual = !(opts.autoReceive ?? true);
    this.id = hello.readBigUInt64LE(CMD_HELLO.id);
    this.busFlags = hello.readBigUInt64LE(CMD_HELLO.bus_flags);
    this.requiredAttachSend = hello.readBigUInt64LE(CMD_HELLO.attach_flags_send) & ~(1n << 63n);
    this.busId = Buffer.from(hello.subarray(CMD_HELLO.id128, CMD_HELLO.id128 + 16));
    // HELLO's answer in the pool: a kdbus_item_list holding BLOOM_PARAMETER
    const off = Number(hello.readBigUInt64LE(CMD_HELLO.offset));
    const size = Number(hello.readBigUInt64LE(CMD_HELLO.items_size));
    let bloom: BloomParameter | undefined;
    for (const it of rawItems(pool, off + ITEM_LIST_HEADER, off + size)) if (it.type === ITEM.BLOOM_PARAMETER) bloom = bloomParameter(it.data);
    if (!bloom) throw new KdbusClientError(71 /* EPROTO */, 'HELLO', 'no BLOOM_PARAMETER in the answer');
    this.bloom = bloom;
    // a policy holder neither receives nor frees (EOPNOTSUPP): its pool stays as HELLO left it
    if (this.kind === 'policy-holder') return;
    this.free(off);
    this.startWatch();
  }

  /** Opens bus (a path, or a bus name under opts.root), says HELLO, maps the pool. */
  static open(bus: string, opts: ConnectOptions = {}): Connection {
    const path = endpointPath(bus, opts.root);
    const fd = nat.open(path);
    if (fd < 0) throw new KdbusClientError(-fd, 'open', path);
    try {
      return Connection.hello(path, fd, opts);
    } catch (e) {
      nat.close(fd);
      throw e;
    }
  }

  private static hello(path: string, fd: number, opts: ConnectOptions): Connection {
    const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE;
    const kind = opts.kind ?? 'ordinary';
    let flags = (opts.acceptFds ?? true) ? HELLO_ACCEPT_FD : 0n;
    flags |= { ordinary: 0n, activator: HELLO_ACTIVATOR, 'policy-holder': HELLO_POLICY_HOLDER, monitor: HELLO_MONITOR }[kind];
    const cmd = new CommandBuilder(CMD_HELLO.items);
    if (opts.description !== undefined) cmd.string(ITEM.CONN_DESCRIPTION, opts.description);
    if (opts.name !== undefined) cmd.string(ITEM.NAME, opts.name);
    if (opts.grants) addGrants(cmd, opts.grants);
    if (opts.impersonate) addImpersonation(cmd, opts.impersonate);
    const buf = cmd.finish({
      [CMD_HELLO.flags]: flags, [CMD_HELLO.attach_flags_send]: opts.attachSend ?? ATTACH_ANY,
      [CMD_HELLO.attach_flags_recv]: opts.attachRecv ?? 0n, [CMD_HELLO.pool_size]: poolSize,
    });
    check('HELLO', nat.ioctl(fd, CMD.HELLO, buf));
    const pool = nat.mmap(fd, poolSize);
    if (typeof pool === 'number') throw new KdbusClientError(-pool, 'mmap', 'mapping the pool');
    let conn: Connection;
    try {
      conn = new Connection(path, fd, buf, pool, opts);
    } catch (e) {
      nat.munmap(pool);
      throw e;
    }
    try {
      for (const n of opts.names ?? []) {
        if (typeof n === 'string') conn.acquireName(n);
        else conn.acquireName(n.name, n.flags);
      }
    } catch (e) {
      conn.close();
      throw e;
    }
    return conn;
  }

  private onReadable(batch: number): void {
    if (!this.manual) {
      this.drain(batch);
      return;
    }
    // A caller that receives (or resumes) in its handler keeps the watch on:
    // the loop's level-triggered poll before it sleeps says whether more is
    // queued, and the next wakeup polls once. One that does not is not told
    // again until it does (watching on would spin on the level-triggered
    // poll): the watch's events go off, the handle stays (see rewatch).
    this.answered = false;
    this.emit('readable');
    if (!this.answered && this.watch && !this.closed) {
      nat.pollActive(this.watch, false);
      this.watching = false;
    }
  }

  /**
   * autoReceive off: the caller receives again; the watch's events go back
   * on if a 'readable' left them off. The same handle, re-armed: a new one
   * would cost two polls of the fd (libuv's check at uv_poll_init and the
   * registration), each a FUSE request on kdbusfs.
   */
  private rewatch(): void {
    this.answered = true;
    if (this.watching || !this.watch || this.closed || this.hungUp) return;
    const r = nat.pollActive(this.watch, true);
    if (r < 0) throw new KdbusClientError(-r, 'poll', 'watching the connection fd');
    this.watching = true;
  }

  private startWatch(): void {
    const w = nat.pollStart(this.fd, (status, events, slept) => {
      if (this.closed) return;
      if (status < 0 || events & POLL_DISCONNECT) {
        // drain what is still queued first: the last messages precede the hangup
        if (events & POLL_READABLE) this.onReadable(RECV_BATCH);
        this.hangup(status < 0 ? new KdbusClientError(-status, 'poll', 'watching the connection fd') : undefined);
        return;
      }
      if (events & POLL_READABLE) this.onReadable(slept ? 1 : RECV_BATCH);
    });
    if (typeof w === 'number') throw new KdbusClientError(-w, 'poll', 'watching the connection fd');
    this.watch = w;
    this.watching = true;
  }

  private stopWatch(): void {
    if (this.watch) nat.pollStop(this.watch);
    this.watch = null;
    this.watching = false;
  }

  /** The connection (or its bus) is gone: no more watching, no reply will come. Once. */
  private hangup(cause?: Error): void {
    if (this.hungUp || this.closed) return;
    this.hungUp = true;
    this.stopWatch();
    this.rejectPending(new KdbusClientError(104 /* ECONNRESET */, 'call', 'the connection was shut down'));
    this.emit('hangup', cause);
  }

  private rejectPending(e: KdbusClientError): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private ioctl(name: keyof typeof CMD, buf: Buffer): number {
    if (this.closed) throw new KdbusClientError(9 /* EBADF */, name, 'the connection is closed');
    return nat.ioctl(this.fd, CMD[name], buf);
  }

  private run(name: keyof typeof CMD, buf: Buffer): void {
    check(name, this.ioctl(name, buf));
  }

  // ---- pool ----

  /** KDBUS_CMD_FREE of the slice at offset. */
  free(offset: number): void {
    const buf = new CommandBuilder(CMD_FREE.items).finish({ [CMD_FREE.offset]: offset });
    this.run('FREE', buf);
  }

  // ---- sending ----

  /** KDBUS_CMD_SEND (never SYNC_REPLY); returns the message's cookie. */
  send(o: SendOptions): bigint {
    const cookie = o.cookie !== undefined ? BigInt(o.cookie) : this.nextCookie++;
    const cmd = new CommandBuilder(MSG.items);
    if (o.name !== undefined) cmd.string(ITEM.DST_NAME, o.name);
    const parts = o.payload === undefined ? [] : Array.isArray(o.payload) ? o.payload : [o.payload];
    for (const p of parts) if (p.length) cmd.u64s(ITEM.PAYLOAD_VEC, [p.length, nat.address(p)]);
    for (const m of o.memfds ?? []) {
      const d = Buffer.alloc(SIZEOF_MEMFD);
      d.writeBigUInt64LE(BigInt(m.start ?? 0), MEMFD.start);
      d.writeBigUInt64LE(BigInt(m.size), MEMFD.size);
      d.writeInt32LE(m.fd, MEMFD.fd);
      cmd.bytes(ITEM.PAYLOAD_MEMFD, d);
    }
    if (o.fds?.length) cmd.s32s(ITEM.FDS, o.fds);
    if (o.bloom) {
      const d = Buffer.alloc(SIZEOF_BLOOM_FILTER + o.bloom.length);
      d.writeBigUInt64LE(BigInt(o.bloomGeneration ?? 0), 0);
      o.bloom.copy(d, SIZEOF_BLOOM_FILTER);
      cmd.bytes(ITEM.BLOOM_FILTER, d);
    }
    let flags = 0n;
    if (o.expectReply) flags |= MSG_EXPECT_REPLY;
    if (o.noAutoStart) flags |= MSG_NO_AUTO_START;
    if (o.signal ?? (o.broadcast || o.bloom !== undefined)) flags |= MSG_SIGNAL;
    const dst = o.broadcast ? KDBUS_DST_ID_BROADCAST : o.dst !== undefined ? BigInt(o.dst) : KDBUS_DST_ID_NAME;
    const deadline = o.expectReply
      ? process.hrtime.bigint() + BigInt(Math.round((o.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS) * 1e6))
      : BigInt(o.cookieReply ?? 0);
    const msg = cmd.finish({
      [MSG.flags]: flags, [MSG.priority]: o.priority ?? 0, [MSG.dst_id]: dst, [MSG.src_id]: 0,
      [MSG.payload_type]: o.payloadType ?? PAYLOAD_DBUS, [MSG.cookie]: cookie, [MSG.timeout_ns]: deadline,
    });
    const send = Buffer.alloc(CMD_SEND.items);
    send.writeBigUInt64LE(BigInt(send.length), CMD_SEND.size);
    send.writeBigUInt64LE(nat.address(msg), CMD_SEND.msg_address);
    // The kernel reads the message and its vectors by address during the ioctl: they are held by
    // this object until it returns, since optimized code drops a local after its last use and a
    // collection then frees the memory (the message's size read as garbage: EINVAL).
    this.inFlight = [msg, ...parts];
    const r = this.ioctl('SEND', send);
    this.inFlight = null;
    if (r < 0) throw commandError('SEND', r);
    return cookie;
  }

  /**
   * Sends with EXPECT_REPLY and resolves with the reply (in view mode the
   * caller frees it). Rejects with ETIMEDOUT (REPLY_TIMEOUT), ECONNRESET
   * (REPLY_DEAD: the peer went away or dropped the call) or the SEND error.
   */
  call(o: Omit<SendOptions, 'expectReply' | 'broadcast'>): Promise<Message> {
    return new Promise((resolve, reject) => {
      const cookie = this.send({ ...o, expectReply: true });
      this.pending.set(cookie, { resolve, reject });
    });
  }

  /** Sends the reply to msg (to its sender, cookie_reply = its cookie). */
  reply(to: Message, o: Omit<SendOptions, 'dst' | 'name' | 'broadcast' | 'cookieReply' | 'expectReply'> = {}): bigint {
    return this.send({ ...o, dst: to.srcId, cookieReply: to.cookie });
  }

  // ---- receiving ----

  /**
   * autoReceive off: watch for readiness again without a RECV (after taking
   * one message, 'readable' comes again if more are queued: no RECV spent on
   * finding the queue empty).
   */
  resume(): void {
    if (this.manual) this.rewatch();
  }

  /**
   * KDBUS_CMD_RECV: the next message (highest priority first with
   * priority), null when none is queued (or dropped with drop). Dropped
   * broadcasts are reported as a 'dropped' event first.
   */
  recv(o: RecvOptions = {}): Message | null {
    if (this.manual) this.rewatch();
    let flags = 0n;
    if (o.peek) flags |= RECV_PEEK;
    if (o.drop) flags |= RECV_DROP;
    if (o.priority !== undefined) flags |= RECV_USE_PRIORITY;
    for (;;) {
      const buf = new CommandBuilder(CMD_RECV.items).finish({ [CMD_RECV.flags]: flags, [CMD_RECV.priority]: o.priority ?? 0 });
      const r = this.ioctl('RECV', buf);
      const dropped = Number(buf.readBigUInt64LE(CMD_RECV.dropped_msgs));
      if (r === -11 /* EAGAIN */ || r === -42 /* ENOMSG */) return null;
      if (r === -75 /* EOVERFLOW */) {
        this.emit('dropped', dropped);
        continue;
      }
      check('RECV', r);
      if (o.drop) return null;
      const offset = Number(buf.readBigUInt64LE(CMD_RECV.msg_offset));
      const incompleteFds = (buf.readBigUInt64LE(CMD_RECV.msg_return_flags) & RECV_RETURN_INCOMPLETE_FDS) !== 0n;
      return this.decode(offset, !!o.peek, incompleteFds);
    }
  }

  private decode(offset: number, peeked: boolean, incompleteFds: boolean): Message {
    let freed = peeked;
    const free = (): void => {
      if (freed || this.closed) return;
      freed = true;
      this.free(offset);
    };
    const copy = this.copy || peeked;
    const msg = decodeMessage(this.pool, offset, copy, free, { peeked, incompleteFds });
    if (copy) {
      free();
      msg.free = () => undefined;
    }
    return msg;
  }

  /** Takes up to batch queued messages and routes them: replies to calls, notifications, messages. */
  private drain(batch: number): void {
    for (let i = 0; i < batch && !this.closed; i++) {
      let msg: Message | null;
      try {
        msg = this.recv();
      } catch (e) {
        // a RECV failure the connection cannot recover from (it is shut down)
        this.hangup(e as Error);
        return;
      }
      if (!msg) return;
      this.route(msg);
    }
  }

  private route(msg: Message): void {
    const n = msg.notification;
    if (n) {
      if (!msg.peeked) msg.free();
      if (n.type === 'reply-timeout' || n.type === 'reply-dead') {
        const p = this.pending.get(n.cookie);
        if (p) {
          this.pending.delete(n.cookie);
          p.reject(n.type === 'reply-timeout'
            ? new KdbusClientError(110 /* ETIMEDOUT */, 'call', 'no reply before the timeout (REPLY_TIMEOUT)')
            : new KdbusClientError(104 /* ECONNRESET */, 'call', 'the peer went away or dropped the call (REPLY_DEAD)'));
        }
      }
      this.emit('notification', n as Notification, msg);
      return;
    }
    const p = msg.cookieReply ? this.pending.get(msg.cookieReply) : undefined;
    if (p) {
      this.pending.delete(msg.cookieReply);
      p.resolve(msg);
      return;
    }
    this.emit('message', msg);
  }

  // ---- names ----

  /** KDBUS_CMD_NAME_ACQUIRE; inQueue when QUEUE put us in line instead of owning it. */
  acquireName(name: string, f: NameFlags = {}): { flags: bigint; inQueue: boolean } {
    let flags = 0n;
    if (f.replaceExisting) flags |= NAME_REPLACE_EXISTING;
    if (f.allowReplacement) flags |= NAME_ALLOW_REPLACEMENT;
    if (f.queue) flags |= NAME_QUEUE;
    const buf = new CommandBuilder(CMD_NAME.items).string(ITEM.NAME, name).finish({ [CMD_NAME.flags]: flags });
    this.run('NAME_ACQUIRE', buf);
    const got = buf.readBigUInt64LE(CMD_NAME.flags);
    return { flags: got, inQueue: (got & NAME_IN_QUEUE) !== 0n };
  }

  /** KDBUS_CMD_NAME_RELEASE (also leaves the queue for the name). */
  releaseName(name: string): void {
    this.run('NAME_RELEASE', new CommandBuilder(CMD_NAME.items).string(ITEM.NAME, name).finish());
  }

  /** KDBUS_CMD_NAME_LIST (default: unique ids and names). */
  listNames(f: NameListFlags = { unique: true, names: true }): NameListEntry[] {
    let flags = 0n;
    if (f.unique) flags |= NAME_LIST_UNIQUE;
    if (f.names) flags |= NAME_LIST_NAMES;
    if (f.activators) flags |= NAME_LIST_ACTIVATORS;
    if (f.queued) flags |= NAME_LIST_QUEUED;
    const buf = new CommandBuilder(CMD_NAME_LIST.items).finish({ [CMD_NAME_LIST.flags]: flags });
    this.run('NAME_LIST', buf);
    const off = Number(buf.readBigUInt64LE(CMD_NAME_LIST.offset));
    try {
      return decodeNameList(this.pool, off);
    } finally {
      this.free(off);
    }
  }

  // ---- matches ----

  /** KDBUS_CMD_MATCH_ADD of one entry (all of rule's items must hold) under cookie; replace: MATCH_REPLACE the cookie's entries. */
  addMatch(cookie: U64, rule: MatchRule, opts: { replace?: boolean } = {}): void {
    const cmd = new CommandBuilder(CMD_MATCH.items);
    addMatchRule(cmd, rule);
    this.run('MATCH_ADD', cmd.finish({ [CMD_MATCH.cookie]: cookie, [CMD_MATCH.flags]: opts.replace ? MATCH_REPLACE : 0n }));
  }

  /** KDBUS_CMD_MATCH_REMOVE of every entry under cookie. */
  removeMatch(cookie: U64): void {
    this.run('MATCH_REMOVE', new CommandBuilder(CMD_MATCH.items).finish({ [CMD_MATCH.cookie]: cookie }));
  }

  // ---- information ----

  private info(command: 'CONN_INFO' | 'BUS_CREATOR_INFO', cmd: CommandBuilder, id: U64, attach: bigint): Info {
    const buf = cmd.finish({ [CMD_INFO.id]: id, [CMD_INFO.flags]: attach });
    this.run(command, buf);
    const off = Number(buf.readBigUInt64LE(CMD_INFO.offset));
    try {
      return decodeInfo(this.pool, off);
    } finally {
      this.free(off);
    }
  }

  /** KDBUS_CMD_CONN_INFO of a connection id or well-known name, with the metadata in attach (default all). */
  connInfo(target: U64 | string, attach: bigint = ATTACH_ALL): Info {
    const cmd = new CommandBuilder(CMD_INFO.items);
    if (typeof target === 'string') cmd.string(ITEM.NAME, target);
    return this.info('CONN_INFO', cmd, typeof target === 'string' ? 0 : target, attach);
  }

  /** KDBUS_CMD_BUS_CREATOR_INFO: the bus (id, flags, name, bloom) and its creator's metadata. */
  busCreatorInfo(attach: bigint = ATTACH_ALL): Info {
    return this.info('BUS_CREATOR_INFO', new CommandBuilder(CMD_INFO.items), 0, attach);
  }

  /** KDBUS_CMD_CONN_UPDATE: new attach flags (ordinary) or a new policy (policy holder). */
  update(o: { attachSend?: bigint; attachRecv?: bigint; policy?: PolicyEntry[] }): void {
    const cmd = new CommandBuilder(CMD_UPDATE.items);
    if (o.attachSend !== undefined) cmd.u64s(ITEM.ATTACH_FLAGS_SEND, [o.attachSend]);
    if (o.attachRecv !== undefined) cmd.u64s(ITEM.ATTACH_FLAGS_RECV, [o.attachRecv]);
    if (o.policy) addPolicy(cmd, o.policy);
    this.run('CONN_UPDATE', cmd.finish());
  }

  // ---- the end ----

  /** KDBUS_CMD_BYEBYE: leave the bus (EBUSY while messages are queued); close() still follows. */
  byebye(): void {
    this.run('BYEBYE', Buffer.alloc(8));
  }

  /**
   * Stops watching, unmaps the pool, closes the fd. Views of unfreed
   * messages read zeros from then on; pending calls reject with ECANCELED.
   */
  close(): void {
    if (this.closed) return;
    this.stopWatch();
    this.closed = true;
    nat.munmap(this.pool);
    nat.close(this.fd);
    this.rejectPending(new KdbusClientError(125 /* ECANCELED */, 'call', 'the connection was closed'));
    this.emit('close');
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Opens bus and says HELLO (see Connection.open); async for uniformity with the rest of the API. */
export async function connect(bus: string, opts: ConnectOptions = {}): Promise<Connection> {
  return Connection.open(bus, opts);
}

export { errnoName };
