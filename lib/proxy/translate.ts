// dbus1 <-> kdbus: a classic D-Bus message from a client becomes the kdbus
// message sd-bus would have sent (GVariant header and body, the serial as
// the cookie, bloom filter for signals, a large unicast body in a sealed
// memfd), and a kdbus message becomes the dbus1 message its receiver reads.
// Values pass through the shared DBusValue model, so every type round-trips.
import { closeSync } from 'node:fs';
import { KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, MSG_NO_AUTO_START, MSG_SIGNAL, PAYLOAD_DBUS } from '../abi/kdbus.js';
import type { BloomParameters } from '../client/bloom.js';
import { MEMFD_MIN_SIZE } from '../client/bus-connection.js';
import { refuse } from '../client/codec-error.js';
import type { SendOptions } from '../client/connection.js';
import { MessageFlag, MessageType, type DBusMessage } from '../client/dbus-message.js';
import { fromKdbus, kdbusEnvelope } from '../client/kdbus-envelope.js';
import { readMemfd, sealedMemfd } from '../client/memfd.js';
import type { Message } from '../client/message.js';

/**
 * dbus1 messages carry no reply deadline, kdbus wants one: the longest a
 * caller's reply is tracked (dbus-daemon's default reply_timeout is 25 s;
 * clients that wait longer, as busctl --timeout may, get their NoReply from
 * this one).
 */
export const REPLY_TIMEOUT_MS = 120_000;

/** What Connection.send takes for `m`, and the memfd to close after sending (-1: none). */
export interface OutgoingKdbus { send: SendOptions; memfd: number }

/**
 * The kdbus send of a client's message. The sender is the kernel's word
 * (any SENDER field is dropped); replies and signals never expect a reply,
 * whatever their flags say; fds go as KDBUS_ITEM_FDS in the message's order.
 */
export function toKdbus(m: DBusMessage, fds: number[], bloom: BloomParameters): OutgoingKdbus {
  delete m.sender;
  if (m.type !== MessageType.METHOD_CALL) m.flags |= MessageFlag.NO_REPLY_EXPECTED;
  if ((m.unixFds ?? 0) !== fds.length) refuse(`the message declares ${m.unixFds ?? 0} fds, ${fds.length} came with it`);
  if (fds.length) m.unixFds = fds.length;
  else delete m.unixFds;
  const env = kdbusEnvelope(m, bloom);
  const unicast = env.dstId !== KDBUS_DST_ID_BROADCAST;
  const memfd = unicast && env.body.length > MEMFD_MIN_SIZE ? sealedMemfd(env.body) : -1;
  const expectReply = (m.flags & MessageFlag.NO_REPLY_EXPECTED) === 0;
  const send: SendOptions = {
    ...(env.dstId === KDBUS_DST_ID_NAME ? { name: env.dstName! } : unicast ? { dst: env.dstId } : { broadcast: true }),
    payload: memfd >= 0 || env.body.length === 0 ? [env.header] : [env.header, env.body],
    ...(memfd >= 0 && { memfds: [{ fd: memfd, size: env.body.length }] }),
    ...(fds.length && { fds }),
    ...(env.bloomFilter && { bloom: env.bloomFilter }),
    cookie: env.cookie,
    ...(expectReply ? { expectReply: true, timeoutMs: REPLY_TIMEOUT_MS } : { cookieReply: env.cookieReply }),
    noAutoStart: (env.flags & MSG_NO_AUTO_START) !== 0n,
    signal: (env.flags & MSG_SIGNAL) !== 0n,
  };
  return { send, memfd };
}

/**
 * The D-Bus message in a received kdbus message, its sender and destination
 * from the kernel (see fromKdbus), or null when it carries no D-Bus payload.
 * Throws CodecError for a malformed one. Memfds are read and closed here; the
 * fds stay the caller's.
 */
export function fromKdbusMessage(k: Message, ownUniqueName: string): DBusMessage | null {
  try {
    if (k.payloadType !== PAYLOAD_DBUS) return null;
    const parts = [...k.payload];
    for (const mf of k.memfds) parts.push(readMemfd(mf.fd, mf.start, mf.size));
    if (k.cookie > 0xffff_ffffn) refuse(`cookie ${k.cookie} does not fit a dbus1 serial`);
    return fromKdbus(parts.length === 1 ? parts[0]! : Buffer.concat(parts), {
      flags: k.flags, srcId: k.srcId, dstId: k.dstId, cookie: k.cookie, cookieReply: k.cookieReply,
      fdCount: k.fds.length, ...(k.dstName !== undefined && { dstName: k.dstName }),
    }, ownUniqueName);
  } finally {
    for (const mf of k.memfds) closeQuietly(mf.fd);
  }
}

/** Closes an fd the proxy holds; one already closed is no matter. */
export function closeQuietly(fd: number): void {
  if (fd < 0) return;
  try { closeSync(fd); } catch { /* already gone */ }
}
