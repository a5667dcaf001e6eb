// The ioctl edge (ipc/kdbus/handle.c): one handle per open file. Reads and
// validates each command exactly as the kernel does, calls the core, turns
// KdbusError into the errno, and writes the results back into the caller's
// command the way kdbus_member_set_user would.
import { ATTACH, ATTACH_ALL, CMD, CMD_FREE, CMD_HELLO, CMD_INFO, CMD_MAKE, CMD_MATCH, CMD_NAME,
  CMD_NAME_LIST, CMD_RECV, CMD_SEND, CMD_UPDATE, HELLO_ACCEPT_FD, HELLO_ACTIVATOR, HELLO_MONITOR,
  HELLO_POLICY_HOLDER, ITEM, ITEM_HEADER_SIZE, KDBUS_FLAG_KERNEL, LIMITS, MAKE_ACCESS_GROUP,
  MAKE_ACCESS_WORLD, MATCH_REPLACE, NAME_ALLOW_REPLACEMENT, NAME_LIST_ACTIVATORS, NAME_LIST_NAMES,
  NAME_LIST_QUEUED, NAME_LIST_UNIQUE, NAME_ACTIVATOR, NAME_QUEUE, NAME_REPLACE_EXISTING, RECV_DROP, RECV_PEEK,
  RECV_RETURN_INCOMPLETE_FDS, RECV_USE_PRIORITY, SEND_SYNC_REPLY, SIZEOF_CREDS, SIZEOF_PIDS,
  align8 } from '../abi/kdbus.js';
import { commandBuffer, items, itemSysname, negotiateFlags, singleItem, sysnameShown, u64,
  validateItems } from '../abi/items.js';
import { errno, fail, KdbusError } from './errors.js';
import { Bus } from './bus.js';
import { Connection, helloItems, sanitizeAttachFlags, type PendingInstall } from './connection.js';
import { Endpoint, endpointMode } from './endpoint.js';
import { kmsgFromSend, type FdAccess } from './message.js';
import { SyncCall, type FdWatcher, type InstallDone } from './call.js';
import { monotonicNs, replyUnlink } from './reply.js';
import { nameValid } from './names.js';
import { policySee, policySeeName } from './policy.js';
import { Pool, type PoolBacking } from './pool.js';
import { ProcMeta } from './metadata.js';
import { hasCapIpcOwner, taskCreds, type TaskCreds } from './task.js';
import { ROOT_INO, type Domain } from './domain.js';
import { log, logging } from '../log.js';

/** The calling thread of one ioctl. */
export interface Call {
  /** the FUSE request, for answering a parked ioctl later */
  unique: number;
  /** the ioctl command number */
  cmd: number;
  tid: number;
  arg: number;
  head: Buffer;
  command: Buffer | number | null;
}

/** A parked ioctl, as the server keeps it: told of FUSE_INTERRUPTs until answered. */
export interface Parked {
  interrupted(): void;
}

/** A RECV parked while its fds are installed: an interrupt changes nothing (it ends in microseconds). */
const INSTALLING: Parked = { interrupted() {} };

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
}

/**
 * The caller's command as user memory will hold it: kdbus_member_set_user
 * and copy_to_user writes land here, and go back to the caller when the
 * ioctl is answered (answer()), whether it succeeded or not (the kernel's
 * writes before a failure stay visible). The parsed command stays the
 * kernel's own copy.
 */
class WriteBack {
  /** copy-on-write of the command: only made once a write changes a byte */
  private user: Buffer | null = null;
  private lo = Infinity;
  private hi = 0;
  constructor(private readonly cmd: Buffer) {}

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

/** Where a command keeps its flags, kernel_flags and items. */
interface CommandLayout { flags: number; kernel_flags: number; items: number }

/** A command read and checked: the kernel's copy, its write-back, flags and item list size. */
interface Command { buf: Buffer; w: WriteBack; flags: bigint; itemsSize: number }

export abstract class Handle {
  constructor(protected readonly env: HandleEnv) {}

  private writer: WriteBack | null = null;
  /** set by an ioctl that parks the request instead of answering it */
  protected parkedCall: Parked | null = null;

  abstract ioctl(call: Call, cmd: number): void;
  abstract release(): void;
  abstract poll(): number;

