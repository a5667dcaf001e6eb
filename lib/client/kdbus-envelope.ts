// How a D-Bus message sits in a kdbus message, as sd-bus 2015 put it there
// (bus-kernel.c bus_message_setup_kmsg) and took it out (bus_kernel_make_message).
// Pure data: building the KDBUS_CMD_SEND buffer and reading the pool slice are
// the connection layer's.
import {
  KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, KDBUS_SRC_ID_KERNEL, MSG_EXPECT_REPLY, MSG_NO_AUTO_START, MSG_SIGNAL,
} from '../abi/kdbus.js';
import { signalBloomFilter, type BloomParameters } from './bloom.js';
import { refuse } from './codec-error.js';
import { decodeMessage, encodeMessageParts, MessageFlag, MessageType, type DBusMessage } from './dbus-message.js';
import { uniqueNameId } from './dbus-names.js';

/** The name the kernel's own messages (notifications) come from. */
export const DRIVER_NAME = 'org.freedesktop.DBus';

/** What to put into struct kdbus_msg and its items to send `m`. */
export interface KdbusEnvelope {
  /** kdbus_msg.flags: MSG_EXPECT_REPLY unless NO_REPLY_EXPECTED, MSG_NO_AUTO_START, MSG_SIGNAL */
  flags: bigint;
  /**
   * kdbus_msg.dst_id: the unique destination's id, KDBUS_DST_ID_NAME with
   * dstName, or KDBUS_DST_ID_BROADCAST without a destination (a method call
   * too, as sd-bus sent it)
   */
  dstId: bigint;
  /** KDBUS_ITEM_DST_NAME, first item, for a well-known destination */
  dstName?: string;
  /** kdbus_msg.cookie: the header's serial */
  cookie: bigint;
  /**
   * kdbus_msg.cookie_reply for a message that expects no reply (a reply's
   * serial, 0 for a signal). It shares its union with timeout_ns: a message
   * that expects a reply carries there the absolute CLOCK_MONOTONIC time its
   * sender waits until, and this is 0
   */
  cookieReply: bigint;
  /**
   * KDBUS_ITEM_PAYLOAD_VEC items in order: the header (fixed header, fields,
   * padding), then the body when it has bytes; how the body is cut into
   * vectors is the sender's choice (sd-bus sent a large body of a unicast as
   * a sealed memfd, KDBUS_ITEM_PAYLOAD_MEMFD)
   */
  header: Buffer;
  body: Buffer;
  /** KDBUS_ITEM_BLOOM_FILTER data (generation 0): every signal carries one, unicast too */
  bloomFilter?: Buffer;
  /** KDBUS_ITEM_FDS, last item: how many fds, which m.unixFds declares */
  fdCount: number;
}

export function kdbusEnvelope(m: DBusMessage, bloom: BloomParameters): KdbusEnvelope {
  const { header, body } = encodeMessageParts(m);
  const noReply = (m.flags & MessageFlag.NO_REPLY_EXPECTED) !== 0;
  let dstId = KDBUS_DST_ID_BROADCAST;
  let dstName: string | undefined;
  if (m.destination !== undefined) {
    const id = uniqueNameId(m.destination);
    if (id === null) {
      dstId = KDBUS_DST_ID_NAME;
      dstName = m.destination;
    } else {
      dstId = id;
    }
  }
  return {
    flags: (noReply ? 0n : MSG_EXPECT_REPLY)
      | ((m.flags & MessageFlag.NO_AUTO_START) !== 0 ? MSG_NO_AUTO_START : 0n)
      | (m.type === MessageType.SIGNAL ? MSG_SIGNAL : 0n),
    dstId,
    ...(dstName !== undefined && { dstName }),
    cookie: BigInt(m.cookie),
    cookieReply: noReply ? BigInt(m.replyCookie ?? 0) : 0n,
    header,
    body,
    ...(m.type === MessageType.SIGNAL && { bloomFilter: signalBloomFilter(m, bloom).bytes }),
    fdCount: m.unixFds ?? 0,
  };
}

/** The kdbus_msg fields a received D-Bus message is checked against and completed from. */
export interface ReceivedKdbusMessage {
  flags: bigint;
  srcId: bigint;
  dstId: bigint;
  /** KDBUS_ITEM_DST_NAME when the sender named a well-known destination */
  dstName?: string;
  cookie: bigint;
  cookieReply: bigint;
  /** how many fds came in KDBUS_ITEM_FDS */
  fdCount: number;
}

/**
 * Decodes the payload of a received kdbus message (its PAYLOAD_OFF slices,
 * joined) and checks it against the kdbus header the way sd-bus did: the
 * serial is the kdbus cookie, the reply flags and reply cookie and the
 * auto-start flag agree, the fd count is what came. The sender is the kernel's
 * word, not the header's (":1.<src_id>", or org.freedesktop.DBus for the
 * kernel); so is the destination (the well-known name it was sent to,
 * `ownUniqueName` for a name whose item is missing, ":1.<dst_id>", or none
 * for a broadcast).
 */
export function fromKdbus(payload: Uint8Array, k: ReceivedKdbusMessage, ownUniqueName: string): DBusMessage {
  const m = decodeMessage(payload);
  const noReply = (m.flags & MessageFlag.NO_REPLY_EXPECTED) !== 0;
  if (BigInt(m.cookie) !== k.cookie) refuse(`malformed message: serial ${m.cookie} is not the kdbus cookie ${k.cookie}`);
  if (noReply === ((k.flags & MSG_EXPECT_REPLY) !== 0n)) {
    refuse('malformed message: its NO_REPLY_EXPECTED flag contradicts kdbus\'s EXPECT_REPLY');
  }
  if (noReply && BigInt(m.replyCookie ?? 0) !== k.cookieReply) {
    refuse(`malformed message: reply serial ${m.replyCookie ?? 0} is not the kdbus reply cookie ${k.cookieReply}`);
  }
  if (((m.flags & MessageFlag.NO_AUTO_START) !== 0) !== ((k.flags & MSG_NO_AUTO_START) !== 0n)) {
    refuse('malformed message: its NO_AUTO_START flag contradicts kdbus\'s');
  }
  if ((m.unixFds ?? 0) !== k.fdCount) refuse(`malformed message: declares ${m.unixFds ?? 0} fds, ${k.fdCount} came`);
  m.sender = k.srcId === KDBUS_SRC_ID_KERNEL ? DRIVER_NAME : `:1.${k.srcId}`;
  if (k.dstName !== undefined) m.destination = k.dstName;
  else if (k.dstId === KDBUS_DST_ID_BROADCAST) delete m.destination;
  else if (k.dstId === KDBUS_DST_ID_NAME) m.destination = ownUniqueName;
  else m.destination = `:1.${k.dstId}`;
  return m;
}
