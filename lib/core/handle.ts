// The ioctl edge (ipc/kdbus/handle.c): one handle per open file. Every
// command is one row of COMMANDS: its struct, size limits and known flags,
// the handles (and connections) that serve it, and its handler. The
// prologue all rows share reads and checks the command in the kernel's order
// (kdbus_memdup_user, kdbus_negotiate_flags, kdbus_items_validate); Handle.run
// turns a KdbusError into the errno and writes the results back into the
// caller's command the way kdbus_member_set_user would.
import { CMD, CMD_FREE, CMD_HELLO, CMD_INFO, CMD_MAKE, CMD_MATCH, CMD_NAME, CMD_NAME_LIST, CMD_RECV,
  CMD_SEND, CMD_UPDATE, HELLO_ACCEPT_FD, HELLO_ACTIVATOR, HELLO_MONITOR, HELLO_POLICY_HOLDER, ITEM,
  ITEM_HEADER_SIZE, LIMITS, MAKE_ACCESS_GROUP, MAKE_ACCESS_WORLD, MATCH_REPLACE, NAME_ALLOW_REPLACEMENT,
  NAME_LIST_ACTIVATORS, NAME_LIST_NAMES, NAME_LIST_QUEUED, NAME_LIST_UNIQUE, NAME_QUEUE,
  NAME_REPLACE_EXISTING, RECV_DROP, RECV_PEEK, RECV_RETURN_INCOMPLETE_FDS, RECV_USE_PRIORITY,
  SEND_SYNC_REPLY, ATTACH_ALL } from '../abi/kdbus.js';
import { POLL } from '../abi/poll.js';
import { commandBuffer, items, itemSysname, negotiateFlags, singleItem, sysnameShown, u64,
  validateItems } from '../abi/items.js';
import { errno, fail, KdbusError } from './errors.js';
import { busNew, busRelease, type Bus } from './bus.js';
import { callerCreds, connHello, sanitizeAttachFlags, type Connection, type PendingInstall,
  type Received } from './connection.js';
import { Endpoint, endpointMode } from './endpoint.js';
import { kmsgFromSend, type FdAccess } from './message.js';
import { SyncCall, type FdWatcher, type InstallDone } from './call.js';
import { monotonicNs, replyUnlink } from './reply.js';
import { nameValid } from './names.js';
import { policySee, policySeeName } from './policy.js';
import type { PoolBacking } from './pool.js';
import { hasCapIpcOwner, type TaskCreds } from './task.js';
import type { Domain } from './domain.js';
import { FAST, type FastRow, ROLE, STATE } from './fast-state.js';
import { log, logging, logRefusal } from '../log.js';

/** The calling thread of one ioctl. */
export interface Call {
  /** the FUSE request, for answering a parked ioctl later */
  unique: number;
  /** the ioctl command number */
  cmd: number;
  tid: number;
  /** the uid refusals are logged under: the one that opened the file */
  uid: number;
  arg: number;
  head: Buffer;
  command: Buffer | number | null;
}

/** A parked ioctl, as the server keeps it: told of FUSE_INTERRUPTs until answered. */
export interface Parked {
  interrupted(): void;
}

/** Server services a handle needs: caller memory, fds, and its own pool. */
export interface HandleEnv extends FdAccess, FdWatcher {
  memWrite(tid: number, addr: number, data: Buffer): number;
  /**
   * Answers an ioctl; out (a success of an _IOC_READ command only, at most
   * its head): bytes the kernel copies to the start of the caller's argument.
   */
  replyIoctl(unique: number, result: number, out?: Buffer): void;
  /**
   * Installs fds (the server's copies) in the process of thread tid, whose
   * ioctl `unique` is parked, and answers that ioctl with what done returns
   * (native fdInstall, lib/fuse/native.ts). Returns 0, or -errno if it could
   * not start (done is then never called, the ioctl is still parked).
   */
  installFds(unique: number, tid: number, fds: number[], done: InstallDone): number;
  /** Sizes this handle's pool and returns where its bytes go. */
  poolSetup(size: number): PoolBacking | number;
  /** Wake this handle's poller. */
  wake(): void;
  /** Tells the native fast path this handle's state and poll mask (lib/core/fast-state.ts), if it runs. */
  publish?(state: number, pollMask: number): void;
}

/**
 * The caller's command as user memory will hold it: kdbus_member_set_user
 * and copy_to_user writes land here, and go back to the caller when the
 * ioctl is answered (answer()), whether it succeeded or not (the kernel's
 * writes before a failure stay visible). The parsed command stays the
 * kernel's own copy.
 */
