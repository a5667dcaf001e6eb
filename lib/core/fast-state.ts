// What the native fast path (native/fastpath.h) is told of each open file, so
// that it answers trivial requests as this core would, without a call into
// JS: a POLL (the poll mask), a RECV on an empty queue (EAGAIN), a FREE of a
// slice the client holds, and a command the prologue refuses before any
// state is looked at (size out of bounds, unknown flags). Everything else,
// and every check a handle makes of its own state beyond these bits, stays
// in JS. The bits are the same in native/fastpath.h.
import { SIZE_ABOVE_MAX, SIZE_BELOW_MIN, unknownFlags } from '../abi/items.js';

/** What serves a file's ioctls: the low bits of its state. */
export const ROLE = {
  /** every ioctl to JS (a control file that made its bus) */
  JS: 0,
  /** a control file without a bus yet */
  CONTROL: 1,
  /** an endpoint file neither connected nor owning an endpoint */
  ENDPOINT: 2,
  /** an endpoint file that made a custom endpoint */
  OWNER: 3,
  /** an endpoint file with a connection */
  CONNECTED: 4,
} as const;

/** The state's bits above the role. */
export const STATE = {
  /** ROLE.ENDPOINT: privileged at open */
  PRIVILEGED: 0x8,
  /** ROLE.CONNECTED: the connection is active */
  ACTIVE: 0x10,
  /** ROLE.CONNECTED: its queue is empty */
  QUEUE_EMPTY: 0x20,
  /** ROLE.CONNECTED: the connection's kind (handle.ts ORDINARY...) goes here */
  KIND_SHIFT: 8,
} as const;

/** Commands the fast path serves itself once the prologue passed. */
export const FAST = { NONE: 0, RECV: 1, FREE: 2 } as const;

/** A row of COMMANDS as the fast path needs it: what the prologue checks. */
export interface FastRow {
  cmd: number;
  /** the ROLE that serves it */
  on: number;
  privileged: boolean;
  /** ROLE.CONNECTED: the kinds served */
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