  /**
   * The start every command shares, in the kernel's order: kdbus_memdup_user
   * (size within [fixed part, max]), kdbus_negotiate_flags (kernel_flags
   * written back, unknown flags EINVAL), kdbus_items_validate.
   */
  protected command(call: Call, layout: CommandLayout, max: number, valid: bigint): Command {
    const buf = commandBuffer(call.arg, call.head, call.command, layout.items, max);
    const w = this.writeBack(buf);
    const flags = buf.readBigUInt64LE(layout.flags);
    negotiateFlags(flags, valid, (v) => w.u64(layout.kernel_flags, v));
    const itemsSize = buf.length - layout.items;
    validateItems(buf, layout.items, itemsSize);
    return { buf, w, flags, itemsSize };
  }

  /** Starts the caller-visible copy of the command that writes go to. */
  protected writeBack(cmd: Buffer): WriteBack {
    this.writer = new WriteBack(cmd);
    return this.writer;
  }

  private takeParked(): Parked | null {
    const p = this.parkedCall;
    this.parkedCall = null;
    return p;
  }

  private takeWriter(): WriteBack | null {
    const w = this.writer;
    this.writer = null;
    return w;
  }

  /**
   * Runs one ioctl; returns 0 or -errno, the call it parked on, or null if
   * it answered the ioctl itself (with its write-back).
   */
  run(call: Call, cmd: number): number | Parked | null {
    this.writer = null;
    this.parkedCall = null;
    let ret = 0;
    try {
      this.ioctl(call, cmd);
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      ret = -e.errno;
      if (e.errno !== errno.EAGAIN && logging()) log('ioctl', `tid ${call.tid} ${cmdName(cmd)}: ${e.message} (errno ${e.errno})`);
    }
    // (read through a method: TypeScript cannot see that ioctl() set it)
    const writer = this.takeWriter();
    const parked = this.takeParked();
    // a parked call's writes go out with its answer
    if (parked) return parked;
    if (writer === null) return ret;
    writer.answer(this.env, call, ret);
    return null;
  }
}

function cmdName(cmd: number): string {
  for (const [k, v] of Object.entries(CMD)) if (v === cmd) return k;
  return `ioctl 0x${cmd.toString(16)}`;
}

// ---------------------------------------------------------------- control

export class ControlHandle extends Handle {
  bus: Bus | null = null;

  constructor(private readonly domain: Domain, env: HandleEnv,
              private readonly makeEndpointFile: (bus: Bus, ep: Endpoint) => void) {
    super(env);
  }

  ioctl(call: Call, cmd: number): void {
    if (cmd !== CMD.BUS_MAKE) fail(errno.ENOTTY, 'not a control command');
    if (this.bus) fail(errno.EBADFD, 'this handle already made a bus');
    const { buf, itemsSize } = this.command(call, CMD_MAKE, LIMITS.MAKE_MAX_SIZE, MAKE_ACCESS_GROUP | MAKE_ACCESS_WORLD);
    this.bus = this.makeBus(call, buf, itemsSize);
  }

