// Messages: a SEND command turned into a kmsg (ipc/kdbus/message.c), its
// vectors copied once into each receiver's pool at send time, its files
// (memfds, the FDS item) taken from the sender and held until the last queue
// entry made of it is received or dropped, and the queue entry that becomes a
// struct kdbus_msg in the pool at RECV (kdbus_queue_entry_install), the files
// then installed in the receiver (lib/fuse/native.ts fdInstall).
import { ITEM, MSG, LIMITS, KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, MSG_EXPECT_REPLY,
  MSG_NO_AUTO_START, MSG_SIGNAL, PAYLOAD_KERNEL, SEND_SYNC_REPLY, SIZEOF_MEMFD, SIZEOF_VEC,
  ITEM_HEADER_SIZE, align8, KDBUS_FLAG_KERNEL } from '../abi/kdbus.js';
import { items, itemSysname, sysnameShown, validateItems } from '../abi/items.js';
import { errno, fail } from './errors.js';
import { nameValid } from './names.js';
import type { Pool } from './pool.js';
import type { ProcMeta, ConnMeta } from './metadata.js';
import type { Reply } from './reply.js';
import type { User } from './user.js';

const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
const MEMFD_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

/** What a message checks of an fd it carries (the server's fdStat gives it). */
export interface FdFacts {
  /** memfd seals (F_GET_SEALS), -1 if not a memfd (or O_PATH) */
  seals: number;
  size: number;
  /** st_mode */
  mode: number;
  /** opened with O_PATH */
  pathOnly: boolean;
  /** a socket's SO_DOMAIN, -1 for other files */
  domain: number;
  /** a kdbus handle of this server */
  kdbus: boolean;
}

/** Native helpers a message needs from the server (fd access). */
export interface FdAccess {
  takeFd(tid: number, fd: number): number;
  fdStat(fd: number): FdFacts | number;
  closeFd(fd: number): void;
  /**
   * Closes fds taken from senders, off the loop thread: a close(2) runs the
   * file's flush, which can block on another FUSE server, or on this one.
   */
  releaseFds(fds: number[]): void;
  memRead(tid: number, addr: number, len: number): Buffer | number;
  /**
   * A SEND's message in one hand-off to the memory task (native/memtask.h
   * ReadMessage): its first `first` bytes, then the PAYLOAD_VEC data it
   * names, staged after them. table[0]: the vectors found; table[1 + i]: the
   * offset of the i-th one's bytes in the result, STAGE_NONE or STAGE_FAILED.
   */
  memReadMessage(tid: number, addr: number, first: number, table: Int32Array): Buffer | number;
}

/** memReadMessage: a vector left for the caller to copy; one that could not be read (EFAULT where it would be copied). */
export const STAGE_NONE = -1, STAGE_FAILED = -2;
/** the most vectors memReadMessage reports (memtask::kMaxStagedVecs) */
export const STAGE_MAX_VECS = 16;

const S_IFMT = 0o170000, S_IFSOCK = 0o140000, AF_UNIX = 1;

/**
 * One piece of payload. A vector lies at `off` inside the message's payload
 * slice (-1: a NULL vec, which adds padLen zeros at padAt). A memfd stays in
 * its file, which the receiver gets as an fd; like kdbus, it adds size % 8
 * zeros to the payload slice (padLen at padAt), which no item points at.
 */
export type Part =
  | { kind: 'vec'; size: number; addr: number; off: number; padAt: number; padLen: number;
      /** where its bytes are in Kmsg.staged (memReadMessage), or STAGE_NONE / STAGE_FAILED */
      stagedAt: number }
  | { kind: 'memfd'; size: number; start: number; fd: number; padAt: number; padLen: number };

