// Synchronous method calls (SEND with KDBUS_SEND_SYNC_REPLY): the caller's
// ioctl is parked, not answered, until the reply arrives, the deadline passes,
// its CANCEL_FD becomes readable, either side goes away, or the caller gets a
// fatal signal. Then the reply is installed in the caller's pool and the ioctl
// is answered (kdbus_conn_wait_reply).
//
// Signals: a FUSE request the server has read cannot be restarted by the
// kernel (-ERESTARTSYS is refused by /dev/fuse). A caller with a fatal signal
// pending is released at once with EINTR. Other signals do not end the call:
// their handlers run when it completes, which is what kdbus's transparent
// restart gives SA_RESTART callers. A caller that wants to abandon a call
// early uses CANCEL_FD, kdbus's mechanism for that.
import { procStatus } from './proc.js';
import { CMD_SEND, RECV_RETURN_INCOMPLETE_FDS } from '../abi/kdbus.js';
import { errno, KdbusError } from './errors.js';
import { monotonicNs, replyUnlink, type Reply, type SyncWaiter } from './reply.js';
import type { Connection, PendingInstall, Received } from './connection.js';
import type { QueueEntry } from './message.js';

/**
 * The end of an fd install (native fdInstall): the receiver's fd numbers
 * (-errno for those that failed), or a negative errno when nothing was
 * installed (why says why). Returns the ioctl's result.
 */
export type InstallDone = (result: number[] | number, why?: string) => number;

/** What finishing a call needs from the handle that parked it. */
export interface ParkedIoctl {
  /** writes a u64 into the caller's command (flushed by answer) */
  writeU64(off: number, v: bigint): void;
  /** flushes the command write-back and answers the parked ioctl */
  answer(result: number): void;
  /**
   * Installs fds in the caller, then calls done and answers the ioctl with
   * its result, the command write-back flushed. 0, or -errno if it could not
   * start (the ioctl is then still parked).
   */
  installFds(fds: number[], done: InstallDone): number;
}

/** Fd watching (native watchFd) for CANCEL_FD. */
export interface FdWatcher {
  watchFd(fd: number, onReadable: () => void): number;
  unwatchFd(id: number): void;
  /** Closes fds taken from a client, off the loop thread (a close runs the file's flush). */
  releaseFds(fds: number[]): void;
}

const SIGKILL_BIT = 1n << 8n;
const FATAL_POLL_MS = 20;

export class SyncCall implements SyncWaiter {
  private timer: NodeJS.Timeout | null = null;
  private fatalPoll: NodeJS.Timeout | null = null;
  private watch = -1;
  private done = false;

  private reply: Reply | null = null;

  constructor(readonly unique: number, private readonly conn: Connection, private readonly tid: number,
              private readonly ioctl: ParkedIoctl, private readonly cancelFd: number,
              private readonly fds: FdWatcher) {}

  /** Parks on reply until the deadline (absolute CLOCK_MONOTONIC ns) or a wakeup. */
  start(reply: Reply, deadlineNs: bigint): void {
    this.reply = reply;
    const ms = Number((deadlineNs - monotonicNs()) / 1_000_000n);
    this.timer = setTimeout(() => this.end(errno.ETIMEDOUT, null), Math.max(ms, 0) + 1);
    if (this.cancelFd >= 0) {
      const id = this.fds.watchFd(this.cancelFd, () => this.end(errno.ECANCELED, null));
      if (id >= 0) this.watch = id;
    }
  }

  /** The reply arrived (entry), or the call failed (err). */
  wake(err: number, entry: QueueEntry | null): void {
    this.end(err, entry);
  }

  /** FUSE_INTERRUPT: release a dying caller now; otherwise keep waiting, but watch for one. */
  interrupted(): void {
    // ended already: a reply with fds is being installed (which interrupts the caller itself)
    if (this.done) return;
    if (this.fatalSignalPending()) {
      this.end(errno.EINTR, null);
      return;
    }
    // a SIGKILL after this one brings no second INTERRUPT: look for it
    this.fatalPoll ??= setInterval(() => {
      if (this.fatalSignalPending()) this.end(errno.EINTR, null);
    }, FATAL_POLL_MS);
  }

  private fatalSignalPending(): boolean {
    const status = procStatus(this.tid);
    if (status === null) return true; // gone already
    return ((status.mask('ShdPnd') | status.mask('SigPnd')) & SIGKILL_BIT) !== 0n;
  }

  private end(err: number, entry: QueueEntry | null): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.fatalPoll) clearInterval(this.fatalPoll);
    if (this.watch >= 0) this.fds.unwatchFd(this.watch);
    if (this.cancelFd >= 0) this.fds.releaseFds([this.cancelFd]);
    if (this.reply) {
      this.reply.syncWaiter = null;
      replyUnlink(this.reply);
    }

    let result = -err;
    if (!err && !this.conn.active) result = -errno.ECONNRESET;
    if (result === 0 && entry && entry.kmsg.installCount > 0) {
      result = this.installWithFds(entry);
      if (result === 0) { // answered once the fds are in
        this.conn.bus.flushNotifications();
        return;
      }
    } else if (result === 0 && entry) {
      result = this.install(entry);
    } else if (entry) {
      this.conn.discard(entry);
    }
    this.ioctl.answer(result);
    this.conn.bus.flushNotifications();
  }

  /**
   * A reply with fds (or memfds): they are installed in the caller as at
   * RECV, then the reply is handed over. If they cannot be (the caller is
   * traced or under seccomp...), the SEND fails with that errno and the reply
   * is lost: there is no queue to keep it in. Returns 0 once started, or -errno.
   */
  private installWithFds(entry: QueueEntry): number {
    let p: PendingInstall;
    try {
      p = this.conn.beginInstall(entry, this.tid, false);
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      this.conn.discard(entry);
      return -e.errno;
    }
    try {
      this.conn.installThen(p, (fds, done) => this.ioctl.installFds(fds, done), (reply) => {
        this.answered(reply);
        return 0;
      });
      return 0;
    } catch (e) { // it could not start: the reply is dropped already
      if (!(e instanceof KdbusError)) throw e;
      return -e.errno;
    }
  }

  /** The reply into the caller's pool, its place written into cmd->reply. */
  private install(entry: QueueEntry): number {
    try {
      this.answered(this.conn.handOver(entry, true, false, this.tid));
      return 0;
    } catch (e) {
      if (!(e instanceof KdbusError)) throw e;
      this.conn.discard(entry);
      return -e.errno;
    }
  }

  /** Where the reply went, into the caller's cmd->reply. */
  private answered(reply: Received): void {
    this.ioctl.writeU64(CMD_SEND.return_flags, 0n);
    this.ioctl.writeU64(CMD_SEND.reply_offset, BigInt(reply.off));
    this.ioctl.writeU64(CMD_SEND.reply_msg_size, BigInt(reply.size));
    this.ioctl.writeU64(CMD_SEND.reply_return_flags, reply.incomplete ? RECV_RETURN_INCOMPLETE_FDS : 0n);
  }
}