  /** kdbus_bus_new + kdbus_bus_activate. */
  private makeBus(call: Call, buf: Buffer, itemsSize: number): Bus {
    let name: string | null = null;
    let bloom: { size: bigint; nHash: bigint } | null = null;
    let attachOwner: bigint | null = null;
    let attachRecv: bigint | null = null;
    for (const it of items(buf, CMD_MAKE.items, itemsSize)) {
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
    const creds = callerCreds(call);
    if (!name.startsWith(`${creds.euid}-`)) {
      fail(errno.EINVAL, `bus name "${sysnameShown(name)}" lacks the "${creds.euid}-" prefix`);
    }
    if (this.domain.buses.has(name)) fail(errno.EEXIST, `bus ${sysnameShown(name)} exists`);

    const user = this.domain.users.get(creds.uid);
    this.domain.users.chargeBus(user);
    const flags = buf.readBigUInt64LE(CMD_MAKE.flags);
    const meta = ProcMeta.collect(call.tid, ATTACH.CREDS | ATTACH.PIDS | ATTACH.AUXGROUPS | ATTACH.TID_COMM |
      ATTACH.PID_COMM | ATTACH.EXE | ATTACH.CMDLINE | ATTACH.CGROUP | ATTACH.CAPS | ATTACH.SECLABEL | ATTACH.AUDIT);
    const bus = new Bus(this.domain, name, this.domain.nextBusId(), flags, bloom, req, owner,
      creds.euid, creds.egid, user, meta, this.env);
    const group = (flags & MAKE_ACCESS_GROUP) !== 0n;
    const world = (flags & MAKE_ACCESS_WORLD) !== 0n;
    const dirMode = 0o500 | (group || world ? 0o050 : 0) | (world ? 0o005 : 0);
    bus.ino = this.domain.tree.addDir(ROOT_INO, name, dirMode, bus.uid, bus.gid);
    this.domain.buses.set(name, bus);
    const ep = new Endpoint(bus, 'bus', bus.uid, bus.gid, endpointMode(group, world), false);
    bus.endpoints.set('bus', ep);
    this.makeEndpointFile(bus, ep);
    log('bus', `bus ${sysnameShown(name)} created by uid ${creds.euid} (tid ${call.tid})`);
    return bus;
  }

  release(): void {
    const bus = this.bus;
    if (!bus) return;
    this.bus = null;
    bus.deactivate();
    this.domain.buses.delete(bus.name);
    this.domain.tree.remove(bus.ino);
    this.domain.users.uncharge(bus.creator, 'buses');
  }

  poll(): number {
    return 0x8 | 0x10; // POLLERR | POLLHUP: control files have no poll
  }
}

function callerCreds(call: Call): TaskCreds {
  const c = taskCreds(call.tid);
  if (!c) fail(errno.ESRCH, `caller ${call.tid} vanished`);
  return c;
}

// ---------------------------------------------------------------- endpoint

export class EndpointHandle extends Handle {
  conn: Connection | null = null;
  /** the custom endpoint this handle made (KDBUS_HANDLE_EP_OWNER) */
  owned: Endpoint | null = null;

  constructor(private readonly ep: Endpoint, env: HandleEnv, readonly privileged: boolean,
              private readonly makeEndpointFile: (bus: Bus, ep: Endpoint) => void) {
    super(env);
  }

  /** kdbus decides privilege at open: creator euid or CAP_IPC_OWNER, on endpoints without policy. */
  static privilegedAtOpen(ep: Endpoint, creds: TaskCreds | null): boolean {
    if (!creds || ep.hasPolicy) return false;
    return hasCapIpcOwner(creds) || creds.euid === ep.bus.uid;
  }

  ioctl(call: Call, cmd: number): void {
    if (this.conn) return this.connected(this.conn, call, cmd);
    if (this.owned) {
      if (cmd !== CMD.ENDPOINT_UPDATE) fail(errno.ENOTTY, 'an endpoint owner handle only updates its endpoint');
      return this.endpointUpdate(this.owned, call);
    }
    if (cmd === CMD.HELLO) return this.hello(call);
    if (cmd === CMD.ENDPOINT_MAKE) return this.endpointMake(call);
    fail(errno.ENOTTY, 'not connected');
  }

  /** KDBUS_CMD_ENDPOINT_MAKE: a custom endpoint with its own policy, owned by this handle. */
  private endpointMake(call: Call): void {
    if (!this.privileged) fail(errno.EPERM, 'making endpoints is privileged');
    const buf = commandBuffer(call.arg, call.head, call.command, CMD_MAKE.items, LIMITS.MAKE_MAX_SIZE);
    const w = this.writeBack(buf);
    w.u64(CMD_MAKE.return_flags, 0n);
    const flags = buf.readBigUInt64LE(CMD_MAKE.flags);
    negotiateFlags(flags, MAKE_ACCESS_GROUP | MAKE_ACCESS_WORLD, (v) => w.u64(CMD_MAKE.kernel_flags, v));
    const itemsSize = buf.length - CMD_MAKE.items;
    validateItems(buf, CMD_MAKE.items, itemsSize);
    const name = itemSysname(buf, singleItem(buf, CMD_MAKE.items, itemsSize, ITEM.MAKE_NAME));
    const creds = callerCreds(call);
    const bus = this.ep.bus;
    if (!name.startsWith(`${creds.euid}-`)) {
      fail(errno.EINVAL, `endpoint name "${sysnameShown(name)}" lacks the "${creds.euid}-" prefix`);
    }
    if (!bus.active) fail(errno.ESHUTDOWN, 'bus is gone');
    if (bus.endpoints.has(name)) fail(errno.EEXIST, `endpoint ${sysnameShown(name)} exists`);
    const ep = new Endpoint(bus, name, creds.euid, creds.egid,
      endpointMode((flags & MAKE_ACCESS_GROUP) !== 0n, (flags & MAKE_ACCESS_WORLD) !== 0n), true);
    ep.policy.set(buf, CMD_MAKE.items, itemsSize, 0, true, ep);
    bus.endpoints.set(name, ep);
    this.makeEndpointFile(bus, ep);
    this.owned = ep;
    log('bus', `bus ${sysnameShown(bus.name)}: endpoint ${sysnameShown(name)} made by uid ${creds.euid}`);
  }

