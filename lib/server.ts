// The kdbusfs server: one FUSE session (lib/fuse/native.ts) serving one kdbus
// domain. It keeps the native file tree current, routes each open file to a
// handle and each ioctl, poll and release to it, in the order /dev/fuse
// delivered them.
import { getSystemErrorName } from 'node:util';
import { native, OPEN_POOL, POLL_SCHEDULE_NOTIFY, type Caller } from './fuse/native.js';
import { POLLERR } from './abi/poll.js';
import { Domain, ROOT_INO, DOMAIN_ROOT_MODE, CONTROL_MODE, type Tree } from './core/domain.js';
import { ControlHandle, EndpointHandle, Handle, type HandleEnv, type Parked } from './core/handle.js';
import type { Bus } from './core/bus.js';
import { FdLedger, takeCensus, type Census } from './core/census.js';
import type { Endpoint } from './core/endpoint.js';
import { errno } from './core/errors.js';
import type { PoolBacking } from './core/pool.js';
import { taskCreds } from './core/task.js';
import { ConfiguredBuses, type BusConfig } from './config-buses.js';
import { DEFAULT_LIMITS, type UserLimits } from './core/user.js';
import { log, logError } from './log.js';
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
      pollers: this.pollers.size, endpointFiles: this.endpoints.size, fds: this.fds });
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
    this.statsSocket?.close();
    for (const fh of [...this.handles.keys()]) this.release(fh);
    this.configured?.release();
    native.sessionUnmount(this.sid);
    const d = this.domain;
    if (d.buses.size || d.users.size || this.parked.size) {
      logError('server', `stopped with ${d.buses.size} buses, ${d.users.size} users, ${this.parked.size} parked calls left: a kdbusfs bug`);
    }
  }

  /** Bugs must not take the server down: log them and fail only that request. */
  private guard(fn: () => number): number {
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
    const sid = this.sid;
    return {
      memRead: native.memRead,
      memWrite: native.memWrite,
      memReadMessage: native.memReadMessage,
      takeFd: (tid, fd) => this.fds.took(native.takeFd(tid, fd)),
      fdStat: native.fdStat,
      closeFd: (fd) => {
        this.fds.released(1);
        native.closeFd(fd);
      },
      releaseFds: (fds) => {
        this.fds.released(fds.length);
        native.releaseFds(fds);
      },
      // the native side answers the ioctl (with what done returns): it is no longer ours
      installFds: (unique, tid, fds, done) => native.fdInstall(sid, unique, tid, fds, (result, why) => {
        this.parked.delete(unique);
        return done(result, why);
      }),
      watchFd: (fd, onReadable) => this.fds.watching(native.watchFd(fd, onReadable)),
      unwatchFd: (id) => {
        this.fds.unwatched();
        native.unwatchFd(id);
      },
      replyIoctl: (unique, result, out) => {
        this.parked.delete(unique);
        native.replyIoctl(sid, unique, result, out);
      },
      poolSetup: (size): PoolBacking | number => {
        const r = native.poolSetup(sid, fh, size);
        if (r < 0) return r;
        return {
          write: (off, data) => native.poolWrite(sid, fh, off, data),
          copyFromProcess: (off, tid, addr, len) => native.poolCopyFromProcess(sid, fh, off, tid, addr, len),
          flush: (off, len) => native.poolFlush(sid, fh, off, len),
        };
      },
      wake: () => {
        const kh = this.pollers.get(fh);
        if (kh === undefined) return;
        // One notification per registration (as libfuse's poll handles): a
        // woken poller polls again, and so registers again, before it sleeps;
        // messages queued meanwhile cost no notification.
        this.pollers.delete(fh);
        native.notifyPoll(sid, kh);
      },
    };
  }

  private open(fh: number, tag: number, caller: Caller): number {
    this.openers.set(fh, caller.uid);
    if (tag === CONTROL_TAG) {
      this.handles.set(fh, new ControlHandle(this.domain, this.env(fh), (bus, ep) => this.addEndpointFile(bus, ep)));
      return 0;
    }
    const ep = this.endpoints.get(tag);
    if (!ep || !ep.active) return -errno.ESHUTDOWN;
    const privileged = EndpointHandle.privilegedAtOpen(ep, taskCreds(caller.tid));
    this.handles.set(fh, new EndpointHandle(ep, this.env(fh), privileged, (bus, e) => this.addEndpointFile(bus, e)));
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
    if (!h) return POLLERR;
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
