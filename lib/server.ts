// The kdbusfs server: one FUSE session (lib/fuse/native.ts) serving one kdbus
// domain. It keeps the native file tree current, routes each open file to a
// handle and each ioctl, poll and release to it, in the order /dev/fuse
// delivered them.
import { getSystemErrorName } from 'node:util';
import { native, OPEN_POOL, POLL_SCHEDULE_NOTIFY, type Caller } from './fuse/native.js';
import { POLL } from './abi/poll.js';
import { Domain, ROOT_INO, DOMAIN_ROOT_MODE, CONTROL_MODE, type Tree } from './core/domain.js';
import { cmdName, ControlHandle, EndpointHandle, fastRows, Handle, type HandleEnv, type Parked } from './core/handle.js';
import { refusalReason } from './core/fast-state.js';
import type { Bus } from './core/bus.js';
import { FdLedger, takeCensus, type Census } from './core/census.js';
import type { Endpoint } from './core/endpoint.js';
import { errno } from './core/errors.js';
import type { PoolBacking } from './core/pool.js';
import type { InstallDone } from './core/call.js';
import { taskCreds } from './core/task.js';
import { ConfiguredBuses, type BusConfig } from './config-buses.js';
import { DEFAULT_LIMITS, type UserLimits } from './core/user.js';
import { log, logError, logRefusal } from './log.js';
import { heldBytes, MemoryGiveBack } from './memory-giveback.js';
import { gatherStats, type ServerStats } from './server-stats.js';
import { serveStats, type StatsSocket } from './stats-socket.js';

export interface ServerOptions {
  /** directory to mount the domain on (must exist) */
  mountpoint: string;
  /** passthrough pools where the kernel allows them (default true) */
  passthrough?: boolean;
  /** called once the kernel ended the session (unmounted), after the server stopped */
  onSessionEnd?: () => void;
  /** kdbusfs's own per-user limits (lib/core/user.ts; defaults: DEFAULT_LIMITS) */
  limits?: Partial<UserLimits>;
  /** serve statistics on the mount's stats socket (lib/stats-socket.ts; default true) */
  stats?: boolean;
}

const CONTROL_TAG = 1;
/** How often refusals the native fast path gave are logged, at the latest (ms). */
const FAST_LOG_MS = 200;

/** What the FileEnvs of one server share: one object per server. */
interface ServerShared {
  readonly sid: number;
  readonly fds: FdLedger;
  readonly parked: Map<number, Parked>;
  readonly pollers: Map<number, number>;
  readonly openers: Map<number, number>;
  /** the native fast path's pending counts (native/fastpath.h); null when it is off */
  readonly fastPending: Int32Array | null;
  /** applies what the fast path answered without the core */
  takeFast(): void;
}

/**
 * The services of one open file's handle (HandleEnv): one small object per
 * file, its methods shared, since every connection holds one for its life.
 */
class FileEnv implements HandleEnv {
  private lastState = -1;
  private lastMask = -1;

  constructor(private readonly s: ServerShared, private readonly fh: number) {}

