// The native addon's surface: the FUSE session on /dev/fuse, the file tree it
// answers from, caller memory access and per-connection pools. Everything kdbus
// lives in TypeScript; this file is the whole contract between the two.
//
// How native calls fail (one convention for all of them):
// - A failure caused by a client or by the system (a bad address, a thread
//   that is gone, a full fd table, a refused mount) is returned, never thrown:
//   a call that yields a number returns it (>= 0: 0, a count, an fd, an id)
//   or a negative errno; a call that yields data (memRead, fdStat) returns
//   the data or a negative errno, so `typeof r === 'number'` is the failure.
//   Callbacks into native code (FdInstallDone, SessionHandlers) answer the
//   same way.
// - A throw (TypeError, RangeError, Error) is a bug in the server's own code:
//   an argument of the wrong type or range, a session, node or pool the server
//   does not have, a byte range outside a pool it sized itself.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastRow } from '../core/fast-state.js';

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
   * part the kernel copied (_IOC_SIZE(cmd) bytes), or, when the whole command
   * fitted in it, the command Buffer itself (one allocation instead of two).
   * For kdbus commands (type 0x95, head >= 8 bytes, arg 8-aligned) the native side reads the u64 size at the head's start and, when
   * 8 <= size <= MAX_COMMAND_READ, reads the whole command from the caller
   * (through the memory task, as memRead): cmd is then that Buffer, or a negative errno if the read
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
  /**
   * The mount's device number ((major << 20) | minor, as fdStat's dev), the
   * same in every mount namespace and bind mount; 0 if it was not found.
   */
  dev: number;
}

/** What fdStat tells of an fd the server holds. */
export interface FdFacts {
  /** memfd seals (F_GET_SEALS), -1 if not a memfd (or O_PATH) */
  seals: number;
  size: number;
  /** st_mode */
  mode: number;
  /** the file system's device ((major << 20) | minor) and inode number */
  dev: number;
  ino: number;
  /** opened with O_PATH */
  pathOnly: boolean;
  /** a socket's SO_DOMAIN (AF_UNIX = 1...), -1 for other files and O_PATH sockets */
  domain: number;
  /** a file of a mount one of this process's sessions serves: a kdbus handle */
  kdbus: boolean;
}

/**
 * The end of fdInstall, on the event loop: `result` is one number per fd (the
 * receiver's fd number, or -errno for an fd that could not be installed), or a
 * negative errno when nothing was installed (`why` then says why, for a log
 * line). Returns the ioctl's result (0 or -errno), which the native side
 * delivers. Must not throw (a throw counts as -EIO).
 */
export type FdInstallDone = (result: number[] | number, why?: string) => number;

/** A refusal the fast path gave, count times (reason: lib/core/fast-state.ts refusalReason). */
export interface FastRefusal {
  uid: number;
  cmd: number;
  tid: number;
  errno: number;
  reason: number;
  flags: bigint;
  count: number;
}

export interface Native {
  /**
   * Opens /dev/fuse, mounts, starts a watchdog process that detaches the mount
   * if this process dies, and starts serving on the event loop. Returns a
   * session id (> 0), or -errno when the system refuses (lastMountError then
   * says why in one line).
   */
  sessionMount(opts: MountOptions, handlers: SessionHandlers): number;
  /** Why the last refused sessionMount failed: "kdbusfs: mounting fuse.kdbusfs on DIR failed: ...". */
  lastMountError(): string;
  sessionInfo(sid: number): SessionInfo;
  /**
   * Detaches the mount (MNT_DETACH), stops serving, closes /dev/fuse and frees
   * every pool. Idempotent. No handler is called (release is not called for
   * files still open): the caller knows the session is gone.
   */
  sessionUnmount(sid: number): void;
  /** If dir is a dead FUSE mount (ENOTCONN), detach it. Returns true if it did. */
  clearStaleMount(dir: string): boolean;
  /** execv(2): this process becomes path with argv (pid and stdio kept). Returns -errno on failure only. */
  execSelf(path: string, argv: string[]): number;