/** A message on its way: from a SEND, or a kernel notification. */
export class Kmsg {
  flags = 0n;
  priority = 0n;
  dstId = 0n;
  srcId = 0n;
  payloadType = 0n;
  cookie = 0n;
  /** timeout_ns for EXPECT_REPLY, cookie_reply otherwise (a union in struct kdbus_msg) */
  timeoutOrReply = 0n;
  dstName: string | null = null;
  /** the name entry it was sent to (kmsg->dst_name_id), 0 if by id */
  dstNameId = 0n;
  parts: Part[] = [];
  /** bytes the payload takes in a receiver's pool (kmsg->pool_size) */
  payloadSize = 0;
  /**
   * The payload slice's bytes, for a message sent to a name: read from the
   * sender once, at its first staging (stagePayload), and the source when
   * the message moves to another connection's pool (Connection.adopt).
   */
  payload: Buffer | null = null;
  /**
   * The SEND's read of the sender's memory with the vectors staged in it
   * (FdAccess.memReadMessage), until the SEND is done (dropStaged): the
   * queue entries keep no copy of it.
   */
  staged: Buffer | null = null;
  bloomGeneration = 0n;
  bloom: BigUint64Array | null = null;
  /** the sender's thread, whose memory the vectors are read from */
  senderTid = 0;
  /** kernel notifications: the item(s) after the header */
  notifyItems: Buffer | null = null;
  notify: { type: number; oldId: bigint; newId: bigint; name: string | null } | null = null;
  procMeta: ProcMeta | null = null;
  connMeta: ConnMeta | null = null;
  seq = 0n;
  /** the FDS item's files: the server's copies, taken from the sender */
  fds: number[] = [];
  /** fds a receiver gets: one per memfd part, and the FDS item's (0: the fast path) */
  installCount = 0;
  /**
   * Holders of the files (memfds and fds): the SEND in progress, and every
   * queue entry made of this message. The last release closes them.
   */
  private refs = 1;
  /** the sending user, charged for the files and the payload copy this message holds */
  private payer: User | null = null;
  private chargedFds = 0;
  private chargedCopy = 0;

  hold(): void {
    this.refs++;
  }

  /** Charges the sender's user for the files the message holds (refused: EMFILE naming the limit). */
  chargeTo(u: User): void {
    this.payer = u;
    const n = this.installFds().length;
    if (n) u.charge('fds', n);
    this.chargedFds = n;
  }

  /** Reads the payload once, for a message that may move pools, charged to the sender. */
  keepPayload(mem: Pick<FdAccess, 'memRead'>): Buffer {
    if (this.payload) return this.payload;
    this.payer?.check('copyBytes', this.payloadSize);
    this.payload = readPayload(this, mem);
    if (this.payer) {
      this.payer.charge('copyBytes', this.payloadSize);
      this.chargedCopy = this.payloadSize;
    }
    return this.payload;
  }

  /** Drops one hold; the last one ends the charges and closes the server's copies (the parts stay: they describe the payload). */
  release(fds: FdAccess): void {
    if (--this.refs > 0) return;
    if (this.payer) {
      if (this.chargedFds) this.payer.uncharge('fds', this.chargedFds);
      if (this.chargedCopy) this.payer.uncharge('copyBytes', this.chargedCopy);
      this.payer = null;
    }
    if (this.installCount === 0) return;
    const files = this.installFds();
    for (const p of this.parts) if (p.kind === 'memfd') p.fd = -1;
    this.fds = [];
    if (files.length) fds.releaseFds(files);
  }

  /** The files to install, in kdbus_msg_make_items order: memfds as they come, then the FDS item's. */
  installFds(): number[] {
    const out: number[] = [];
    for (const p of this.parts) if (p.kind === 'memfd' && p.fd >= 0) out.push(p.fd);
    for (const fd of this.fds) out.push(fd);
    return out;
  }

  /** The bytes of vector p, read with the message: a Buffer, null (to be copied from the sender), or STAGE_FAILED. */
  stagedBytes(p: Part & { kind: 'vec' }): Buffer | null | typeof STAGE_FAILED {
    if (this.staged === null || p.stagedAt === STAGE_NONE) return null;
    if (p.stagedAt === STAGE_FAILED) return STAGE_FAILED;
    return this.staged.subarray(p.stagedAt, p.stagedAt + p.size);
  }