class WriteBack {
  /** the kernel's copy, once the prologue has read it */
  private cmd!: Buffer;
  /** copy-on-write of the command: only made once a write changes a byte */
  private user: Buffer | null = null;
  private lo = Infinity;
  private hi = 0;
  /** whether a command was read: a refusal before that has nothing to write back */
  started = false;

  start(cmd: Buffer): void {
    this.cmd = cmd;
    this.started = true;
  }

  u64(off: number, v: bigint): void {
    const cur = (this.user ?? this.cmd).readBigUInt64LE(off);
    if (cur === v) return; // the caller's memory holds it already: no write needed
    this.writable().writeBigUInt64LE(v, off);
    this.mark(off, 8);
  }
  bytes(off: number, b: Buffer): void {
    if ((this.user ?? this.cmd).compare(b, 0, b.length, off, off + b.length) === 0) return;
    b.copy(this.writable(), off);
    this.mark(off, b.length);
  }
  /**
   * Takes the caller's bytes aside now: for commands whose kernel copy (cmd)
   * is changed and then written back whole with bytes(), which compares
   * against what the caller holds.
   */
  own(): void {
    this.writable();
  }
  private writable(): Buffer {
    this.user ??= Buffer.from(this.cmd);
    return this.user;
  }
  private mark(off: number, len: number): void {
    this.lo = Math.min(this.lo, off);
    this.hi = Math.max(this.hi, off + len);
  }
  flush(env: HandleEnv, call: Call): number {
    if (this.hi === 0 || !this.user) return 0;
    const r = env.memWrite(call.tid, call.arg + this.lo, this.user.subarray(this.lo, this.hi));
    this.lo = Infinity;
    this.hi = 0;
    return r;
  }
  /**
   * Writes what changed and answers the ioctl. A success whose writes all
   * lie in the head of an _IOWR command carries them in the reply, and the
   * kernel copies them out in the caller's own context: ~3 us less than
   * process_vm_writev. That copy starts at byte 0; the bytes before the first
   * change are the caller's own, as read when the ioctl began.
   */
  answer(env: HandleEnv, call: Call, result: number): void {
    if (result >= 0 && this.user && this.hi > 0 && (call.cmd >>> 30) & IOC_READ &&
        this.hi <= call.head.length) {
      env.replyIoctl(call.unique, result, this.user.subarray(0, this.hi));
      return;
    }
    if (this.flush(env, call) < 0 && result >= 0) result = -errno.EFAULT;
    env.replyIoctl(call.unique, result);
  }
}

/** _IOC_READ in an ioctl number's direction bits (30-31): the kernel copies the head back out. */
const IOC_READ = 2;

/** A RECV parked while its fds are installed: an interrupt changes nothing (it ends in microseconds). */
const INSTALLING: Parked = { interrupted() {} };

// ---------------------------------------------------------------- the table

/** Where a command struct keeps its flags, kernel_flags, return_flags and items. */
interface Struct { flags: number; kernel_flags: number; return_flags: number; items: number }

/** How a command's struct is read (the prologue). */
interface Args {
  layout: Struct;
  /** the largest size kdbus_memdup_user takes; the smallest is the fixed part */
  max: number;
  /** the flags the command knows (kdbus_negotiate_flags) */
  valid: bigint;
  /**
   * When return_flags is set to 0: 'first', before the flags are negotiated
   * (visible even if the command then fails); 'done', when the command
   * succeeds without parking; 'handler', by the handler if at all.
   */
  returnFlags: 'first' | 'done' | 'handler';
  /** the command takes no items: any is EINVAL (kdbus_cmd_free, kdbus_cmd_name_list) */
  noItems?: boolean;
  /** the handler changes the kernel's copy and writes it back whole (the caller's bytes are kept aside first) */
  rewrites?: boolean;
}

/** A command read and checked, as its handler gets it. */
interface Command {
  call: Call;
  env: HandleEnv;
  /** the kernel's copy of the command */
  buf: Buffer;
  /** the caller's copy, where results go */
  w: WriteBack;
  flags: bigint;
  itemsSize: number;
}

/** What an unconnected endpoint handle becomes (KDBUS_HANDLE_CONNECTED, KDBUS_HANDLE_EP_OWNER). */
type Becomes = { conn: Connection } | { owned: Endpoint };

/** Connection kinds (kdbus_conn_is_*), as a set: the others get EOPNOTSUPP. */
const ORDINARY = 1, ACTIVATOR = 2, POLICY_HOLDER = 4, MONITOR = 8;
const ANY_CONNECTION = ORDINARY | ACTIVATOR | POLICY_HOLDER | MONITOR;

function connKind(conn: Connection): number {
  if (conn.isActivator) return ACTIVATOR;
  if (conn.isPolicyHolder) return POLICY_HOLDER;
  return conn.isMonitor ? MONITOR : ORDINARY;
}