  /** KDBUS_CMD_ENDPOINT_UPDATE: replaces the custom endpoint's policy. */
  private endpointUpdate(ep: Endpoint, call: Call): void {
    const { buf, w, itemsSize } = this.command(call, CMD_UPDATE, LIMITS.UPDATE_MAX_SIZE, 0n);
    ep.policy.set(buf, CMD_UPDATE.items, itemsSize, 0, true, ep);
    w.u64(CMD_UPDATE.return_flags, 0n);
  }

  private hello(call: Call): void {
    const buf = commandBuffer(call.arg, call.head, call.command, CMD_HELLO.items, LIMITS.HELLO_MAX_SIZE);
    const w = this.writeBack(buf);
    w.own(); // buf changes below, and goes back whole
    const flags = buf.readBigUInt64LE(CMD_HELLO.flags);
    negotiateFlags(flags, HELLO_ACCEPT_FD | HELLO_ACTIVATOR | HELLO_POLICY_HOLDER | HELLO_MONITOR,
      (v) => w.u64(CMD_HELLO.kernel_flags, v));
    buf.writeBigUInt64LE(0n, CMD_HELLO.return_flags);
    const itemsSize = buf.length - CMD_HELLO.items;
    validateItems(buf, CMD_HELLO.items, itemsSize);
    const poolSize = buf.readBigUInt64LE(CMD_HELLO.pool_size);
    if (poolSize === 0n || poolSize % 4096n !== 0n) fail(errno.EFAULT, `bad pool size ${poolSize}`);
    if (poolSize > 0xffff_ffffn) fail(errno.ENOMEM, 'pool too large');

    const conn = this.connNew(call, buf, flags, itemsSize, Number(poolSize));
    const bus = this.ep.bus;
    bus.connect(conn);
    try {
      if (conn.isActivator) {
        for (const it of items(buf, CMD_HELLO.items, itemsSize)) {
          if (it.type === ITEM.NAME) bus.names.acquire(conn, itemSysname(buf, it), NAME_ACTIVATOR);
        }
      }
      // activators and policy holders bring the bus policy for their name
      if (conn.isActivator || conn.isPolicyHolder) {
        bus.policy.set(buf, CMD_HELLO.items, itemsSize, 1, conn.isPolicyHolder, conn);
      }
    } catch (e) {
      bus.disconnect(conn);
      throw e;
    } finally {
      bus.flushNotifications();
    }
    this.conn = conn;
    // copy_to_user of the whole fixed part
    w.bytes(0, buf.subarray(0, CMD_HELLO.items));
    log('conn', `bus ${sysnameShown(bus.name)}: connection ${conn.id} (tid ${call.tid}, uid ${conn.user.uid}` +
      `${conn.description ? `, "${sysnameShown(conn.description)}"` : ''})`);
  }