  /** The end of the SEND: the staged bytes are in every pool they go to. */
  dropStaged(): void {
    this.staged = null;
  }

  get isBroadcast(): boolean {
    return this.dstId === KDBUS_DST_ID_BROADCAST;
  }
}

const PAGE_SIZE = 4096;
/** bytes read at msg_address before the size is known: a message with a few small items */
const MSG_FIRST_READ = 512;
/** memReadMessage's table, read right after each call */
const STAGED = new Int32Array(1 + STAGE_MAX_VECS);

/**
 * kdbus_kmsg_new_from_cmd + kdbus_msg_scan_items. `writeMsgFlags` stores
 * kernel_msg_flags in the caller's command, as the kernel does before it
 * validates the message flags.
 */
export function kmsgFromSend(fds: FdAccess, tid: number, sendFlags: bigint, msgAddress: number,
                             connId: bigint, bloomSize: number,
                             writeMsgFlags: (v: bigint) => void, payer?: User): Kmsg {
  if (msgAddress % 8 !== 0) fail(errno.EFAULT, 'unaligned message pointer');
  // One read serves most messages: as much as the size's own page holds
  // (readable if the size is), up to MSG_FIRST_READ, with the vectors staged
  // after it; the rest only if needed (nothing is staged then).
  const first = Math.min(MSG_FIRST_READ, PAGE_SIZE - (msgAddress % PAGE_SIZE));
  const head = fds.memReadMessage(tid, msgAddress, first, STAGED);
  if (typeof head === 'number') fail(errno.EFAULT, 'message unreadable');
  const size = head.readBigUInt64LE(0);
  if (size < BigInt(MSG.items) || size > BigInt(LIMITS.MSG_MAX_SIZE)) fail(errno.EINVAL, `message size ${size}`);
  const whole = size <= first;
  const buf = whole ? head.subarray(0, Number(size)) : fds.memRead(tid, msgAddress, Number(size));
  if (typeof buf === 'number') fail(errno.EFAULT, 'message unreadable');
  if (buf.readBigUInt64LE(MSG.size) !== size) fail(errno.EINVAL, 'message size changed');

  const m = new Kmsg();
  m.senderTid = tid;
  if (whole && STAGED[0] > 0) m.staged = head;
  m.flags = buf.readBigUInt64LE(MSG.flags);
  m.priority = buf.readBigInt64LE(MSG.priority);
  m.dstId = buf.readBigUInt64LE(MSG.dst_id);
  m.srcId = buf.readBigUInt64LE(MSG.src_id);
  m.payloadType = buf.readBigUInt64LE(MSG.payload_type);
  m.cookie = buf.readBigUInt64LE(MSG.cookie);
  m.timeoutOrReply = buf.readBigUInt64LE(MSG.timeout_ns);

  const validFlags = MSG_EXPECT_REPLY | MSG_NO_AUTO_START | MSG_SIGNAL;
  writeMsgFlags(validFlags | KDBUS_FLAG_KERNEL);
  if (m.flags & ~validFlags) fail(errno.EINVAL, 'unknown message flags');
  const itemsSize = Number(size) - MSG.items;
  validateItems(buf, MSG.items, itemsSize);
  if (m.payloadType === PAYLOAD_KERNEL) fail(errno.EINVAL, 'payload type KERNEL from userspace');
  if (m.flags & MSG_EXPECT_REPLY) {
    if (m.timeoutOrReply === 0n || m.cookie === 0n) fail(errno.EINVAL, 'EXPECT_REPLY needs a timeout and a cookie');
    if (m.isBroadcast) fail(errno.ENOTUNIQ, 'EXPECT_REPLY on a broadcast');
    if (m.flags & MSG_SIGNAL) fail(errno.EINVAL, 'EXPECT_REPLY on a signal');
  } else if (sendFlags & SEND_SYNC_REPLY) {
    fail(errno.EINVAL, 'SYNC_REPLY without EXPECT_REPLY');
  }
  // the sender's fd charges checked before any fd is taken (chargeTo charges them)
  payer?.check('fds', fdsIn(buf, itemsSize));
  try {
    scanItems(m, fds, tid, buf, itemsSize, bloomSize);
  } catch (e) {
    m.release(fds);
    throw e;
  }
  if (m.srcId > 0n && m.srcId !== connId) {
    m.release(fds);
    fail(errno.EINVAL, 'src_id is not the sender');
  }
  m.srcId = connId;
  return m;
}