type Row =
  /** on a control file */
  | { on: 'control'; args: Args; run: (h: ControlHandle, c: Command) => Bus }
  /** on an endpoint file not yet connected nor owning an endpoint; privileged: EPERM for others */
  | { on: 'endpoint'; privileged: boolean; args: Args; run: (h: EndpointHandle, c: Command) => Becomes }
  /** on the handle that made a custom endpoint */
  | { on: 'owner'; args: Args; run: (ep: Endpoint, c: Command) => void }
  /** on a connection of one of the kinds in conns, acquired (ECONNRESET once it is shut down) */
  | { on: 'connection'; conns: number; args: Args; run: (conn: Connection, c: Command) => Parked | void }
  /** on a connection as it is, without a command struct (BYEBYE, kdbus_cmd_byebye_unlocked) */
  | { on: 'connection'; conns: number; args: null; run: (conn: Connection, h: EndpointHandle) => void };

const INFO_MAX = CMD_INFO.items + LIMITS.NAME_MAX_LEN + 1;
const NAME_MAX = CMD_NAME.items + ITEM_HEADER_SIZE + LIMITS.NAME_MAX_LEN + 1;

/** Every command: adding one is a row here and its handler below. */
const COMMANDS = new Map<number, Row>([
  [CMD.BUS_MAKE, { on: 'control', run: busMake, args: { layout: CMD_MAKE, max: LIMITS.MAKE_MAX_SIZE,
    valid: MAKE_ACCESS_GROUP | MAKE_ACCESS_WORLD, returnFlags: 'handler' } }],
  [CMD.ENDPOINT_MAKE, { on: 'endpoint', privileged: true, run: endpointMake, args: { layout: CMD_MAKE,
    max: LIMITS.MAKE_MAX_SIZE, valid: MAKE_ACCESS_GROUP | MAKE_ACCESS_WORLD, returnFlags: 'first' } }],
  [CMD.HELLO, { on: 'endpoint', privileged: false, run: hello, args: { layout: CMD_HELLO,
    max: LIMITS.HELLO_MAX_SIZE, valid: HELLO_ACCEPT_FD | HELLO_ACTIVATOR | HELLO_POLICY_HOLDER | HELLO_MONITOR,
    returnFlags: 'handler', rewrites: true } }],
  [CMD.ENDPOINT_UPDATE, { on: 'owner', run: endpointUpdate, args: { layout: CMD_UPDATE,
    max: LIMITS.UPDATE_MAX_SIZE, valid: 0n, returnFlags: 'done' } }],
  [CMD.BYEBYE, { on: 'connection', conns: ORDINARY, args: null, run: byebye }],
  [CMD.SEND, { on: 'connection', conns: ORDINARY, run: send, args: { layout: CMD_SEND,
    max: LIMITS.SEND_MAX_SIZE, valid: SEND_SYNC_REPLY, returnFlags: 'done' } }],
  [CMD.RECV, { on: 'connection', conns: ANY_CONNECTION & ~POLICY_HOLDER, run: recv, args: { layout: CMD_RECV,
    max: LIMITS.RECV_MAX_SIZE, valid: RECV_PEEK | RECV_DROP | RECV_USE_PRIORITY, returnFlags: 'handler' } }],
  [CMD.FREE, { on: 'connection', conns: ANY_CONNECTION & ~POLICY_HOLDER, run: free, args: { layout: CMD_FREE,
    max: LIMITS.CMD_MAX_SIZE, valid: 0n, returnFlags: 'done', noItems: true } }],
  [CMD.NAME_ACQUIRE, { on: 'connection', conns: ORDINARY, run: nameAcquire, args: { layout: CMD_NAME,
    max: NAME_MAX, valid: NAME_REPLACE_EXISTING | NAME_ALLOW_REPLACEMENT | NAME_QUEUE, returnFlags: 'first',
    rewrites: true } }],
  [CMD.NAME_RELEASE, { on: 'connection', conns: ORDINARY, run: nameRelease, args: { layout: CMD_NAME,
    max: NAME_MAX, valid: 0n, returnFlags: 'first' } }],
  [CMD.NAME_LIST, { on: 'connection', conns: ANY_CONNECTION, run: nameList, args: { layout: CMD_NAME_LIST,
    max: LIMITS.CMD_MAX_SIZE, valid: NAME_LIST_UNIQUE | NAME_LIST_NAMES | NAME_LIST_ACTIVATORS | NAME_LIST_QUEUED,
    returnFlags: 'done', noItems: true } }],
  [CMD.CONN_INFO, { on: 'connection', conns: ANY_CONNECTION, run: connInfo, args: { layout: CMD_INFO,
    max: INFO_MAX, valid: ATTACH_ALL, returnFlags: 'done' } }],
  [CMD.BUS_CREATOR_INFO, { on: 'connection', conns: ANY_CONNECTION, run: creatorInfo, args: { layout: CMD_INFO,
    max: INFO_MAX, valid: ATTACH_ALL, returnFlags: 'done' } }],
  [CMD.CONN_UPDATE, { on: 'connection', conns: ANY_CONNECTION & ~ACTIVATOR, run: connUpdate, args: {
    layout: CMD_UPDATE, max: LIMITS.UPDATE_MAX_SIZE, valid: 0n, returnFlags: 'done' } }],
  [CMD.MATCH_ADD, { on: 'connection', conns: ORDINARY, run: matchAdd, args: { layout: CMD_MATCH,
    max: LIMITS.MATCH_MAX_SIZE, valid: MATCH_REPLACE, returnFlags: 'done' } }],
  [CMD.MATCH_REMOVE, { on: 'connection', conns: ORDINARY, run: matchRemove, args: { layout: CMD_MATCH,
    max: CMD_MATCH.items, valid: 0n, returnFlags: 'done' } }],
]);