  memRead(tid: number, addr: number, len: number): Buffer | number {
    return native.memRead(tid, addr, len);
  }
  memWrite(tid: number, addr: number, data: Buffer): number {
    return native.memWrite(tid, addr, data);
  }
  memReadMessage(tid: number, addr: number, first: number, table: Int32Array): Buffer | number {
    return native.memReadMessage(tid, addr, first, table);
  }
  // whose fds they are: the closer charges their closes to that uid
  takeFd(tid: number, fd: number): number {
    return this.s.fds.took(native.takeFd(tid, fd, this.s.openers.get(this.fh) ?? -1));
  }
  fdStat(fd: number): ReturnType<HandleEnv['fdStat']> {
    return native.fdStat(fd);
  }
  closeFd(fd: number): void {
    this.s.fds.released(1);
    native.closeFd(fd);
  }
  releaseFds(fds: number[]): void {
    this.s.fds.released(fds.length);
    native.releaseFds(fds);
  }
  // the native side answers the ioctl (with what done returns): it is no longer ours
  installFds(unique: number, tid: number, fds: number[], done: InstallDone): number {
    return native.fdInstall(this.s.sid, unique, tid, fds, (result, why) => {
      this.s.parked.delete(unique);
      return done(result, why);
    });
  }
  watchFd(fd: number, onReadable: () => void): number {
    return this.s.fds.watching(native.watchFd(fd, onReadable));
  }
  unwatchFd(id: number): void {
    this.s.fds.unwatched();
    native.unwatchFd(id);
  }
  replyIoctl(unique: number, result: number, out?: Buffer): void {
    this.s.parked.delete(unique);
    native.replyIoctl(this.s.sid, unique, result, out);
  }
  poolSetup(size: number): PoolBacking | number {
    const r = native.poolSetup(this.s.sid, this.fh, size);
    if (r < 0) return r;
    return this.s.fastPending ? new FastFilePool(this.s, this.fh) : new FilePool(this.s.sid, this.fh);
  }
  // The fast path's state for this file: only what changed crosses into native.
  // fh 0: the handles of configured buses (holdBuses), which no file reaches.
  publish(state: number, mask: number): void {
    if (!this.s.fastPending || this.fh === 0) return;
    if (state === this.lastState && mask === this.lastMask) return;
    this.lastState = state;
    this.lastMask = mask;
    native.fastState(this.s.sid, this.fh, state, mask, this.s.openers.get(this.fh) ?? 0);
  }
  wake(): void {
    if (this.s.fastPending) {
      native.fastWake(this.s.sid, this.fh); // the registration is the fast path's
      return;
    }
    const kh = this.s.pollers.get(this.fh);
    if (kh === undefined) return;
    // One notification per registration (as libfuse's poll handles): a
    // woken poller polls again, and so registers again, before it sleeps;
    // messages queued meanwhile cost no notification.
    this.s.pollers.delete(this.fh);
    native.notifyPoll(this.s.sid, kh);
  }
}

/** Where a connection's pool bytes go: the native pool of its file. */
class FilePool implements PoolBacking {
  constructor(protected readonly sid: number, protected readonly fh: number) {}
  write(off: number, data: Buffer): number {
    return native.poolWrite(this.sid, this.fh, off, data);
  }
  copyFromProcess(off: number, tid: number, addr: number, len: number): number {
    return native.poolCopyFromProcess(this.sid, this.fh, off, tid, addr, len);
  }
  flush(off: number, len: number): void {
    native.poolFlush(this.sid, this.fh, off, len);
  }
}

/** A pool whose slices the fast path may FREE: told which the client holds, synced before use. */
class FastFilePool extends FilePool {
  constructor(private readonly s: ServerShared, fh: number) {
    super(s.sid, fh);
  }
  held(off: number, yes: boolean): void {
    native.fastFreeable(this.sid, this.fh, off, yes);
  }
  sync(): void {
    if (this.s.fastPending![0]) this.s.takeFast();
  }
}

export class KdbusServer {
  readonly domain: Domain;
  private readonly handles = new Map<number, Handle>();
  /** poll handles (kh) of files whose pollers want a wakeup */
  private readonly pollers = new Map<number, number>();
  /** ioctls parked on their FUSE request: synchronous calls, RECVs installing fds */
  private readonly parked = new Map<number, Parked>();
  /** endpoint files by tag */
  private readonly endpoints = new Map<number, Endpoint>();
  /** fds taken from clients and fd watches, for the census */
  private readonly fds = new FdLedger();
  /** the uid that opened each file: whose share of refusal log lines its ioctls use */
  private readonly openers = new Map<number, number>();
  private onSessionEnd: (() => void) | undefined;
  private nextTag = CONTROL_TAG + 1;
  /** buses from configuration, held until stop */
  private configured: ConfiguredBuses | null = null;
  private sid = -1;
  private stopped = false;
  /** checks every second whether departed clients' memory can go back (lib/memory-giveback.ts) */
  private giveBack: NodeJS.Timeout | null = null;
  private statsSocket: StatsSocket | null = null;
  /**
   * The native fast path's counts of FREEs and refusals it answered that
   * this core has not taken yet (native/fastpath.h); null when it is off
   * (KDBUSFS_FASTPATH=0: every request comes here, as a test's reference).
   */
  private fastPending: Int32Array | null = null;
  private fastLog: NodeJS.Timeout | null = null;
  /** what every open file's FileEnv uses of this server: made once the session and the fast path are set */
  private shared!: ServerShared;

