// The addon's client functions (native/client.cc): the whole contract
// between the client library and native code. Failures come back as a
// negative errno; only wrong argument types throw.
import { native } from '../fuse/native.js';

/** A libuv poll watch (opaque). */
export type PollHandle = object & { readonly __pollHandle: unique symbol };

/** uv_poll event bits passed to a watch's callback. */
export const POLL_READABLE = 1;
export const POLL_DISCONNECT = 4;

export interface ClientNative {
  /** open(path, O_RDWR | O_CLOEXEC): fd or -errno */
  open(path: string): number;
  close(fd: number): number;
  /** ioctl(fd, cmd, arg's memory): the Buffer is the argument, updated in place; >= 0 or -errno */
  ioctl(fd: number, cmd: number, arg: Buffer): number;
  /** The address of a Buffer's memory (for PAYLOAD_VEC items), valid while it is referenced. */
  address(buf: Buffer): bigint;
  /** mmap(fd, size, PROT_READ, MAP_SHARED, offset): an external Buffer or -errno */
  mmap(fd: number, size: number, offset?: number): Buffer | number;
  /**
   * Releases a mapping made by mmap (the whole Buffer): the file pages are
   * unmapped, the Buffer reads zeros from then on, its memory goes with it.
   */
  munmap(mapping: Buffer): number;
  /**
   * Calls cb(status, events, slept) on the loop whenever fd is readable or
   * hung up, until pollStop; slept: the loop blocked in its poll phase since
   * the previous event (false: the fd was found ready again at once).
   */
  pollStart(fd: number, cb: (status: number, events: number, slept: boolean) => void): PollHandle | number;
  pollStop(handle: PollHandle): void;
  /**
   * A watch's events off (false: the fd leaves the loop's poll set) or on
   * again (true), keeping the handle: 0, or -errno (-EBADF after pollStop).
   */
  pollActive(handle: PollHandle, on: boolean): number;
  /** memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING): fd or -errno */
  memfdCreate(name: string): number;
  /** fcntl(F_ADD_SEALS): 0 or -errno */
  addSeals(fd: number, seals: number): number;
  /** fcntl(F_GET_SEALS): seals or -errno */
  getSeals(fd: number): number;
}

// One addon serves the server and the client; the client part is its `client` object.
export const clientNative: ClientNative = (native as unknown as { client: ClientNative }).client;