const ROLE_OF = { control: ROLE.CONTROL, endpoint: ROLE.ENDPOINT, owner: ROLE.OWNER, connection: ROLE.CONNECTED };

/** COMMANDS as the native fast path checks them (lib/core/fast-state.ts); BYEBYE, without a struct, is not one. */
export function fastRows(): FastRow[] {
  const rows: FastRow[] = [];
  for (const [cmd, row] of COMMANDS) {
    const a = row.args;
    if (a === null) continue;
    rows.push({ cmd, on: ROLE_OF[row.on], privileged: row.on === 'endpoint' && row.privileged,
      conns: row.on === 'connection' ? row.conns : 0, min: a.layout.items, max: a.max, valid: a.valid,
      flagsOff: a.layout.flags, kernelFlagsOff: a.layout.kernel_flags, returnFlagsOff: a.layout.return_flags,
      returnFirst: a.returnFlags === 'first', returnDone: a.returnFlags === 'done',
      // their handlers' trivial answers: recv's EAGAIN on an empty queue, free's slice handed back
      fast: row.run === recv ? FAST.RECV : row.run === free ? FAST.FREE : FAST.NONE });
  }
  return rows;
}

export function cmdName(cmd: number): string {
  for (const [k, v] of Object.entries(CMD)) if (v === cmd) return k;
  return `ioctl 0x${cmd.toString(16)}`;
}

/**
 * The start every command shares, in the kernel's order: kdbus_memdup_user
 * (size within [fixed part, max]), kdbus_negotiate_flags (kernel_flags
 * written back, unknown flags EINVAL), kdbus_items_validate.
 */
function prologue(call: Call, env: HandleEnv, a: Args, w: WriteBack): Command {
  const { layout } = a;
  const buf = commandBuffer(call.arg, call.head, call.command, layout.items, a.max);
  w.start(buf);
  if (a.rewrites) w.own();
  if (a.returnFlags === 'first') w.u64(layout.return_flags, 0n);
  const flags = buf.readBigUInt64LE(layout.flags);
  negotiateFlags(flags, a.valid, (v) => w.u64(layout.kernel_flags, v));
  const itemsSize = buf.length - layout.items;
  validateItems(buf, layout.items, itemsSize);
  if (a.noItems && itemsSize > 0) fail(errno.EINVAL, `${cmdName(call.cmd)} takes no items`);
  return { call, env, buf, w, flags, itemsSize };
}

/** The prologue, the handler, and return_flags 0 when the row says so. */
function serve<R>(call: Call, env: HandleEnv, a: Args, w: WriteBack, handler: (c: Command) => R): R {
  const r = handler(prologue(call, env, a, w));
  if (a.returnFlags === 'done' && !r) w.u64(a.layout.return_flags, 0n);
  return r;
}

// ---------------------------------------------------------------- handles

export abstract class Handle {
  constructor(protected readonly env: HandleEnv) {}

  /** Finds the row of cmd for this handle, checks the caller and serves it; a parked call, or nothing. */
  protected abstract dispatch(call: Call, row: Row | undefined, w: WriteBack): Parked | void;
  abstract release(): void;
  abstract poll(): number;
  /** The connection this handle holds, if any: it stays until the file closes, even once shut down. */
  abstract connection(): Connection | null;
  /** What the native fast path may know of this handle (lib/core/fast-state.ts). */
  protected abstract fastState(): number;

  /** Tells the fast path (if any) this handle's state: after every change of it. */
  publish(): void {
    this.env.publish?.(this.fastState(), this.poll());
  }

