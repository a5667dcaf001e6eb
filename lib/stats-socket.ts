// The stats socket: a unix stream socket per mount where the running server
// hands out its statistics (lib/server-stats.ts) as one JSON line to every
// client that connects, then closes. It lives at
//   /run/kdbusfs-stats/<mountpoint escaped as systemd-escape --path>.sock
// (e.g. sys-fs-kdbus.sock; a path too long for a socket address becomes
// h-<sha256 of the mountpoint, 32 hex digits>.sock), in a directory only root
// may enter, itself mode 0600: root only. The directory is kdbusfs's own, apart
// from /run/kdbusfs (which the default mount removes at exit): the last server
// out removes it, and a starting server removes the sockets of servers that
// were killed (nobody listens there any more). The server never waits for a
// client: the answer is queued at once and a client that has not taken it
// within the deadline, or that comes while too many others have not taken
// theirs, is dropped; one whose answer is written costs nothing more.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

export const STATS_DIR = '/run/kdbusfs-stats';
/** clients served at once; more are dropped at connect */
const MAX_CLIENTS = 16;
/** how long a client has to take its answer */
const CLIENT_DEADLINE_MS = 5000;
/** sun_path holds 108 bytes with the terminating NUL */
const MAX_SOCKET_PATH = 107;

/** systemd-escape --path: no leading or trailing slash, '/' as '-', anything unusual as \xNN. */
export function escapePath(path: string): string {
  const trimmed = path.replace(/\/+/g, '/').replace(/^\/|\/$/g, '');
  if (trimmed === '') return '-';
  let out = '';
  const bytes = Buffer.from(trimmed, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    const ch = String.fromCharCode(c);
    if (ch === '/') out += '-';
    else if (/[A-Za-z0-9:_]/.test(ch) || (ch === '.' && i > 0)) out += ch;
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Where the server of the mount at `mountpoint` (an absolute path) serves its statistics. */
export function statsSocketPath(mountpoint: string, dir = STATS_DIR): string {
  const plain = join(dir, `${escapePath(mountpoint)}.sock`);
  if (Buffer.byteLength(plain) <= MAX_SOCKET_PATH) return plain;
  return join(dir, `h-${createHash('sha256').update(mountpoint).digest('hex').slice(0, 32)}.sock`);
}

/** The directory, made root's alone (0700) if it is not already. */
function prepareDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== 0) chownSync(dir, 0, 0);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/** Removes the sockets in dir (but ours) that nobody listens on: their servers were killed. */
function sweepStale(dir: string, ours: string): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.sock'));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    if (path === ours) continue;
    const probe = connect(path);
    probe.on('connect', () => probe.destroy());
    probe.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNREFUSED') return;
      try {
        unlinkSync(path);
      } catch { /* gone meanwhile */ }
    });
  }
}

export interface StatsSocket {
  readonly path: string;
  /** Stops serving and removes the socket. Idempotent. */
  close(): void;
}

/** Serves snapshot() (as JSON) at statsSocketPath(mountpoint) until close() or exit. */
export async function serveStats(mountpoint: string, snapshot: () => unknown, dir = STATS_DIR): Promise<StatsSocket> {
  const path = statsSocketPath(mountpoint, dir);
  prepareDir(dir);
  try {
    unlinkSync(path); // a server killed earlier left it: the mount is ours now
  } catch { /* none */ }
  const clients = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: false }, (sock) => {
    sock.on('error', () => sock.destroy());
    if (clients.size >= MAX_CLIENTS) {
      sock.destroy();
      return;
    }
    clients.add(sock);
    sock.on('close', () => clients.delete(sock));
    const deadline = setTimeout(() => sock.destroy(), CLIENT_DEADLINE_MS);
    deadline.unref();
    sock.on('close', () => clearTimeout(deadline));
    // nothing is read from the client: what it writes is thrown away
    sock.on('data', () => undefined);
    let answer: string;
    try {
      answer = `${JSON.stringify(snapshot())}\n`;
    } catch (e) {
      answer = `${JSON.stringify({ error: (e as Error).message })}\n`;
    }
    // once the answer is in the kernel's hands (a unix socket keeps it for the
    // reader after we close), the client costs the server nothing more
    sock.on('finish', () => sock.destroy());
    sock.end(answer);
  });
  server.unref();
  let closed = false;
  const removeFile = (): void => {
    try {
      unlinkSync(path);
    } catch { /* already gone */ }
    try {
      rmdirSync(dir); // the last server out leaves nothing behind
    } catch { /* other mounts' sockets are there */ }
  };
  const close = (): void => {
    if (closed) return;
    closed = true;
    process.removeListener('exit', removeFile);
    for (const c of clients) c.destroy();
    server.close();
    removeFile();
  };
  const listen = (): Promise<void> => new Promise((ok, fail) => {
    const onError = (e: Error): void => {
      server.removeListener('listening', onListening);
      fail(e);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      ok();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(path);
  });
  try {
    await listen();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    // the last other server removed the directory between our mkdir and bind
    prepareDir(dir);
    await listen();
  }
  try {
    chmodSync(path, 0o600);
  } catch (e) {
    close();
    throw e;
  }
  process.on('exit', removeFile);
  sweepStale(dir, path);
  return { path, close };
}