  /** kdbus_conn_new: every HELLO rule, in the kernel's order. */
  private connNew(call: Call, buf: Buffer, flags: bigint, itemsSize: number, poolSize: number): Connection {
    const ep = this.ep;
    const bus = ep.bus;
    if (!ep.active) fail(errno.ESHUTDOWN, 'endpoint is gone');
    const isMonitor = (flags & HELLO_MONITOR) !== 0n;
    const isActivator = (flags & HELLO_ACTIVATOR) !== 0n;
    const isHolder = (flags & HELLO_POLICY_HOLDER) !== 0n;
    if (Number(isMonitor) + Number(isActivator) + Number(isHolder) > 1) fail(errno.EINVAL, 'conflicting HELLO flags');
    if (isMonitor && ep.hasPolicy) fail(errno.EOPNOTSUPP, 'no monitors on custom endpoints');
    if (!this.privileged && (isActivator || isHolder || isMonitor)) fail(errno.EPERM, 'unprivileged special connection');
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
          if (!this.privileged) fail(errno.EPERM, 'unprivileged CREDS');
          if (it.size !== align8(ITEM_HEADER_SIZE + SIZEOF_CREDS)) fail(errno.EINVAL, 'bad CREDS');
          creds = buf.subarray(it.data, it.data + SIZEOF_CREDS);
          break;
        case ITEM.PIDS:
          if (!this.privileged) fail(errno.EPERM, 'unprivileged PIDS');
          if (it.size !== align8(ITEM_HEADER_SIZE + SIZEOF_PIDS)) fail(errno.EINVAL, 'bad PIDS');
          pids = buf.subarray(it.data, it.data + SIZEOF_PIDS);
          break;
        case ITEM.SECLABEL:
          if (!this.privileged) fail(errno.EPERM, 'unprivileged SECLABEL');
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
    const attachSend = sanitizeAttachFlags(buf.readBigUInt64LE(CMD_HELLO.attach_flags_send));
    const attachRecv = sanitizeAttachFlags(buf.readBigUInt64LE(CMD_HELLO.attach_flags_recv));
    buf.writeBigUInt64LE(bus.attachFlagsReq | KDBUS_FLAG_KERNEL, CMD_HELLO.attach_flags_send);
    if (bus.attachFlagsReq & ~attachSend) fail(errno.ECONNREFUSED, 'HELLO lacks attach flags the bus requires');

    const task = callerCreds(call);
    // connections on a custom endpoint share its anonymous user (kdbus_ep_new)
    const user = ep.user ?? bus.domain.users.get(task.uid);
    bus.domain.users.chargeConnection(user);
    try {
      const backing = this.env.poolSetup(poolSize);
      if (typeof backing === 'number') fail(-backing, 'pool setup failed');
      const pool = new Pool(poolSize, backing);
      const faked = creds !== null || pids !== null || seclabel !== null;
      const meta = faked ? ProcMeta.fake(creds, pids, seclabel, call.tid)
        : ProcMeta.collect(call.tid, ATTACH.CREDS | ATTACH.PIDS | ATTACH.AUXGROUPS | ATTACH.TID_COMM |
          ATTACH.PID_COMM | ATTACH.EXE | ATTACH.CMDLINE | ATTACH.CGROUP | ATTACH.CAPS | ATTACH.SECLABEL | ATTACH.AUDIT);
      const conn = new Connection(bus, ep, bus.nextConnId(), flags, attachSend, attachRecv, pool, user,
        this.privileged, description, meta, faked, call.tid, task, this.env);
      conn.wake = () => this.env.wake();
      ep.connections.add(conn);

      buf.writeBigUInt64LE(bus.flags, CMD_HELLO.bus_flags);
      buf.writeBigUInt64LE(conn.id, CMD_HELLO.id);
      bus.id128.copy(buf, CMD_HELLO.id128);
      const list = helloItems(bus.bloom.size, bus.bloom.nHash);
      const off = pool.alloc(list.length);
      backing.write(off, list);
      backing.flush(off, list.length);
      pool.publish(off);
      pool.release(off);
      buf.writeBigUInt64LE(BigInt(off), CMD_HELLO.offset);
      buf.writeBigUInt64LE(BigInt(list.length), CMD_HELLO.items_size);
      return conn;
    } catch (e) {
      bus.domain.users.uncharge(user, 'connections');
      throw e;
    }
  }