  /**
   * Runs one ioctl; returns 0 or -errno, the call it parked on, or null if
   * it answered the ioctl itself (with its write-back).
   */
  run(call: Call, cmd: number): number | Parked | null {
    const w = new WriteBack();
    let ret = 0;
    try {
      // a parked call's writes go out with its answer
      const parked = this.dispatch(call, COMMANDS.get(cmd), w);
      if (parked) return parked;
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      ret = -e.errno;
      if (e.errno !== errno.EAGAIN) logRefusal(call.uid, cmdName(cmd), e.errno, `tid ${call.tid}: ${e.message}`);
    }
    if (!w.started) return ret;
    w.answer(this.env, call, ret);
    return null;
  }
}

export class ControlHandle extends Handle {
  bus: Bus | null = null;

  constructor(readonly domain: Domain, env: HandleEnv,
              readonly makeEndpointFile: (bus: Bus, ep: Endpoint) => void) {
    super(env);
  }

  protected dispatch(call: Call, row: Row | undefined, w: WriteBack): void {
    if (row?.on !== 'control') fail(errno.ENOTTY, 'not a control command');
    if (this.bus) fail(errno.EBADFD, 'this handle already made a bus');
    this.bus = serve(call, this.env, row.args, w, (c) => row.run(this, c));
    this.publish();
  }

  protected fastState(): number {
    return this.bus ? ROLE.JS : ROLE.CONTROL;
  }

  release(): void {
    const bus = this.bus;
    if (!bus) return;
    this.bus = null;
    busRelease(bus);
  }

  poll(): number {
    return POLL.ERR | POLL.HUP; // control files have no poll
  }

  connection(): null {
    return null;
  }
}

export class EndpointHandle extends Handle {
  conn: Connection | null = null;
  /** the custom endpoint this handle made (KDBUS_HANDLE_EP_OWNER) */
  owned: Endpoint | null = null;

  constructor(readonly ep: Endpoint, env: HandleEnv, readonly privileged: boolean,
              readonly makeEndpointFile: (bus: Bus, ep: Endpoint) => void) {
    super(env);
  }

  /** kdbus decides privilege at open: creator euid or CAP_IPC_OWNER, on endpoints without policy. */
  static privilegedAtOpen(ep: Endpoint, creds: TaskCreds | null): boolean {
    if (!creds || ep.hasPolicy) return false;
    return hasCapIpcOwner(creds) || creds.euid === ep.bus.uid;
  }

  protected dispatch(call: Call, row: Row | undefined, w: WriteBack): Parked | void {
    if (this.conn) return this.connected(this.conn, call, row, w);
    if (this.owned) {
      if (row?.on !== 'owner') fail(errno.ENOTTY, 'an endpoint owner handle only updates its endpoint');
      const ep = this.owned;
      return serve(call, this.env, row.args, w, (c) => row.run(ep, c));
    }
    if (row?.on !== 'endpoint') fail(errno.ENOTTY, 'not connected');
    if (row.privileged && !this.privileged) fail(errno.EPERM, `${cmdName(call.cmd)} is privileged`);
    const made = serve(call, this.env, row.args, w, (c) => row.run(this, c));
    if ('conn' in made) {
      this.conn = made.conn;
      made.conn.onChange = () => this.publish();
    } else {
      this.owned = made.owned;
    }
    this.publish();
  }

  protected fastState(): number {
    const conn = this.conn;
    if (conn) {
      return ROLE.CONNECTED | (connKind(conn) << STATE.KIND_SHIFT) | (conn.active ? STATE.ACTIVE : 0) |
        (conn.queue.count ? 0 : STATE.QUEUE_EMPTY);
    }
    if (this.owned) return ROLE.OWNER;
    return ROLE.ENDPOINT | (this.privileged ? STATE.PRIVILEGED : 0);
  }

  private connected(conn: Connection, call: Call, row: Row | undefined, w: WriteBack): Parked | void {
    if (row?.on === 'connection' && row.args === null) {
      checkKind(conn, row.conns, call);
      return row.run(conn, this);
    }
    conn.acquire();
    conn.beginCall(call.tid);
    try {
      if (row?.on !== 'connection') fail(errno.ENOTTY, 'unknown command');
      checkKind(conn, row.conns, call);
      return serve(call, this.env, row.args, w, (c) => row.run(conn, c));
    } finally {
      conn.bus.flushNotifications();
    }
  }

  disconnect(): void {
    const conn = this.conn;
    if (!conn || !conn.active) return;
    conn.bus.disconnect(conn);
    conn.bus.flushNotifications();
    if (logging()) log('conn', `bus ${sysnameShown(conn.bus.name)}: connection ${conn.id} gone`);
  }

  release(): void {
    this.disconnect();
    if (this.owned) {
      this.owned.deactivate();
      this.owned.bus.flushNotifications();
      this.owned = null;
    }
  }