  private constructor(readonly mountpoint: string, limits: Readonly<UserLimits>) {
    const sidOf = () => this.sid;
    const tree: Tree = {
      addDir: (parent, name, mode, uid, gid) => native.nodeAdd(sidOf(), parent, name, true, mode, uid, gid, 0),
      addFile: (parent, name, mode, uid, gid, tag) => native.nodeAdd(sidOf(), parent, name, false, mode, uid, gid, tag),
      remove: (ino) => native.nodeRemove(sidOf(), ino),
    };
    this.domain = new Domain(tree, limits);
  }

  static start(opts: ServerOptions): KdbusServer {
    const server = new KdbusServer(opts.mountpoint, { ...DEFAULT_LIMITS, ...opts.limits });
    server.onSessionEnd = opts.onSessionEnd;
    // clients' fds in flight get what the server's own reserve leaves
    const nofile = native.raiseFdLimit();
    if (nofile > 0) server.domain.users.setFdLimit(nofile);
    server.sid = native.sessionMount({
      mountpoint: opts.mountpoint, fsname: 'kdbusfs', subtype: 'kdbusfs', rootMode: DOMAIN_ROOT_MODE,
      rootUid: 0, rootGid: 0, allowOther: true, defaultPermissions: true, passthrough: opts.passthrough ?? true,
    }, {
      open: (fh, tag, caller) => server.guard(() => server.open(fh, tag, caller)),
      release: (fh) => server.guard(() => { server.release(fh); return 0; }),
      // the hot path: no closure per request
      ioctl: (unique, fh, cmd, arg, tid, head, command) => {
        try {
          if (server.fastPending && (server.fastPending[0] || server.fastPending[1])) server.takeFast();
          return server.ioctl(unique, fh, cmd, arg, tid, head, command);
        } catch (e) {
          return server.internalError(e);
        }
      },
      poll: (fh, kh, flags) => server.guard(() => server.poll(fh, kh, flags)),
      interrupt: (unique) => server.parked.get(unique)?.interrupted(),
      read: () => -errno.EINVAL,
      write: () => -errno.EINVAL,
      destroyed: () => server.destroyed(),
    });
    if (server.sid < 0) {
      throw new Error(native.lastMountError() || `kdbusfs: cannot serve ${opts.mountpoint}: ${getSystemErrorName(server.sid)}`);
    }
    if (process.env.KDBUSFS_FASTPATH !== '0') {
      server.fastPending = new Int32Array(2);
      native.fastEnable(server.sid, fastRows(), server.fastPending);
      server.fastLog = setInterval(() => {
        if (server.fastPending![1]) server.guard(() => { server.takeFast(); return 0; });
      }, FAST_LOG_MS).unref();
    }
    server.shared = {
      sid: server.sid, fds: server.fds, parked: server.parked, pollers: server.pollers, openers: server.openers,
      fastPending: server.fastPending, takeFast: () => server.takeFast(),
    };
    native.nodeAdd(server.sid, ROOT_INO, 'control', false, CONTROL_MODE, 0, 0, CONTROL_TAG);
    const memory = new MemoryGiveBack(() => heldBytes(server.domain.users), () => native.giveBackMemory());
    server.giveBack = setInterval(() => memory.check(), 1000).unref();
    if (opts.stats ?? true) {
      serveStats(opts.mountpoint, () => server.stats()).then((s) => {
        if (server.stopped) s.close();
        else server.statsSocket = s;
      }, (e: Error) => logError('server', `no stats socket for ${opts.mountpoint}: ${e.message}`));
    }
    return server;
  }

  /** The kernel's INIT was answered: requests on the mount are served. */
  get served(): boolean {
    return native.sessionInfo(this.sid).protoMinor > 0;
  }

  get passthrough(): boolean {
    return native.sessionInfo(this.sid).passthrough;
  }

  /** Every live object, counted (lib/core/census.ts). */
  census(): Census {
    return takeCensus(this.domain, { handles: this.handles.values(), parked: this.parked.size,
      pollers: this.fastPending ? native.fastPollers(this.sid) : this.pollers.size,
      endpointFiles: this.endpoints.size, fds: this.fds });
  }

  /** Per bus and connection, what no kdbus ABI shows (lib/server-stats.ts). */
  stats(): ServerStats {
    return gatherStats(this.domain, this.mountpoint, this.census());
  }

  /** Makes the buses of a configuration (lib/config-buses.ts), held until stop(); all or none. */
  holdBuses(configs: BusConfig[]): void {
    this.configured = ConfiguredBuses.make(this.domain, this.env(0), (bus, ep) => this.addEndpointFile(bus, ep), configs);
  }