  private connected(conn: Connection, call: Call, cmd: number): void {
    const bus = conn.bus;
    if (cmd === CMD.BYEBYE) {
      if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'BYEBYE of a special connection');
      if (!conn.active) fail(errno.EALREADY, 'already disconnected');
      if (conn.queue.count || conn.installing) fail(errno.EBUSY, 'queue not empty');
      this.disconnect();
      return;
    }
    conn.acquire();
    conn.beginCall(call.tid);
    try {
      switch (cmd) {
        case CMD.SEND: return this.send(conn, call);
        case CMD.RECV: return this.recv(conn, call);
        case CMD.FREE: return this.free(conn, call);
        case CMD.NAME_ACQUIRE: return this.nameAcquire(conn, call);
        case CMD.NAME_RELEASE: return this.nameRelease(conn, call);
        case CMD.NAME_LIST: return this.nameList(conn, call);
        case CMD.CONN_INFO: return this.connInfo(conn, call);
        case CMD.BUS_CREATOR_INFO: return this.creatorInfo(conn, call);
        case CMD.CONN_UPDATE: return this.connUpdate(conn, call);
        case CMD.MATCH_ADD: return this.matchAdd(conn, call);
        case CMD.MATCH_REMOVE: return this.matchRemove(conn, call);
        default: fail(errno.ENOTTY, 'unknown command');
      }
    } finally {
      bus.flushNotifications();
    }
  }

  private send(conn: Connection, call: Call): void {
    if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'only ordinary connections send');
    const { buf, w, flags, itemsSize } = this.command(call, CMD_SEND, LIMITS.SEND_MAX_SIZE, SEND_SYNC_REPLY);
    const m = kmsgFromSend(this.env, call.tid, flags, u64(buf, CMD_SEND.msg_address), conn.id,
      Number(conn.bus.bloom.size), (v) => w.u64(CMD_SEND.kernel_msg_flags, v));
    const sync = (flags & SEND_SYNC_REPLY) !== 0n;
    let cancelFd = -1;
    try {
      for (const it of items(buf, CMD_SEND.items, itemsSize)) {
        if (it.type !== ITEM.CANCEL_FD) fail(errno.EINVAL, `item ${it.type} not allowed in SEND`);
        // CANCEL_FD is only looked at for synchronous sends
        if (!sync) continue;
        if (cancelFd >= 0) fail(errno.EEXIST, 'CANCEL_FD repeated');
        cancelFd = this.env.takeFd(call.tid, buf.readInt32LE(it.data));
        if (cancelFd < 0) fail(errno.EBADF, 'CANCEL_FD not open in the caller');
      }
      if (!sync) {
        conn.bus.send(conn, m);
        w.u64(CMD_SEND.return_flags, 0n);
        return;
      }
      const parked = new SyncCall(call.unique, conn, call.tid, {
        writeU64: (off, v) => w.u64(off, v),
        answer: (result) => w.answer(this.env, call, result),
        installFds: (fds, done) => this.env.installFds(call.unique, call.tid, fds, (result, why) => {
          const r = done(result, why);
          return w.flush(this.env, call) < 0 && r === 0 ? -errno.EFAULT : r;
        }),
      }, cancelFd, this.env);
      const reply = conn.bus.send(conn, m, parked)!;
      const deadline = m.timeoutOrReply;
      if (monotonicNs() >= deadline) {
        reply.syncWaiter = null;
        replyUnlink(reply);
        fail(errno.ETIMEDOUT, 'synchronous call past its deadline');
      }
      cancelFd = -1; // the call owns it now
      parked.start(reply, deadline);
      this.parkedCall = parked;
    } finally {
      if (cancelFd >= 0) this.env.releaseFds([cancelFd]);
      // the receivers' queue entries hold the message's files now
      m.release(this.env);
    }
  }

