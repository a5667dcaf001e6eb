// Client-side failures: the kernel's errno, the command that got it, and,
// where one errno means several things for that command, which one.
import { constants } from 'node:os';
import { errno as kdbusErrnos } from '../core/errors.js';

// Node's table lacks some Linux errnos kdbus uses (EREMCHG, EXFULL, ...): the core's list has them.
const NAMES = new Map<number, string>();
for (const table of [kdbusErrnos, constants.errno]) {
  for (const [name, value] of Object.entries(table)) if (!NAMES.has(value)) NAMES.set(value, name);
}

/** The errno's symbolic name ("ENXIO"), or "E<n>" for one Node does not know. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}

/** What an errno means for a command, where the name alone does not say. */
const MEANING: Record<string, Record<string, string>> = {
  SEND: {
    ENXIO: 'the destination connection id does not exist (gone or never there)',
    ESRCH: 'the destination well-known name is not owned by anybody',
    EADDRNOTAVAIL: 'NO_AUTO_START was given and the name is held by an activator only',
    ECONNRESET: 'the destination connection is shutting down',
    ENOBUFS: 'the receiver has too many messages queued (per-sender or per-user quota)',
    EXFULL: 'the receiver\'s pool is full',
    EREMCHG: 'the destination id does not own the destination name',
    ECOMM: 'the receiver does not accept fds (no ACCEPT_FD at HELLO)',
    ENOTUNIQ: 'fds, EXPECT_REPLY or a timeout are not allowed on a broadcast',
    EDOM: 'the bloom filter size differs from the bus\'s',
    EPERM: 'the policy does not let this connection talk to the destination',
    EMEDIUMTYPE: 'a PAYLOAD_MEMFD fd is not a sealed memfd',
    ETXTBSY: 'a memfd is not sealed (or still writable-mapped)',
    EBADMSG: 'a broadcast without SIGNAL, SIGNAL without a bloom filter (or the reverse), or a broadcast to a name',
    EDESTADDRREQ: 'dst_id is 0 (by name) but no name was given',
    EOPNOTSUPP: 'this connection may not send (activator, policy holder or monitor) or an fd is a kdbus handle or socket',
  },
  RECV: {
    EAGAIN: 'no message queued',
    ENOMSG: 'no message of the requested priority queued',
    EOVERFLOW: 'broadcasts were dropped (queue or pool full)',
  },
  FREE: { ENXIO: 'no slice at that offset (already freed?)', EINVAL: 'the slice was only peeked at' },
  HELLO: {
    EFAULT: 'the pool size is 0 or not a multiple of the page size',
    ECONNREFUSED: 'the send attach flags do not cover what the bus requires',
    EPERM: 'activator, policy holder and monitor connections need privileges on the bus',
    EOPNOTSUPP: 'monitors are not allowed on custom endpoints',
  },
  NAME_ACQUIRE: {
    EALREADY: 'this connection already owns the name',
    EEXIST: 'the name is owned and cannot be taken over (no QUEUE, or the owner does not allow replacement)',
    EPERM: 'the policy does not let this connection own the name',
    E2BIG: 'this connection owns too many names',
  },
  NAME_RELEASE: {
    ESRCH: 'this connection neither owns nor queues for the name',
    EADDRINUSE: 'the name is owned by another connection',
  },
  CONN_INFO: { ESRCH: 'no connection owns that name', ENXIO: 'no connection with that id' },
  MATCH_REMOVE: { ENOENT: 'no match with that cookie' },
  MATCH_ADD: { EDOM: 'the bloom mask size differs from the bus\'s', EMFILE: 'too many matches on this connection' },
  BYEBYE: { EBUSY: 'messages are still queued', EALREADY: 'the connection was already shut down' },
  BUS_MAKE: { EEXIST: 'a bus of that name exists', EINVAL: 'the name must start with "<uid>-"' },
  ENDPOINT_MAKE: { EEXIST: 'an endpoint of that name exists', EINVAL: 'the name must start with "<uid>-"' },
};

/** A failed kdbus command (or open/mmap of a connection). */
export class KdbusClientError extends Error {
  /** the errno name, e.g. "ENXIO" */
  readonly code: string;

  constructor(readonly errno: number, readonly command: string, readonly why?: string) {
    const code = errnoName(errno);
    super(`${command}: ${code}${why ? ` (${why})` : ''}`);
    this.name = 'KdbusClientError';
    this.code = code;
  }
}

/** A KdbusClientError for -ret from command, with the meaning of that errno for it, if known. */
export function commandError(command: string, ret: number, why?: string): KdbusClientError {
  const errno = -ret;
  return new KdbusClientError(errno, command, why ?? MEANING[command]?.[errnoName(errno)]);
}

/** Throws commandError when ret < 0; returns ret otherwise. */
export function check(command: string, ret: number): number {
  if (ret < 0) throw commandError(command, ret);
  return ret;
}