/** The fds a message's items would make the server take: the FDS item's and one per memfd. */
function fdsIn(buf: Buffer, itemsSize: number): number {
  let n = 0;
  for (const it of items(buf, MSG.items, itemsSize)) {
    if (it.type === ITEM.FDS) n += Math.floor(it.len / 4);
    else if (it.type === ITEM.PAYLOAD_MEMFD) n++;
  }
  return n;
}

function scanItems(m: Kmsg, fds: FdAccess, tid: number, buf: Buffer, itemsSize: number, bloomSize: number): void {
  const isSignal = (m.flags & MSG_SIGNAL) !== 0n;
  let hasBloom = false;
  let hasName = false;
  let hasFds = false;
  let vecTotal = 0;
  let n = 0;
  let vecs = 0;
  for (const it of items(buf, MSG.items, itemsSize)) {
    if (++n > LIMITS.MSG_MAX_ITEMS) fail(errno.E2BIG, 'too many items');
    switch (it.type) {
      case ITEM.PAYLOAD_VEC: {
        const size = buf.readBigUInt64LE(it.data);
        const addr = buf.readBigUInt64LE(it.data + 8);
        if (BigInt(vecTotal) + size > BigInt(LIMITS.MSG_MAX_PAYLOAD_VEC_SIZE)) fail(errno.EMSGSIZE, 'vectors too large');
        const s = Number(size);
        vecTotal += s;
        // the i-th vector as the memory task found it (it read the same bytes)
        const stagedAt = m.staged !== null && vecs < STAGED[0] ? STAGED[1 + vecs] : STAGE_NONE;
        vecs++;
        if (addr !== 0n) {
          m.parts.push({ kind: 'vec', size: s, addr: Number(addr), off: m.payloadSize, padAt: 0, padLen: 0, stagedAt });
          m.payloadSize += s;
        } else {
          // a NULL vector pads the previous one to 8 bytes: size % 8 zeros
          m.parts.push({ kind: 'vec', size: s, addr: 0, off: -1, padAt: m.payloadSize, padLen: s % 8,
            stagedAt: STAGE_NONE });
          m.payloadSize += s % 8;
        }
        break;
      }
      case ITEM.PAYLOAD_MEMFD:
        scanMemfd(m, fds, tid, buf, it.data);
        break;
      case ITEM.FDS:
        if (hasFds) fail(errno.EEXIST, 'FDS item repeated');
        hasFds = true;
        if (m.isBroadcast) fail(errno.ENOTUNIQ, 'fds on a broadcast');
        scanFds(m, fds, tid, buf, it.data, it.len / 4);
        break;
      case ITEM.BLOOM_FILTER: {
        if (hasBloom) fail(errno.EEXIST, 'bloom filter repeated');
        hasBloom = true;
        const size = it.len - 8;
        if (size % 8 !== 0) fail(errno.EFAULT, 'bloom filter size not 8-aligned');
        if (size !== bloomSize) fail(errno.EDOM, `bloom filter size ${size}, bus has ${bloomSize}`);
        m.bloomGeneration = buf.readBigUInt64LE(it.data);
        const copy = Buffer.from(buf.subarray(it.data + 8, it.data + 8 + size));
        m.bloom = new BigUint64Array(copy.buffer, copy.byteOffset, size / 8);
        break;
      }
      case ITEM.DST_NAME: {
        if (hasName) fail(errno.EEXIST, 'DST_NAME repeated');
        hasName = true;
        const name = itemSysname(buf, it);
        if (!nameValid(name, false)) fail(errno.EINVAL, `invalid destination name "${sysnameShown(name)}"`);
        m.dstName = name;
        break;
      }
      default:
        fail(errno.EINVAL, `item type ${it.type} not allowed in a message`);
    }
  }
  if (m.dstId === KDBUS_DST_ID_NAME && !hasName) fail(errno.EDESTADDRREQ, 'no destination');
  if (m.isBroadcast) {
    if (hasName) fail(errno.EBADMSG, 'broadcast with a destination name');
    if (!isSignal) fail(errno.EBADMSG, 'broadcast without SIGNAL');
    if (m.timeoutOrReply > 0n) fail(errno.ENOTUNIQ, 'broadcast with a timeout');
  }
  if (isSignal !== hasBloom) fail(errno.EBADMSG, 'SIGNAL and BLOOM_FILTER go together');
}

