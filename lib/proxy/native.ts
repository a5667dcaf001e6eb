// The addon's unix socket functions for the proxy (native/unixpeer.cc).
// Failures come back as a negative errno; only wrong argument types throw.
import { native } from '../fuse/native.js';

export interface UnixPeerNative {
  /** a non-blocking listening socket on a path ('@' first: abstract), or -errno */
  listen(address: string, backlog: number): number;
  /** [fd, pid, uid, gid, label] of an accepted non-blocking connection (SO_PEERCRED, SO_PEERSEC: '' for none), or -errno */
  accept(fd: number): [number, number, number, number, string] | number;
  /** [bytes, ...fds] read (0 bytes: the peer closed), or -errno */
  recv(fd: number, buf: Buffer): number[] | number;
  /** bytes sent, fds with the first of them (SCM_RIGHTS), or -errno */
  send(fd: number, buf: Buffer, fds: number[]): number;
}

export const unixPeer: UnixPeerNative = (native as unknown as { unixPeer: UnixPeerNative }).unixPeer;

export const EAGAIN = 11;