  private recv(conn: Connection, call: Call): void {
    if (conn.isPolicyHolder) fail(errno.EOPNOTSUPP, 'policy holders do not receive');
    const { buf, w, flags } = this.command(call, CMD_RECV, LIMITS.RECV_MAX_SIZE,
      RECV_PEEK | RECV_DROP | RECV_USE_PRIORITY);
    // msg.offset is an output: handle.c zeroes the kernel's copy before
    // kdbus_cmd_msg_recv's "offset > 0: EINVAL" could see what came in
    const r = conn.recv(flags, buf.readBigInt64LE(CMD_RECV.priority), call.tid);
    if (r.install) return this.recvInstall(conn, call, w, r.install);
    w.u64(CMD_RECV.dropped_msgs, r.dropped);
    w.u64(CMD_RECV.msg_offset, r.off);
    w.u64(CMD_RECV.msg_size, r.size);
    w.u64(CMD_RECV.msg_return_flags, 0n);
    w.u64(CMD_RECV.return_flags, 0n);
    if (r.ret < 0) throw new KdbusError(-r.ret, `${r.dropped} messages were lost`);
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
  private recvInstall(conn: Connection, call: Call, w: WriteBack, p: PendingInstall): void {
    const started = this.env.installFds(call.unique, call.tid, p.fds, (result, why) => {
      if (typeof result === 'number') {
        conn.abortInstall(p);
        log('recv', `tid ${call.tid}: RECV of a message with ${p.fds.length} fds failed: ${why ?? 'fd install failed'}` +
          ` (errno ${-result})${conn.active ? '; it stays queued' : ''}`);
        return result;
      }
      if (!conn.active) {
        conn.abortInstall(p);
        return -errno.ECONNRESET;
      }
      const incomplete = conn.finishInstall(p, result);
      w.u64(CMD_RECV.dropped_msgs, 0n);
      w.u64(CMD_RECV.msg_offset, BigInt(p.off));
      w.u64(CMD_RECV.msg_size, BigInt(p.size));
      w.u64(CMD_RECV.msg_return_flags, incomplete ? RECV_RETURN_INCOMPLETE_FDS : 0n);
      w.u64(CMD_RECV.return_flags, 0n);
      return w.flush(this.env, call) < 0 ? -errno.EFAULT : 0;
    });
    if (started < 0) {
      conn.abortInstall(p);
      fail(-started, 'cannot start installing fds');
    }
    this.parkedCall = INSTALLING;
  }

  private free(conn: Connection, call: Call): void {
    if (conn.isPolicyHolder) fail(errno.EOPNOTSUPP, 'policy holders have no pool use');
    const { buf, w, itemsSize } = this.command(call, CMD_FREE, LIMITS.CMD_MAX_SIZE, 0n);
    for (const it of items(buf, CMD_FREE.items, itemsSize)) fail(errno.EINVAL, `item ${it.type} not allowed in FREE`);
    conn.pool.freeByUser(u64(buf, CMD_FREE.offset));
    w.u64(CMD_FREE.return_flags, 0n);
  }

  private nameCommand(call: Call, valid: bigint): { buf: Buffer; w: WriteBack } {
    const buf = commandBuffer(call.arg, call.head, call.command, CMD_NAME.items,
      CMD_NAME.items + ITEM_HEADER_SIZE + LIMITS.NAME_MAX_LEN + 1);
    const w = this.writeBack(buf);
    w.u64(CMD_NAME.return_flags, 0n);
    negotiateFlags(buf.readBigUInt64LE(CMD_NAME.flags), valid, (v) => w.u64(CMD_NAME.kernel_flags, v));
    validateItems(buf, CMD_NAME.items, buf.length - CMD_NAME.items);
    return { buf, w };
  }

  private nameAcquire(conn: Connection, call: Call): void {
    if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'only ordinary connections own names');
    const { buf, w } = this.nameCommand(call, NAME_REPLACE_EXISTING | NAME_ALLOW_REPLACEMENT | NAME_QUEUE);
    const flags = buf.readBigUInt64LE(CMD_NAME.flags);
    const newFlags = conn.bus.names.cmdAcquire(conn, buf, CMD_NAME.items, buf.length - CMD_NAME.items, flags);
    // copy_to_user of the kernel's copy: the new flags, return_flags 0
    w.own();
    buf.writeBigUInt64LE(newFlags, CMD_NAME.flags);
    buf.writeBigUInt64LE(0n, CMD_NAME.return_flags);
    w.bytes(0, buf);
  }

