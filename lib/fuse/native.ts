// The native addon's surface: the FUSE session on /dev/fuse, the file tree it
// answers from, caller memory access and per-connection pools. Everything kdbus
// lives in TypeScript; this file is the whole contract between the two.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Identity of the thread that made a FUSE request (from fuse_in_header). */
export interface Caller {
  /** Caller's thread id, in the server's pid namespace. */
  tid: number;
  /** Caller's fsuid / fsgid, mapped into the mount's user namespace. */
  uid: number;
  gid: number;
}

/** Values an open handler may return (or-ed), or a negative errno. */
export const OPEN_POOL = 1;      // give this open its own pool (passthrough memfd or page cache)
export const OPEN_DIRECT_IO = 2; // reads and writes always reach the server (live parameter files)

/**
 * Callbacks the native loop makes, synchronously, on the thread that runs the
 * event loop, one request at a time in the order /dev/fuse delivered them.
 * None may throw: the server wraps them (a throw is answered with -EIO).
 */
export interface SessionHandlers {
  /** OPEN of a file node made with nodeAdd(..., tag). fh is unique per session. */
  open(fh: number, tag: number, caller: Caller, flags: number): number;
  /** Last close of fh (FUSE_RELEASE). Pool resources are freed after this returns. */
  release(fh: number): void;
  /**
   * An ioctl on fh by thread tid (the caller's thread id in the server's pid
   * namespace; a plain number, as this is the hot path). head is the fixed
   * part the kernel copied (_IOC_SIZE(cmd) bytes). For kdbus commands (type 0x95, head >= 8 bytes, arg 8-aligned) the
   * native side reads the u64 size at the head's start and, when
   * 8 <= size <= MAX_COMMAND_READ, reads the whole command from the caller with
   * process_vm_readv: cmd is then that Buffer, or a negative errno if the read
   * failed; otherwise cmd is null.
   * Return a result >= 0 or a negative errno to answer now, or undefined to
   * park the request and answer later with replyIoctl(sid, unique, ...).
   */
  ioctl(unique: number, fh: number, cmd: number, arg: number, tid: number,
        head: Buffer, command: Buffer | number | null): number | undefined;
  /**
   * FUSE_POLL. When flags has POLL_SCHEDULE_NOTIFY, kh must be passed to
   * notifyPoll() once fh becomes ready. Returns the ready mask (POLLIN...).
   */
  poll(fh: number, kh: number, flags: number, events: number): number;
  /** FUSE_INTERRUPT for a request still parked (unique of that request). */
  interrupt(unique: number, caller: Caller): void;
  /** READ/WRITE on files opened with OPEN_DIRECT_IO. Return data / count or -errno. */
  read(fh: number, offset: number, size: number): Buffer | number;
  write(fh: number, offset: number, data: Buffer): number;
  /** The kernel ended the session (DESTROY, unmount, or /dev/fuse closed). */
  destroyed(): void;
}

export const POLL_SCHEDULE_NOTIFY = 1;
export const MAX_COMMAND_READ = 64 * 1024;

export interface MountOptions {
  mountpoint: string;
  /** mount source shown in /proc/mounts ("kdbusfs") and subtype ("kdbusfs" -> fuse.kdbusfs) */
  fsname: string;
  subtype: string;
  rootMode: number;   // e.g. 0o755
  rootUid: number;
  rootGid: number;
  allowOther: boolean;
  defaultPermissions: boolean;
  /** Try FUSE passthrough pools; falls back to page-cache pools when refused. */
  passthrough: boolean;
}

export interface SessionInfo {
  /** Kernel FUSE protocol minor version from INIT (0 until INIT was answered). */
  protoMinor: number;
  /** Pools use passthrough memfds (true) or the page cache with NOTIFY_STORE (false). */
  passthrough: boolean;
}