  poll(): number {
    if (!this.conn) return POLL.ERR | POLL.HUP;
    return this.conn.pollMask();
  }

  connection(): Connection | null {
    return this.conn;
  }
}

function checkKind(conn: Connection, conns: number, call: Call): void {
  if (!(connKind(conn) & conns)) fail(errno.EOPNOTSUPP, `${cmdName(call.cmd)} is not for this kind of connection`);
}

// ---------------------------------------------------------------- handlers

/** KDBUS_CMD_BUS_MAKE: the bus (lib/core/bus.ts busNew). */
function busMake(h: ControlHandle, c: Command): Bus {
  return busNew({ domain: h.domain, tid: c.call.tid, cmd: c.buf, itemsSize: c.itemsSize, fds: c.env,
    makeEndpointFile: h.makeEndpointFile });
}

/** KDBUS_CMD_ENDPOINT_MAKE: a custom endpoint with its own policy, owned by this handle. */
function endpointMake(h: EndpointHandle, c: Command): Becomes {
  const { buf, itemsSize, flags } = c;
  const name = itemSysname(buf, singleItem(buf, CMD_MAKE.items, itemsSize, ITEM.MAKE_NAME));
  const creds = callerCreds(c.call.tid);
  const bus = h.ep.bus;
  if (!name.startsWith(`${creds.euid}-`)) {
    fail(errno.EINVAL, `endpoint name "${sysnameShown(name)}" lacks the "${creds.euid}-" prefix`);
  }
  if (!bus.active) fail(errno.ESHUTDOWN, 'bus is gone');
  if (bus.endpoints.has(name)) fail(errno.EEXIST, `endpoint ${sysnameShown(name)} exists`);
  const ep = new Endpoint(bus, name, creds.euid, creds.egid,
    endpointMode((flags & MAKE_ACCESS_GROUP) !== 0n, (flags & MAKE_ACCESS_WORLD) !== 0n), true);
  ep.policy.set(buf, CMD_MAKE.items, itemsSize, 0, true, ep);
  bus.endpoints.set(name, ep);
  h.makeEndpointFile(bus, ep);
  log('bus', `bus ${sysnameShown(bus.name)}: endpoint ${sysnameShown(name)} made by uid ${creds.euid}`);
  return { owned: ep };
}

/** KDBUS_CMD_ENDPOINT_UPDATE: replaces the custom endpoint's policy. */
function endpointUpdate(ep: Endpoint, c: Command): void {
  ep.policy.set(c.buf, CMD_UPDATE.items, c.itemsSize, 0, true, ep);
}

/** KDBUS_CMD_HELLO: the connection (lib/core/connection.ts connHello), its fixed part written back whole. */
function hello(h: EndpointHandle, c: Command): Becomes {
  const { buf, env } = c;
  buf.writeBigUInt64LE(0n, CMD_HELLO.return_flags);
  const conn = connHello({ ep: h.ep, privileged: h.privileged, tid: c.call.tid, cmd: buf, flags: c.flags,
    itemsSize: c.itemsSize, poolSetup: (size) => env.poolSetup(size), fds: env, wake: () => env.wake() });
  c.w.bytes(0, buf.subarray(0, CMD_HELLO.items));
  // formatted only when it is written: every connect passes here
  if (logging()) log('conn', `bus ${sysnameShown(conn.bus.name)}: connection ${conn.id} (tid ${c.call.tid}, uid ${conn.user.uid}` +
    `${conn.description ? `, "${sysnameShown(conn.description)}"` : ''})`);
  return { conn };
}

/** KDBUS_CMD_BYEBYE: only with nothing queued or being received. */
function byebye(conn: Connection, h: EndpointHandle): void {
  if (!conn.active) fail(errno.EALREADY, 'already disconnected');
  if (conn.queue.count || conn.installing) fail(errno.EBUSY, 'queue not empty');
  h.disconnect();
}

