// Where log lines go: stderr, written so that a slow or stuck reader can never
// block the server nor make it keep lines in memory. A line that cannot be
// written at once is dropped and counted; the count is written, as a line of
// its own, before the next line that gets through.
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';

/** Writes data without waiting: bytes written or -errno (-EAGAIN when the reader is behind). */
export type NonBlockingWrite = (data: Buffer) => number;

const EAGAIN = 11;

function errnoOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).errno;
  return typeof code === 'number' ? code : -EAGAIN; // Node's errnos are negative already
}

/**
 * A non-blocking write to fd 2 without changing fd 2 itself (its open file
 * description is shared with whoever gave it to us: setting O_NONBLOCK on it
 * would surprise them). A pipe or terminal is opened anew, non-blocking,
 * through /proc/self/fd/2; a socket (the journal's stream) is written with
 * send(MSG_DONTWAIT) once the native addon provides that (sendOnSocket);
 * until then, and for regular files (which do not stall on a reader),
 * writes go to fd 2 directly.
 */
export class StderrWriter {
  private fd = 2;
  private ownFd = false;
  readonly socket: boolean;

  constructor(private sendOnSocket: ((fd: number, data: Buffer) => number) | null = null) {
    let st;
    try {
      st = fstatSync(2);
    } catch {
      this.socket = false;
      return;
    }
    this.socket = st.isSocket();
    if (st.isFIFO() || st.isCharacterDevice()) {
      try {
        this.fd = openSync('/proc/self/fd/2', constants.O_WRONLY | constants.O_NONBLOCK);
        this.ownFd = true;
      } catch {
        // /proc missing: fd 2 as it is (it may block). (libuv opens close-on-exec.)
      }
    }
  }

  /** Gives sockets their non-blocking send (the native addon's, loaded after the log). */
  useSocketSend(send: (fd: number, data: Buffer) => number): void {
    this.sendOnSocket = send;
  }

  readonly write: NonBlockingWrite = (data) => {
    if (this.socket && this.sendOnSocket) return this.sendOnSocket(this.fd, data);
    try {
      return writeSync(this.fd, data);
    } catch (e) {
      return errnoOf(e);
    }
  };

  close(): void {
    if (this.ownFd) closeSync(this.fd);
    this.ownFd = false;
    this.fd = 2;
  }
}

/**
 * Whole lines onto a NonBlockingWrite. A line the reader has no room for is
 * dropped and counted; a line written only in part keeps its rest (one line,
 * no more) to finish before anything else goes out, so lines never mix.
 */
export class LineWriter {
  private rest: Buffer | null = null;
  private dropped = 0;

  constructor(private readonly out: NonBlockingWrite,
              private readonly droppedLine: (n: number) => string) {}

  /** Lines dropped since the last report. */
  get pendingDrops(): number {
    return this.dropped;
  }

  /** Writes line (ending in '\n') now, or drops it. Returns whether it went out. */
  write(line: string): boolean {
    if (!this.finishRest()) {
      this.dropped++;
      return false;
    }
    if (this.dropped > 0) {
      const report = Buffer.from(this.droppedLine(this.dropped));
      if (!this.put(report)) {
        this.dropped++;
        return false;
      }
      this.dropped = 0;
      if (!this.finishRest()) {
        this.dropped++;
        return false;
      }
    }
    if (this.put(Buffer.from(line))) return true;
    this.dropped++;
    return false;
  }

  /** Retries a partly written line and reports drops (a timer calls this when lines are few). */
  flush(): void {
    if (!this.finishRest() || this.dropped === 0) return;
    if (this.put(Buffer.from(this.droppedLine(this.dropped)))) this.dropped = 0;
  }

  /** Writes data; true if all of it or some of it went out (the rest is kept), false if none did. */
  private put(data: Buffer): boolean {
    const n = this.out(data);
    if (n <= 0) return false;
    if (n < data.length) this.rest = data.subarray(n);
    return true;
  }

  private finishRest(): boolean {
    while (this.rest) {
      const n = this.out(this.rest);
      if (n <= 0) return false;
      this.rest = n < this.rest.length ? this.rest.subarray(n) : null;
    }
    return true;
  }
}
