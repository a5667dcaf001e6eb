// Where the proxy takes its clients: a unix stream socket it listens on (a
// path or an abstract name, in D-Bus address form or as a bare path), or the
// one systemd passes by socket activation (LISTEN_FDS). Each accepted
// connection comes with its peer's SO_PEERCRED and SO_PEERSEC.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { clientNative, POLL_READABLE, type PollHandle } from '../client/native.js';
import { EAGAIN, unixPeer } from './native.js';
import type { PeerCred } from './proxy-connection.js';

/** sd_listen_fds's first fd. */
export const SD_LISTEN_FDS_START = 3;
const BACKLOG = 128;
const ACCEPT_BATCH = 16;

/** A D-Bus unix address (unix:path=..., unix:abstract=...) or a bare path as the native address ('@' first: abstract). */
export function socketAddress(address: string): string {
  if (!address.startsWith('unix:')) return address;
  for (const part of address.slice(5).split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq);
    const value = decodeURIComponent(part.slice(eq + 1));
    if (key === 'path') return value;
    if (key === 'abstract') return `@${value}`;
  }
  throw new Error(`${address}: only unix:path= and unix:abstract= addresses are served`);
}

/** The address clients put in DBUS_SESSION_BUS_ADDRESS / DBUS_SYSTEM_BUS_ADDRESS. */
export function dbusAddress(socket: string): string {
  const escape = (s: string): string => s.replace(/[^A-Za-z0-9_\-/.\\]/g, c => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return socket.startsWith('@') ? `unix:abstract=${escape(socket.slice(1))}` : `unix:path=${escape(socket)}`;
}

/** The socket systemd passed (LISTEN_FDS=1 for this pid), or null. */
export function activationSocket(env: NodeJS.ProcessEnv = process.env): number | null {
  if (env.LISTEN_PID !== String(process.pid) || env.LISTEN_FDS === undefined) return null;
  const n = Number(env.LISTEN_FDS);
  if (n !== 1) throw new Error(`socket activation passed ${env.LISTEN_FDS} sockets; the proxy serves exactly one`);
  return SD_LISTEN_FDS_START;
}

export class Listener {
  private watch: PollHandle | null = null;

  private constructor(readonly fd: number, readonly socket: string | null, private readonly owned: boolean) {}

  /** Listens on `address`; a stale socket file at a path is replaced, anything else there is refused. */
  static open(address: string): Listener {
    const socket = socketAddress(address);
    if (!socket.startsWith('@')) {
      let stale = false;
      try {
        stale = lstatSync(socket).isSocket();
        if (!stale) throw new Error(`${socket} exists and is not a socket`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (stale) unlinkSync(socket);
    }
    const fd = unixPeer.listen(socket, BACKLOG);
    if (fd < 0) throw new Error(`cannot listen on ${socket} (errno ${-fd})`);
    // anyone may connect, as to dbus-daemon's socket: who may do what is the policy's and kdbus's business
    if (!socket.startsWith('@')) chmodSync(socket, 0o666);
    return new Listener(fd, socket, true);
  }

  /** The socket-activated listening socket (it may be blocking: one accept per readiness). */
  static inherited(fd: number): Listener {
    return new Listener(fd, null, false);
  }

  /** Calls onAccept for every connection until close(). */
  start(onAccept: (fd: number, peer: PeerCred) => void): void {
    const w = clientNative.pollStart(this.fd, (status, events) => {
      if (status < 0 || !(events & POLL_READABLE)) return;
      for (let i = 0; i < (this.owned ? ACCEPT_BATCH : 1); i++) {
        const r = unixPeer.accept(this.fd);
        if (typeof r === 'number') {
          if (r !== -EAGAIN) process.emitWarning(`kdbusfs proxy: accept failed (errno ${-r})`);
          return;
        }
        const [fd, pid, uid, gid, label] = r;
        onAccept(fd, { pid, uid, gid, ...(label && { label }) });
      }
    });
    if (typeof w === 'number') throw new Error(`cannot watch the listening socket (errno ${-w})`);
    this.watch = w;
  }

  close(): void {
    if (this.watch) clientNative.pollStop(this.watch);
    this.watch = null;
    clientNative.close(this.fd);
    if (this.owned && this.socket && !this.socket.startsWith('@')) {
      try { unlinkSync(this.socket); } catch { /* already gone */ }
    }
  }
}