/** The server's copy of the sender's fd: EBADF if the sender has none, EMFILE if the server has no room. */
function takeFd(fds: FdAccess, tid: number, fdNum: number, what: string): number {
  const fd = fds.takeFd(tid, fdNum);
  if (fd === -errno.EMFILE || fd === -ENFILE) fail(errno.EMFILE, `the server cannot take ${what} ${fdNum}: out of fds`);
  if (fd < 0) fail(errno.EBADF, `${what} ${fdNum} not open in the sender`);
  return fd;
}

const ENFILE = 23;

/**
 * The FDS item: every fd taken from the sender (fget_raw: O_PATH files too),
 * in order, each checked as kdbus_handle_check_file does: no kdbus handles,
 * no AF_UNIX sockets (files that can queue fds themselves).
 */
function scanFds(m: Kmsg, fds: FdAccess, tid: number, buf: Buffer, data: number, count: number): void {
  if (count > LIMITS.MSG_MAX_FDS) fail(errno.EMFILE, 'too many fds');
  for (let i = 0; i < count; i++) {
    const fdNum = buf.readInt32LE(data + 4 * i);
    if (fdNum < 0) fail(errno.EBADF, 'negative fd');
    const fd = takeFd(fds, tid, fdNum, 'fd');
    m.fds.push(fd);
    m.installCount++;
    const st = fds.fdStat(fd);
    if (typeof st === 'number') fail(errno.EBADF, `fd ${fdNum} unusable`);
    if (st.pathOnly) continue;
    if (st.kdbus) fail(errno.EOPNOTSUPP, `fd ${fdNum} is a kdbus handle`);
    if ((st.mode & S_IFMT) === S_IFSOCK && st.domain === AF_UNIX) fail(errno.EOPNOTSUPP, `fd ${fdNum} is an AF_UNIX socket`);
  }
}

/**
 * A sealed memfd: taken from the sender, and handed to each receiver as an
 * fd of its own (KDBUS_ITEM_PAYLOAD_MEMFD); its bytes never enter the pool.
 */
function scanMemfd(m: Kmsg, fds: FdAccess, tid: number, buf: Buffer, data: number): void {
  const start = buf.readBigUInt64LE(data);
  const size = buf.readBigUInt64LE(data + 8);
  const fdNum = buf.readInt32LE(data + 16);
  if (start + size > 0xffff_ffff_ffff_ffffn) fail(errno.EMSGSIZE, 'memfd range overflows');
  if (fdNum < 0) fail(errno.EBADF, 'negative memfd');
  const fd = takeFd(fds, tid, fdNum, 'memfd');
  const padLen = Number(size % 8n);
  const part: Part = { kind: 'memfd', size: Number(size), start: Number(start), fd, padAt: m.payloadSize, padLen };
  m.parts.push(part);
  m.installCount++;
  const st = fds.fdStat(fd);
  // fget(): an O_PATH fd is no file here
  if (typeof st === 'number' || st.pathOnly) fail(errno.EBADF, `memfd ${fdNum} unusable`);
  if (st.seals < 0) fail(errno.EMEDIUMTYPE, 'not a memfd');
  if ((st.seals & MEMFD_SEALS) !== MEMFD_SEALS) fail(errno.ETXTBSY, 'memfd not sealed');
  if (start + size > BigInt(st.size)) fail(errno.EBADF, 'memfd range past its end');
  m.payloadSize += padLen;
}

