// What the native fast path (native/fastpath.h) is told of each open file, so
// that it answers trivial requests as this core would, without a call into
// JS: a POLL (the poll mask), a RECV on an empty queue (EAGAIN), a FREE of a
// slice the client holds, and a command the prologue refuses before any
// state is looked at (size out of bounds, unknown flags). Everything else,
// and every check a handle makes of its own state beyond these bits, stays
// in JS. The bits are the same in native/fastpath.h.
import { SIZE_ABOVE_MAX, SIZE_BELOW_MIN, unknownFlags } from '../abi/items.js';

/** Every ioctl to JS (a control file that made its bus). */
export const ROLE_JS = 0;
/** A control file without a bus yet. */
export const ROLE_CONTROL = 1;
/** An endpoint file neither connected nor owning an endpoint. */
export const ROLE_ENDPOINT = 2;
/** An endpoint file that made a custom endpoint. */
export const ROLE_OWNER = 3;
/** An endpoint file with a connection. */
export const ROLE_CONNECTED = 4;
/** ROLE_ENDPOINT: privileged at open. */
export const PRIVILEGED = 0x8;
/** ROLE_CONNECTED: the connection is active. */
export const ACTIVE = 0x10;
/** ROLE_CONNECTED: its queue is empty. */
export const QUEUE_EMPTY = 0x20;
/** ROLE_CONNECTED: the connection's kind (handle.ts ORDINARY...) goes here. */
export const KIND_SHIFT = 8;

/** Commands the fast path serves itself once the prologue passed. */
export const FAST_NONE = 0, FAST_RECV = 1, FAST_FREE = 2;

/** A row of COMMANDS as the fast path needs it: what the prologue checks. */
export interface FastRow {
  cmd: number;
  /** the ROLE_* that serves it */
  on: number;
  privileged: boolean;
  /** ROLE_CONNECTED: the kinds served */
  conns: number;
  min: number;
  max: number;
  valid: bigint;
  flagsOff: number;
  kernelFlagsOff: number;
  returnFlagsOff: number;
  returnFirst: boolean;
  returnDone: boolean;
  fast: number;
}

/** Why the fast path refused, as the prologue says it (native/fastpath.cc Refuse). */
export function refusalReason(reason: number, flags: bigint): string {
  if (reason === 1) return SIZE_BELOW_MIN;
  if (reason === 2) return SIZE_ABOVE_MAX;
  return unknownFlags(flags);
}