  private nameRelease(conn: Connection, call: Call): void {
    if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'only ordinary connections own names');
    const { buf } = this.nameCommand(call, 0n);
    conn.bus.names.cmdRelease(conn, buf, CMD_NAME.items, buf.length - CMD_NAME.items);
  }

  private nameList(conn: Connection, call: Call): void {
    const { w, flags } = this.command(call, CMD_NAME_LIST, LIMITS.CMD_MAX_SIZE,
      NAME_LIST_UNIQUE | NAME_LIST_NAMES | NAME_LIST_ACTIVATORS | NAME_LIST_QUEUED);
    const list = conn.bus.names.list(conn, flags, conn.bus.connections.values());
    const off = this.publish(conn, list);
    w.u64(CMD_NAME_LIST.offset, BigInt(off));
    w.u64(CMD_NAME_LIST.list_size, BigInt(list.length));
    w.u64(CMD_NAME_LIST.return_flags, 0n);
  }

  /** Writes a reply into the caller's pool and hands the slice to it. */
  private publish(conn: Connection, data: Buffer): number {
    const off = conn.pool.alloc(data.length);
    conn.pool.backing.write(off, data);
    conn.pool.backing.flush(off, data.length);
    conn.pool.publish(off);
    conn.pool.release(off);
    return off;
  }

  private infoCommand(call: Call): Command {
    return this.command(call, CMD_INFO, CMD_INFO.items + LIMITS.NAME_MAX_LEN + 1, ATTACH_ALL);
  }

  private connInfo(conn: Connection, call: Call): void {
    const { buf, w } = this.infoCommand(call);
    const bus = conn.bus;
    const id = buf.readBigUInt64LE(CMD_INFO.id);
    let owner: Connection | undefined;
    if (id === 0n) {
      let name: string | null = null;
      for (const it of items(buf, CMD_INFO.items, buf.length - CMD_INFO.items)) {
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
    const info = owner.info(buf.readBigUInt64LE(CMD_INFO.flags), call.tid);
    const off = this.publish(conn, info);
    w.u64(CMD_INFO.offset, BigInt(off));
    w.u64(CMD_INFO.info_size, BigInt(info.length));
    w.u64(CMD_INFO.return_flags, 0n);
  }

  private creatorInfo(conn: Connection, call: Call): void {
    const { buf, w } = this.infoCommand(call);
    const info = conn.bus.creatorInfo(buf.readBigUInt64LE(CMD_INFO.flags), call.tid);
    const off = this.publish(conn, info);
    w.u64(CMD_INFO.offset, BigInt(off));
    w.u64(CMD_INFO.info_size, BigInt(info.length));
    w.u64(CMD_INFO.return_flags, 0n);
  }

  private connUpdate(conn: Connection, call: Call): void {
    if (!conn.isOrdinary && !conn.isPolicyHolder && !conn.isMonitor) fail(errno.EOPNOTSUPP, 'CONN_UPDATE');
    const { buf, w, itemsSize } = this.command(call, CMD_UPDATE, LIMITS.UPDATE_MAX_SIZE, 0n);
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
    w.u64(CMD_UPDATE.return_flags, 0n);
  }

  private matchAdd(conn: Connection, call: Call): void {
    if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'only ordinary connections add matches');
    const { buf, w, flags, itemsSize } = this.command(call, CMD_MATCH, LIMITS.MATCH_MAX_SIZE, MATCH_REPLACE);
    conn.matches.add(buf.readBigUInt64LE(CMD_MATCH.cookie), buf, CMD_MATCH.items, itemsSize,
      (flags & MATCH_REPLACE) !== 0n, Number(conn.bus.bloom.size));
    w.u64(CMD_MATCH.return_flags, 0n);
  }

  private matchRemove(conn: Connection, call: Call): void {
    if (!conn.isOrdinary) fail(errno.EOPNOTSUPP, 'only ordinary connections remove matches');
    const { buf, w } = this.command(call, CMD_MATCH, CMD_MATCH.items, 0n);
    conn.matches.remove(buf.readBigUInt64LE(CMD_MATCH.cookie));
    w.u64(CMD_MATCH.return_flags, 0n);
  }

  private disconnect(): void {
    const conn = this.conn;
    if (!conn || !conn.active) return;
    conn.bus.disconnect(conn);
    conn.bus.flushNotifications();
    log('conn', `bus ${sysnameShown(conn.bus.name)}: connection ${conn.id} gone`);
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
    if (!this.conn) return 0x8 | 0x10;
    return this.conn.pollMask();
  }
}