/** KDBUS_CMD_SEND; a synchronous call parks until its reply (lib/core/call.ts). */
function send(conn: Connection, c: Command): Parked | void {
  const { buf, w, flags, call, env } = c;
  const m = kmsgFromSend(env, call.tid, flags, u64(buf, CMD_SEND.msg_address), conn.id,
    Number(conn.bus.bloom.size), (v) => w.u64(CMD_SEND.kernel_msg_flags, v), conn.user);
  const sync = (flags & SEND_SYNC_REPLY) !== 0n;
  let cancelFd = -1;
  try {
    m.chargeTo(conn.user);
    for (const it of items(buf, CMD_SEND.items, c.itemsSize)) {
      if (it.type !== ITEM.CANCEL_FD) fail(errno.EINVAL, `item ${it.type} not allowed in SEND`);
      // CANCEL_FD is only looked at for synchronous sends
      if (!sync) continue;
      if (cancelFd >= 0) fail(errno.EEXIST, 'CANCEL_FD repeated');
      cancelFd = env.takeFd(call.tid, buf.readInt32LE(it.data));
      if (cancelFd < 0) fail(errno.EBADF, 'CANCEL_FD not open in the caller');
    }
    if (!sync) {
      conn.bus.send(conn, m);
      return;
    }
    const parked = new SyncCall(call.unique, conn, call.tid, {
      writeU64: (off, v) => w.u64(off, v),
      answer: (result) => w.answer(env, call, result),
      installFds: (fds, done) => env.installFds(call.unique, call.tid, fds, (result, why) => {
        const r = done(result, why);
        return w.flush(env, call) < 0 && r === 0 ? -errno.EFAULT : r;
      }),
    }, cancelFd, env);
    const reply = conn.bus.send(conn, m, parked)!;
    const deadline = m.timeoutOrReply;
    if (monotonicNs() >= deadline) {
      reply.syncWaiter = null;
      replyUnlink(reply);
      fail(errno.ETIMEDOUT, 'synchronous call past its deadline');
    }
    cancelFd = -1; // the call owns it now
    parked.start(reply, deadline);
    return parked;
  } finally {
    if (cancelFd >= 0) env.releaseFds([cancelFd]);
    m.dropStaged();
    // the receivers' queue entries hold the message's files now
    m.release(env);
  }
}

/** Where a RECV's message went, or (dropped > 0) how many were lost, into struct kdbus_cmd_recv. */
function recvWrite(w: WriteBack, dropped: bigint, msg: Received): void {
  w.u64(CMD_RECV.dropped_msgs, dropped);
  w.u64(CMD_RECV.msg_offset, BigInt(msg.off));
  w.u64(CMD_RECV.msg_size, BigInt(msg.size));
  w.u64(CMD_RECV.msg_return_flags, msg.incomplete ? RECV_RETURN_INCOMPLETE_FDS : 0n);
  w.u64(CMD_RECV.return_flags, 0n);
}

/** KDBUS_CMD_RECV. */
function recv(conn: Connection, c: Command): Parked | void {
  // msg.offset is an output: handle.c zeroes the kernel's copy before
  // kdbus_cmd_msg_recv's "offset > 0: EINVAL" could see what came in
  const r = conn.recv(c.flags, c.buf.readBigInt64LE(CMD_RECV.priority), c.call.tid);
  switch (r.kind) {
    case 'install':
      return recvInstall(conn, c, r.install);
    case 'lost':
      recvWrite(c.w, r.dropped, { off: 0, size: 0, incomplete: false });
      fail(errno.EOVERFLOW, `${r.dropped} messages were lost`);
      break;
    case 'received':
      recvWrite(c.w, 0n, r.msg);
  }
}

/**
 * RECV of a message with fds: the ioctl stays parked while the fds are
 * installed in the caller (lib/fuse/native.ts fdInstall), then the message
 * is written with their numbers and the command completed, the caller
 * still stopped on its way back from the ioctl.
 *
 * When the caller cannot be reached (traced already, under seccomp, or any
 * ptrace failure), nothing is done to it: the RECV fails (EPERM for the
 * first two) with a log line saying why, and the message stays at the head
 * of the queue. That loses nothing and leaves the receiver its choices: a
 * RECV with PEEK shows the message (fd numbers -1, as PEEK always gives),
 * DROP discards it, BYEBYE refuses while it is queued.
 */
function recvInstall(conn: Connection, c: Command, p: PendingInstall): Parked {
  const { call, env, w } = c;
  conn.installThen(p, (fds, done) => env.installFds(call.unique, call.tid, fds, done), (msg) => {
    recvWrite(w, 0n, msg);
    return w.flush(env, call) < 0 ? -errno.EFAULT : 0;
  });
  return INSTALLING;
}

/** KDBUS_CMD_FREE. */
function free(conn: Connection, c: Command): void {
  conn.pool.freeByUser(u64(c.buf, CMD_FREE.offset));
}

/** KDBUS_CMD_NAME_ACQUIRE: the command goes back whole, with the name's new flags. */
function nameAcquire(conn: Connection, c: Command): void {
  const { buf } = c;
  const newFlags = conn.bus.names.cmdAcquire(conn, buf, CMD_NAME.items, c.itemsSize, c.flags);
  buf.writeBigUInt64LE(newFlags, CMD_NAME.flags);
  buf.writeBigUInt64LE(0n, CMD_NAME.return_flags);
  c.w.bytes(0, buf);
}