  /** Unmounts and tears every bus down. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.giveBack) clearInterval(this.giveBack);
    if (this.fastLog) clearInterval(this.fastLog);
    if (this.fastPending) this.takeFast();
    this.statsSocket?.close();
    for (const fh of [...this.handles.keys()]) this.release(fh);
    this.configured?.release();
    native.sessionUnmount(this.sid);
    const d = this.domain;
    if (d.buses.size || d.users.size || this.parked.size) {
      logError('server', `stopped with ${d.buses.size} buses, ${d.users.size} users, ${this.parked.size} parked calls left: a kdbusfs bug`);
    }
  }

  /**
   * What the native fast path answered without us: its FREEs applied to their
   * pools, in order, and its refusals logged as the core logs its own.
   */
  private takeFast(): void {
    const { frees, refusals } = native.fastTake(this.sid);
    for (let i = 0; i < frees.length; i += 2) this.handles.get(frees[i])?.connection()?.pool.freeByUser(frees[i + 1]);
    for (const r of refusals) {
      const why = `tid ${r.tid}: ${refusalReason(r.reason, r.flags)}`;
      for (let n = 0; n < r.count; n++) logRefusal(r.uid, cmdName(r.cmd), r.errno, why);
    }
  }

  /** Bugs must not take the server down: log them and fail only that request. */
  private guard(fn: () => number): number {
    if (this.fastPending && (this.fastPending[0] || this.fastPending[1])) this.takeFast();
    try {
      return fn();
    } catch (e) {
      return this.internalError(e);
    }
  }

  private internalError(e: unknown): number {
    logError('server', `internal error: ${(e as Error).stack ?? e}`);
    return -errno.EIO;
  }

  private env(fh: number): HandleEnv {
    return new FileEnv(this.shared, fh);
  }

  private open(fh: number, tag: number, caller: Caller): number {
    this.openers.set(fh, caller.uid);
    if (tag === CONTROL_TAG) {
      const h = new ControlHandle(this.domain, this.env(fh), (bus, ep) => this.addEndpointFile(bus, ep));
      this.handles.set(fh, h);
      h.publish();
      return 0;
    }
    const ep = this.endpoints.get(tag);
    if (!ep || !ep.active) return -errno.ESHUTDOWN;
    const privileged = EndpointHandle.privilegedAtOpen(ep, taskCreds(caller.tid));
    const h = new EndpointHandle(ep, this.env(fh), privileged, (bus, e) => this.addEndpointFile(bus, e));
    this.handles.set(fh, h);
    h.publish();
    return OPEN_POOL;
  }

  private addEndpointFile(bus: Bus, ep: Endpoint): void {
    const tag = this.nextTag++;
    this.endpoints.set(tag, ep);
    ep.ino = this.domain.tree.addFile(bus.ino, ep.name, ep.mode, ep.uid, ep.gid, tag);
    ep.onRemoved = () => {
      this.endpoints.delete(tag);
      this.domain.tree.remove(ep.ino);
    };
  }

  private release(fh: number): void {
    const h = this.handles.get(fh);
    this.handles.delete(fh);
    this.openers.delete(fh);
    this.pollers.delete(fh);
    h?.release();
    if (this.fastPending) native.fastForget(this.sid, fh);
  }

  private ioctl(unique: number, fh: number, cmd: number, arg: number, tid: number, head: Buffer,
                command: Buffer | number | null): number | undefined {
    const h = this.handles.get(fh);
    if (!h) return -errno.EBADF;
    const r = h.run({ unique, cmd, tid, uid: this.openers.get(fh) ?? -1, arg, head, command }, cmd);
    if (typeof r === 'number') return r;
    if (r !== null) this.parked.set(unique, r); // else answered already
    return undefined;
  }

  private poll(fh: number, kh: number, flags: number): number {
    const h = this.handles.get(fh);
    if (!h) return POLL.ERR;
    if (flags & POLL_SCHEDULE_NOTIFY) this.pollers.set(fh, kh);
    return h.poll();
  }

  private destroyed(): void {
    if (this.stopped) return;
    log('server', `${this.mountpoint}: the kernel ended the FUSE session`);
    this.stop();
    this.onSessionEnd?.();
  }
}