/** A message waiting in a receiver's queue (kdbus_queue_entry). */
export interface QueueEntry {
  kmsg: Kmsg;
  priority: bigint;
  /** the payload slice in the receiver's pool (-1: none) */
  payloadOff: number;
  /** the reply this message waits for, if any */
  reply: Reply | null;
  /** the sending user charged for this entry (quota), if any */
  user: User | null;
  /** the sending user charged bytes for its payload slice until it is received (kdbusfs's byte quota), if any */
  payer: User | null;
  bytes: number;
}

/**
 * Copies a message's payload into the receiver's pool at send time: one
 * copy, straight from the sender's memory. Returns the slice offset or -1.
 *
 * A message sent to a name may later move to another connection's pool
 * (kdbus_conn_move_messages: from an implementer back to the name's
 * activator, from there to the next implementer). kdbus copies it pool to
 * pool; here the pool it sits in is no source, since its client can write
 * there (a writable mapping, README "Status"). So such a message keeps its
 * payload (m.payload), read from the sender once and written from there.
 */
export function stagePayload(m: Kmsg, pool: Pool, mem: Pick<FdAccess, 'memRead'>): number {
  if (m.payloadSize === 0) return -1;
  const avail = pool.remain();
  if (m.payloadSize < avail && m.payloadSize > avail / 2) fail(errno.EXFULL, 'receiver pool too full');
  if (m.dstNameId > 0n) m.keepPayload(mem);
  const off = pool.alloc(m.payloadSize);
  if (m.payload) {
    pool.fill(off, m.payload);
    return off;
  }
  try {
    for (const p of m.parts) {
      if (p.kind === 'vec' && p.off >= 0) {
        const staged = m.stagedBytes(p);
        if (staged === STAGE_FAILED) fail(errno.EFAULT, 'payload vector unreadable');
        const r = staged ? pool.backing.write(off + p.off, staged)
          : pool.backing.copyFromProcess(off + p.off, m.senderTid, p.addr, p.size);
        if (r === -errno.ENOMEM || r === -errno.ENOSPC) fail(errno.ENOMEM, 'no memory for the pool\'s pages');
        if (r < 0) fail(errno.EFAULT, 'payload vector unreadable');
      } else if (p.padLen && pool.backing.write(off + p.padAt, Buffer.alloc(p.padLen)) < 0) {
        fail(errno.ENOMEM, 'no memory for the pool\'s pages');
      }
    }
  } catch (e) {
    pool.release(off);
    throw e;
  }
  pool.backing.flush(off, m.payloadSize);
  return off;
}

/** The payload slice of m, its vectors read from the sender (NULL vectors and memfds add zeros). */
function readPayload(m: Kmsg, mem: Pick<FdAccess, 'memRead'>): Buffer {
  const b = Buffer.alloc(m.payloadSize);
  for (const p of m.parts) {
    if (p.kind !== 'vec' || p.off < 0 || p.size === 0) continue;
    const staged = m.stagedBytes(p);
    if (staged === STAGE_FAILED) fail(errno.EFAULT, 'payload vector unreadable');
    const r = staged ?? mem.memRead(m.senderTid, p.addr, p.size);
    if (typeof r === 'number') fail(errno.EFAULT, 'payload vector unreadable');
    r.copy(b, p.off);
  }
  return b;
}

const SIZEOF_MEMFD_ITEM = ITEM_HEADER_SIZE + SIZEOF_MEMFD;

/** The payload items and where their fd numbers go (offsets into the items). */
export interface PayloadItems {
  items: Buffer;
  /** one offset per installed file, in installFds() order */
  fdSlots: number[];
}