  /**
   * The tree. Root is ino 1. Nodes are answered natively (LOOKUP, GETATTR, READDIR...).
   * name is a byte string, one char per byte (kdbus names are bytes); a char above 0xFF throws.
   * Returns the new node's ino. The core checks names and uniqueness first, so
   * a name the tree refuses throws (an Error whose code is the errno name:
   * EEXIST, EINVAL).
   */
  nodeAdd(sid: number, parent: number, name: string, isDir: boolean,
          mode: number, uid: number, gid: number, tag: number): number;
  /** Unlinks a node (and, for a directory, everything below it). Later LOOKUPs get ENOENT. */
  nodeRemove(sid: number, ino: number): void;

  /**
   * Answers a parked ioctl. result >= 0, or a negative errno. Returns false
   * (and does nothing) if unique is not parked: already answered, or the
   * session ended. out (a success only, at most the ioctl's _IOC_SIZE bytes,
   * _IOC_READ commands only): bytes the kernel copies to the start of the
   * caller's argument.
   */
  replyIoctl(sid: number, unique: number, result: number, out?: Buffer): boolean;
  /** Wakes a poller (FUSE_NOTIFY_POLL). */
  notifyPoll(sid: number, kh: number): void;

  /**
   * The fast path (native/fastpath.h): trivial ioctls and every POLL answered
   * natively from what the core publishes (lib/core/fast-state.ts). pending
   * gets the counts of FREEs [0] and refusals [1] answered and not taken yet.
   */
  fastEnable(sid: number, rows: FastRow[], pending: Int32Array): void;
  /** fh's state bits and poll mask; uid: whose refusals these are (its opener). */
  fastState(sid: number, fh: number, state: number, pollMask: number, uid: number): void;
  fastForget(sid: number, fh: number): void;
  /** offset of fh's pool is held by the client (a FREE of it may be answered natively), or not any more. */
  fastFreeable(sid: number, fh: number, offset: number, held: boolean): void;
  /** Wakes fh's poller if one registered (FUSE_NOTIFY_POLL, once per registration). */
  fastWake(sid: number, fh: number): void;
  /** FREEs answered natively ([fh, offset, ...], in order) and refusals given, since the last call. */
  fastTake(sid: number): { frees: number[]; refusals: FastRefusal[] };
  /** Files whose pollers wait for a wakeup (for the census). */
  fastPollers(sid: number): number;

  /**
   * process_vm_readv from the caller, made by the memory task
   * (native/memtask.h): memory that does not come in within its bound is
   * -EFAULT, as unmapped memory is. Returns the bytes or a negative errno.
   */
  memRead(tid: number, addr: number, len: number): Buffer | number;
  /** process_vm_writev to the caller, as memRead. Returns 0 or a negative errno (-EFAULT on a short write). */
  memWrite(tid: number, addr: number, data: Buffer): number;
  /**
   * A SEND's message and the PAYLOAD_VEC data it names in one hand-off to the
   * memory task (native/memtask.h ReadMessage; lib/core/message.ts FdAccess).
   */
  memReadMessage(tid: number, addr: number, first: number, table: Int32Array): Buffer | number;

  /** Sizes fh's pool (ftruncate + server-side mmap) and releases its backing id. 0 or -errno. */
  poolSetup(sid: number, fh: number, size: number): number;
  /**
   * Copies data into fh's pool at offset. This and the other pool calls below
   * throw a RangeError for a range outside the pool, and an Error if fh has no
   * pool set up: the server sized the pool and places every slice in it, so
   * either is a bug of the server, not of the client.
   */
  poolWrite(sid: number, fh: number, offset: number, data: Buffer): number;
  /** Copies len bytes from the caller's memory straight into fh's pool (one copy, as memRead). 0 or -errno. */
  poolCopyFromProcess(sid: number, fh: number, offset: number, tid: number,
                      addr: number, len: number): number;
  /** Makes [offset, offset+len) of fh's pool visible to the client (NOTIFY_STORE in page-cache mode). */
  poolFlush(sid: number, fh: number, offset: number, len: number): void;

