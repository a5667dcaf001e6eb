// A received kdbus message (struct kdbus_msg and its items in the pool)
// decoded into a plain object. Payloads are views of the pool slice until the
// message is freed; in copying mode they are copies and the slice is gone.
import {
  ITEM, KDBUS_SRC_ID_KERNEL, MEMFD, MSG, MSG_EXPECT_REPLY, MSG_NO_AUTO_START, MSG_SIGNAL, NOTIFY_ID_CHANGE, NOTIFY_NAME_CHANGE,
} from '../abi/kdbus.js';
import { addMetadata, itemString, rawItems, type Metadata } from './metadata.js';

/** A kernel notification (a message from id 0). */
export type Notification =
  | { type: 'id-add' | 'id-remove'; id: bigint; flags: bigint }
  | { type: 'name-add' | 'name-remove' | 'name-change'; name: string; oldId: bigint; oldFlags: bigint; newId: bigint; newFlags: bigint }
  | { type: 'reply-timeout' | 'reply-dead'; cookie: bigint };

/** A PAYLOAD_MEMFD item: an fd installed into this process (the receiver closes it). */
export interface ReceivedMemfd { fd: number; start: number; size: number }

export interface Message {
  flags: bigint;
  priority: bigint;
  dstId: bigint;
  srcId: bigint;
  payloadType: bigint;
  cookie: bigint;
  /** the cookie this message answers (0n when not a reply) */
  cookieReply: bigint;
  /** the absolute CLOCK_MONOTONIC deadline of a message expecting a reply (0n otherwise) */
  timeoutNs: bigint;
  expectReply: boolean;
  signal: boolean;
  noAutoStart: boolean;
  /** the PAYLOAD_OFF parts in order (a gap the sender left as a null vec is zeros) */
  payload: Buffer[];
  memfds: ReceivedMemfd[];
  /** fds installed into this process (KDBUS_ITEM_FDS; -1 where one could not be installed); the receiver closes them */
  fds: number[];
  /** the well-known name the sender addressed */
  dstName?: string;
  metadata: Metadata;
  notification?: Notification;
  /** RECV said some fds could not be installed (RECV_RETURN_INCOMPLETE_FDS) */
  incompleteFds: boolean;
  /** the slice's offset in the pool */
  offset: number;
  /** only peeked at: still queued, nothing to free */
  peeked: boolean;
  /** Releases the pool slice (KDBUS_CMD_FREE); views die with it. Idempotent; a no-op for copies and peeks. */
  free(): void;
}

const u64 = (b: Buffer, off: number): bigint => b.readBigUInt64LE(off);
const NO_OFFSET = 0xffff_ffff_ffff_ffffn; // a null vec: zeros, not in the pool

function notification(type: number, d: Buffer, cookieReply: bigint): Notification | undefined {
  switch (type) {
    case ITEM.ID_ADD:
    case ITEM.ID_REMOVE:
      return { type: type === ITEM.ID_ADD ? 'id-add' : 'id-remove', id: u64(d, NOTIFY_ID_CHANGE.id), flags: u64(d, NOTIFY_ID_CHANGE.flags) };
    case ITEM.NAME_ADD:
    case ITEM.NAME_REMOVE:
    case ITEM.NAME_CHANGE:
      return {
        type: type === ITEM.NAME_ADD ? 'name-add' : type === ITEM.NAME_REMOVE ? 'name-remove' : 'name-change',
        oldId: u64(d, NOTIFY_NAME_CHANGE.old_id), oldFlags: u64(d, NOTIFY_NAME_CHANGE.old_flags),
        newId: u64(d, NOTIFY_NAME_CHANGE.new_id), newFlags: u64(d, NOTIFY_NAME_CHANGE.new_flags),
        name: itemString(d.subarray(NOTIFY_NAME_CHANGE.name), 'latin1'),
      };
    case ITEM.REPLY_TIMEOUT:
    case ITEM.REPLY_DEAD:
      return { type: type === ITEM.REPLY_TIMEOUT ? 'reply-timeout' : 'reply-dead', cookie: cookieReply };
    default:
      return undefined;
  }
}

/**
 * Decodes the message at pool[offset]. copy: payloads, bloom and strings are
 * copied (the slice may be freed right after); otherwise they are views.
 */
export function decodeMessage(pool: Buffer, offset: number, copy: boolean, free: () => void,
                              extra: { peeked: boolean; incompleteFds: boolean }): Message {
  const size = Number(u64(pool, offset + MSG.size));
  const flags = u64(pool, offset + MSG.flags);
  const srcId = u64(pool, offset + MSG.src_id);
  const expectReply = (flags & MSG_EXPECT_REPLY) !== 0n;
  const union = u64(pool, offset + MSG.timeout_ns);
  const view = (b: Buffer): Buffer => (copy ? Buffer.from(b) : b);
  const msg: Message = {
    flags,
    priority: pool.readBigInt64LE(offset + MSG.priority),
    dstId: u64(pool, offset + MSG.dst_id),
    srcId,
    payloadType: u64(pool, offset + MSG.payload_type),
    cookie: u64(pool, offset + MSG.cookie),
    cookieReply: expectReply ? 0n : union,
    timeoutNs: expectReply ? union : 0n,
    expectReply,
    signal: (flags & MSG_SIGNAL) !== 0n,
    noAutoStart: (flags & MSG_NO_AUTO_START) !== 0n,
    payload: [],
    memfds: [],
    fds: [],
    metadata: {},
    incompleteFds: extra.incompleteFds,
    offset,
    peeked: extra.peeked,
    free,
  };
  for (const it of rawItems(pool, offset + MSG.items, offset + size)) {
    const d = it.data;
    if (addMetadata(msg.metadata, it)) continue;
    switch (it.type) {
      case ITEM.PAYLOAD_OFF: {
        const off = u64(d, 8);
        const len = Number(u64(d, 0));
        // offsets are from the pool's start
        msg.payload.push(off === NO_OFFSET ? Buffer.alloc(len) : view(pool.subarray(Number(off), Number(off) + len)));
        break;
      }
      case ITEM.PAYLOAD_MEMFD:
        msg.memfds.push({ start: Number(u64(d, MEMFD.start)), size: Number(u64(d, MEMFD.size)), fd: d.readInt32LE(MEMFD.fd) });
        break;
      case ITEM.FDS:
        for (let i = 0; i + 4 <= d.length; i += 4) msg.fds.push(d.readInt32LE(i));
        break;
      case ITEM.DST_NAME:
        msg.dstName = itemString(d, 'latin1');
        break;
      default:
        if (srcId === KDBUS_SRC_ID_KERNEL) msg.notification = notification(it.type, d, union) ?? msg.notification;
    }
  }
  return msg;
}