export interface Native {
  /**
   * Opens /dev/fuse, mounts, starts a watchdog process that detaches the mount
   * if this process dies, and starts serving on the event loop. Returns a
   * session id. Throws an Error with a clear message on failure.
   */
  sessionMount(opts: MountOptions, handlers: SessionHandlers): number;
  sessionInfo(sid: number): SessionInfo;
  /**
   * Detaches the mount (MNT_DETACH), stops serving, closes /dev/fuse and frees
   * every pool. Idempotent. No handler is called (release is not called for
   * files still open): the caller knows the session is gone.
   */
  sessionUnmount(sid: number): void;
  /** If dir is a dead FUSE mount (ENOTCONN), detach it. Returns true if it did. */
  clearStaleMount(dir: string): boolean;

  /** The tree. Root is ino 1. Nodes are answered natively (LOOKUP, GETATTR, READDIR...). */
  nodeAdd(sid: number, parent: number, name: string, isDir: boolean,
          mode: number, uid: number, gid: number, tag: number): number;
  /** Unlinks a node (and, for a directory, everything below it). Later LOOKUPs get ENOENT. */
  nodeRemove(sid: number, ino: number): void;
  nodeSetAttr(sid: number, ino: number, mode: number, uid: number, gid: number): void;

  /**
   * Answers a parked ioctl. result >= 0, or a negative errno. Returns false
   * (and does nothing) if unique is not parked: already answered, or the
   * session ended.
   */
  replyIoctl(sid: number, unique: number, result: number): boolean;
  /** Wakes a poller (FUSE_NOTIFY_POLL). */
  notifyPoll(sid: number, kh: number): void;

  /** process_vm_readv from the caller. Returns the bytes or a negative errno. */
  memRead(tid: number, addr: number, len: number): Buffer | number;
  /** process_vm_writev to the caller. Returns 0 or a negative errno (-EFAULT on a short write). */
  memWrite(tid: number, addr: number, data: Buffer): number;

  /** Sizes fh's pool (ftruncate + server-side mmap) and releases its backing id. 0 or -errno. */
  poolSetup(sid: number, fh: number, size: number): number;
  /**
   * Copies data into fh's pool at offset. This and the other pool calls below
   * throw a RangeError for a range outside the pool, and an Error if fh has no
   * pool set up: those are bugs of the caller, not of the client.
   */
  poolWrite(sid: number, fh: number, offset: number, data: Buffer): void;
  /** Copies len bytes from the caller's memory straight into fh's pool (one copy). 0 or -errno. */
  poolCopyFromProcess(sid: number, fh: number, offset: number, tid: number,
                      addr: number, len: number): number;
  /** Copies len bytes from an fd the server holds (pread at fdOffset) into fh's pool. 0 or -errno. */
  poolCopyFromFd(sid: number, fh: number, offset: number, fd: number,
                 fdOffset: number, len: number): number;
  /** Copies len bytes from srcFh's pool at srcOffset into fh's pool at offset. 0 or -errno. */
  poolCopyFromPool(sid: number, fh: number, offset: number, srcFh: number, srcOffset: number, len: number): number;
  /** Makes [offset, offset+len) of fh's pool visible to the client (NOTIFY_STORE in page-cache mode). */
  poolFlush(sid: number, fh: number, offset: number, len: number): void;

  /** pidfd_open(tid, PIDFD_THREAD) + pidfd_getfd: a copy of the caller's fd, or -errno. */
  takeFd(tid: number, fd: number): number;
  /** Facts about an fd the server holds: memfd seals (F_GET_SEALS, -1 if not a memfd), size, and st_mode. */
  fdStat(fd: number): { seals: number; size: number; mode: number } | number;
  closeFd(fd: number): void;
  /** Calls onReadable once, on the event loop, when fd (held by the server) becomes readable. Returns a watch id or -errno. */
  watchFd(fd: number, onReadable: () => void): number;
  /** Ends a watch, fired or not. */
  unwatchFd(id: number): void;
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function loadNative(): Native {
  // dist/lib/fuse -> project root, or lib/fuse when run from source
  for (const up of ['../../..', '../..']) {
    try {
      return require(join(here, up, 'build/Release/kdbusfs_native.node')) as Native;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  throw new Error('kdbusfs native addon not built: run `npm install` (node-gyp rebuild)');
}

export const native: Native = loadNative();