  /**
   * pidfd_open(tid, PIDFD_THREAD) + pidfd_getfd: a copy of the caller's fd
   * (O_CLOEXEC), or -errno. Its closes (releaseFds) and its copies' are
   * charged to uid (-1: nobody's), at most a few of that uid's at a time.
   */
  takeFd(tid: number, fd: number, uid?: number): number;
  /**
   * Facts about an fd the server holds, or -errno. Never blocks on a FUSE
   * server (statx with AT_STATX_DONT_SYNC): the fd may be a file of a mount
   * this very thread serves, which fstat would deadlock on.
   */
  fdStat(fd: number): FdFacts | number;
  /** close(2), now, on this thread. For fds taken from clients, see releaseFds. */
  closeFd(fd: number): void;
  /**
   * Closes fds on a helper thread, in the background. A close(2) runs the
   * file's flush: on a file of another FUSE mount it waits for that server
   * (a client could pass one that never answers), on a kdbusfs file for this
   * very loop. The kernel's kdbus dropped files with fput, which never did.
   */
  releaseFds(fds: number[]): void;
  /** RLIMIT_NOFILE's soft limit raised to the hard one; the soft limit in force, or -errno. */
  raiseFdLimit(): number;
  /** A full garbage collection, then free heap memory returned to the system (blocks for the collection). */
  giveBackMemory(): void;

  /**
   * Installs copies of fds (fds the server holds; duplicated at the call, the
   * caller may close its own at once) in the process of thread tid, whose
   * ioctl `unique` of session sid is parked and must stay so: from now on the
   * native side answers it, never the caller (replyIoctl would find it gone
   * or race). They land as kdbus's get_unused_fd_flags(O_CLOEXEC) would put
   * them: at the lowest free numbers, in the given order, close-on-exec.
   *
   * How (native/fdinstall.cc): a tracer task of its own (it shares this
   * process's memory but not its thread group, so that libuv's waitpid on
   * child processes never takes a ptrace stop) checks tid (not traced
   * already, no seccomp filter, in ioctl(2)), seizes and interrupts it; the
   * ioctl is answered (0) on the loop thread; tid stops before it returns to
   * user space; if it returns from an ioctl entered by a 64-bit `syscall`
   * instruction, it is made to run socketpair, fcntl(F_DUPFD_CLOEXEC),
   * close_range, recvmsg(SCM_RIGHTS) and close at that instruction, every
   * signal blocked meanwhile (about 200 us, 11 ptrace stops). Then done runs
   * on the loop thread while tid is still stopped: it writes the message with
   * the fd numbers into the pool and the results into the caller's command
   * (memWrite works on a stopped thread), and returns the ioctl's result,
   * which becomes the syscall's return value (when it is negative, the fds
   * are closed in tid first). Registers and signal mask are restored and tid
   * detached: it returns from its ioctl as if kdbus had done it all.
   *
   * When nothing could be done to tid (traced: EPERM; under seccomp: EPERM;
   * gone: ESRCH; not at a 64-bit `syscall`: EIO; any ptrace failure: its
   * errno), done gets a negative errno and the ioctl gets done's result, tid
   * otherwise untouched (when this is found at the stop, the result becomes
   * the syscall's return value there). An fd that does not fit (the receiver
   * at RLIMIT_NOFILE: one fewer fits than in kdbus, the socket needs a slot
   * during the transfer) reads -EMFILE in result.
   *
   * done is called exactly once, never synchronously. Returns 0, or -errno if
   * the install could not start (no such session: -ESHUTDOWN; done is then
   * never called and the ioctl is still parked). Throws a TypeError or
   * RangeError for bad arguments (1 to 1024 fds, each >= 0). x86-64 only
   * (elsewhere done gets -EOPNOTSUPP). Set KDBUSFS_FDINSTALL_TRACE=1 for a
   * timing line per install on stderr.
   */
  fdInstall(sid: number, unique: number, tid: number, fds: number[], done: FdInstallDone): number;
  /** Calls onReadable once, on the event loop, when fd (held by the server) becomes readable. Returns a watch id or -errno. */
  watchFd(fd: number, onReadable: () => void): number;
  /** Ends a watch, fired or not. */
  unwatchFd(id: number): void;

  /** send(fd, data, MSG_DONTWAIT | MSG_NOSIGNAL) on a socket: bytes sent or -errno (-EAGAIN: the reader is behind). */
  sendDontWait(fd: number, data: Buffer): number;
  /** One datagram to the unix socket at path ('@' first: abstract), without waiting: 0 or -errno. */
  datagramSend(path: string, data: Buffer): number;
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