/** KDBUS_CMD_NAME_RELEASE. */
function nameRelease(conn: Connection, c: Command): void {
  conn.bus.names.cmdRelease(conn, c.buf, CMD_NAME.items, c.itemsSize);
}

/** KDBUS_CMD_LIST: the list into the caller's pool. */
function nameList(conn: Connection, c: Command): void {
  const list = conn.bus.names.list(conn, c.flags, conn.bus.connections.values());
  c.w.u64(CMD_NAME_LIST.offset, BigInt(conn.pool.handOver(list)));
  c.w.u64(CMD_NAME_LIST.list_size, BigInt(list.length));
}

/** An info (CONN_INFO, BUS_CREATOR_INFO) into the caller's pool. */
function infoAnswer(conn: Connection, c: Command, info: Buffer): void {
  c.w.u64(CMD_INFO.offset, BigInt(conn.pool.handOver(info)));
  c.w.u64(CMD_INFO.info_size, BigInt(info.length));
}

/** KDBUS_CMD_CONN_INFO: of a connection by id, or of a name's owner. */
function connInfo(conn: Connection, c: Command): void {
  const { buf } = c;
  const bus = conn.bus;
  const id = buf.readBigUInt64LE(CMD_INFO.id);
  let owner: Connection | undefined;
  if (id === 0n) {
    let name: string | null = null;
    for (const it of items(buf, CMD_INFO.items, c.itemsSize)) {
      if (it.type !== ITEM.NAME) continue;
      if (name !== null) fail(errno.EINVAL, 'NAME repeated');
      name = itemSysname(buf, it);
    }
    if (name === null || !nameValid(name, false)) fail(errno.EINVAL, 'CONN_INFO needs a valid NAME');
    const entry = bus.names.lookup(name);
    // pretend a name does not exist if the caller may not see it
    if (!entry || !policySeeName(conn, name, conn.currentCreds())) {
      fail(errno.ESRCH, `no owner for ${sysnameShown(name)}`);
    }
    owner = entry.owner as Connection;
  } else {
    owner = bus.connection(id);
    if (!owner || !policySee(conn, owner, conn.currentCreds())) fail(errno.ENXIO, `no connection ${id}`);
  }
  infoAnswer(conn, c, owner.info(c.flags, c.call.tid));
}

/** KDBUS_CMD_BUS_CREATOR_INFO. */
function creatorInfo(conn: Connection, c: Command): void {
  infoAnswer(conn, c, conn.bus.creatorInfo(c.flags, c.call.tid));
}

/** KDBUS_CMD_CONN_UPDATE: attach flags, and a policy holder's policy. */
function connUpdate(conn: Connection, c: Command): void {
  const { buf, itemsSize } = c;
  let send: bigint | null = null;
  let recv: bigint | null = null;
  let policy = false;
  for (const it of items(buf, CMD_UPDATE.items, itemsSize)) {
    switch (it.type) {
      case ITEM.ATTACH_FLAGS_SEND:
        if (!conn.isOrdinary && !conn.isMonitor) fail(errno.EOPNOTSUPP, 'send flags of a special connection');
        send = sanitizeAttachFlags(buf.readBigUInt64LE(it.data));
        break;
      case ITEM.ATTACH_FLAGS_RECV:
        if (!conn.isOrdinary && !conn.isMonitor && !conn.isActivator) fail(errno.EOPNOTSUPP, 'recv flags');
        recv = sanitizeAttachFlags(buf.readBigUInt64LE(it.data));
        break;
      case ITEM.NAME:
      case ITEM.POLICY_ACCESS:
        if (!conn.isPolicyHolder) fail(errno.EOPNOTSUPP, 'policy of a non-holder');
        policy = true;
        break;
      default:
        fail(errno.EINVAL, `item ${it.type} not allowed in CONN_UPDATE`);
    }
  }
  if (policy) conn.bus.policy.set(buf, CMD_UPDATE.items, itemsSize, 1, true, conn);
  conn.updateAttachFlags(send, recv);
}

/** KDBUS_CMD_MATCH_ADD. */
function matchAdd(conn: Connection, c: Command): void {
  conn.user.check('matches', 1);
  conn.user.check('matchBytes', c.itemsSize);
  conn.matches.add(c.buf.readBigUInt64LE(CMD_MATCH.cookie), c.buf, CMD_MATCH.items, c.itemsSize,
    (c.flags & MATCH_REPLACE) !== 0n, Number(conn.bus.bloom.size));
  conn.chargeMatches();
}

/** KDBUS_CMD_MATCH_REMOVE. */
function matchRemove(conn: Connection, c: Command): void {
  conn.matches.remove(c.buf.readBigUInt64LE(CMD_MATCH.cookie));
  conn.chargeMatches();
}