/**
 * The payload items a receiver sees (kdbus_msg_make_items): DST_NAME, then
 * PAYLOAD_OFF for every vector and PAYLOAD_MEMFD for every memfd, in message
 * order (pool-relative offsets), then FDS. Every fd number is -1 here: the
 * caller writes the installed numbers at fdSlots.
 */
export function payloadItems(e: QueueEntry): PayloadItems {
  const m = e.kmsg;
  let size = 0;
  const nameBytes = m.dstName !== null ? m.dstName.length + 1 : 0; // a byte string: one char per byte
  if (m.dstName !== null) size += align8(ITEM_HEADER_SIZE + nameBytes);
  for (const p of m.parts) size += p.kind === 'vec' ? ITEM_HEADER_SIZE + SIZEOF_VEC : SIZEOF_MEMFD_ITEM;
  const fdsSize = ITEM_HEADER_SIZE + 4 * m.fds.length;
  if (m.fds.length) size += align8(fdsSize);
  const out = Buffer.alloc(size);
  const fdSlots: number[] = [];
  const memfdSlots: number[] = [];
  let o = 0;
  if (m.dstName !== null) {
    out.writeBigUInt64LE(BigInt(ITEM_HEADER_SIZE + nameBytes), o);
    out.writeBigUInt64LE(BigInt(ITEM.DST_NAME), o + 8);
    out.write(m.dstName, o + 16, 'latin1');
    o += align8(ITEM_HEADER_SIZE + nameBytes);
  }
  // without a payload slice, offsets are relative to 0 (kdbus: payload_off 0)
  const base = e.payloadOff >= 0 ? e.payloadOff : 0;
  for (const p of m.parts) {
    if (p.kind === 'vec') {
      out.writeBigUInt64LE(BigInt(ITEM_HEADER_SIZE + SIZEOF_VEC), o);
      out.writeBigUInt64LE(BigInt(ITEM.PAYLOAD_OFF), o + 8);
      out.writeBigUInt64LE(BigInt(p.size), o + 16);
      const at = p.off < 0 ? 0xffff_ffff_ffff_ffffn : BigInt(base + p.off);
      out.writeBigUInt64LE(at, o + 24);
      o += ITEM_HEADER_SIZE + SIZEOF_VEC;
    } else {
      out.writeBigUInt64LE(BigInt(SIZEOF_MEMFD_ITEM), o);
      out.writeBigUInt64LE(BigInt(ITEM.PAYLOAD_MEMFD), o + 8);
      out.writeBigUInt64LE(BigInt(p.start), o + 16);
      out.writeBigUInt64LE(BigInt(p.size), o + 24);
      out.writeInt32LE(-1, o + 32);
      memfdSlots.push(o + 32);
      o += SIZEOF_MEMFD_ITEM;
    }
  }
  fdSlots.push(...memfdSlots);
  if (m.fds.length) {
    out.writeBigUInt64LE(BigInt(fdsSize), o);
    out.writeBigUInt64LE(BigInt(ITEM.FDS), o + 8);
    for (let i = 0; i < m.fds.length; i++) {
      out.writeInt32LE(-1, o + 16 + 4 * i);
      fdSlots.push(o + 16 + 4 * i);
    }
    o += align8(fdsSize);
  }
  return { items: out, fdSlots };
}

/** struct kdbus_msg header as the receiver sees it. */
export function msgHeader(m: Kmsg, totalSize: number): Buffer {
  const h = Buffer.alloc(MSG.items);
  h.writeBigUInt64LE(BigInt(totalSize), MSG.size);
  h.writeBigUInt64LE(m.flags, MSG.flags);
  h.writeBigInt64LE(m.priority, MSG.priority);
  h.writeBigUInt64LE(m.dstId, MSG.dst_id);
  h.writeBigUInt64LE(m.srcId, MSG.src_id);
  h.writeBigUInt64LE(m.payloadType, MSG.payload_type);
  h.writeBigUInt64LE(m.cookie, MSG.cookie);
  h.writeBigUInt64LE(m.timeoutOrReply, MSG.timeout_ns);
  return h;
}
