// Reading kdbus commands and their item lists the way ipc/kdbus does
// (util.c kdbus_memdup_user / kdbus_negotiate_flags, item.c validation),
// with the same errnos in the same order.
import { ITEM, ITEM_HEADER_SIZE, LIMITS, SIZEOF_VEC, SIZEOF_MEMFD, SIZEOF_BLOOM_PARAMETER,
  SIZEOF_BLOOM_FILTER, SIZEOF_POLICY_ACCESS, SIZEOF_NOTIFY_ID_CHANGE, SIZEOF_NOTIFY_NAME_CHANGE,
  SIZEOF_CREDS, SIZEOF_TIMESTAMP, SIZEOF_AUDIT, KDBUS_FLAG_KERNEL, align8 } from './kdbus.js';
import { errno, fail } from '../core/errors.js';

/** One item inside a command buffer: [off, off+size) with payload after the 16-byte header. */
export interface Item {
  type: number;
  /** item->size as given (not aligned) */
  size: number;
  /** offset of the item header in the buffer */
  off: number;
  /** offset of the payload */
  data: number;
  /** payload size (size - header) */
  len: number;
}

/**
 * Reads a u64 as a number, saturating to MAX_SAFE_INTEGER (big values are
 * invalid anyway). Two 32-bit reads: no BigInt on the hot path.
 */
export function u64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi >= 0x20_0000) return Number.MAX_SAFE_INTEGER;
  return hi * 0x1_0000_0000 + buf.readUInt32LE(off);
}

/** What the prologue's refusals say (also for those native/fastpath.cc gives). */
export const SIZE_BELOW_MIN = 'command size below the minimum';
export const SIZE_ABOVE_MAX = 'command size above the maximum';
export function unknownFlags(flags: bigint): string {
  return `unknown flags 0x${flags.toString(16)}`;
}

/**
 * kdbus_memdup_user: validates a command's size against [min, max] and returns
 * the whole command. `command` is what the native side read (whole buffer,
 * -errno, or null when it did not read: size out of its window or arg
 * unaligned).
 */
export function commandBuffer(arg: number, head: Buffer, command: Buffer | number | null,
                              min: number, max: number): Buffer {
  // constant messages: refused commands are routine, and must stay cheap
  if (arg % 8 !== 0) fail(errno.EFAULT, 'unaligned command pointer');
  if (head.length < 8) fail(errno.EFAULT, 'command head too short');
  const size = u64(head, 0);
  if (size < min) fail(errno.EINVAL, SIZE_BELOW_MIN);
  if (size > max) fail(errno.EMSGSIZE, SIZE_ABOVE_MAX);
  if (typeof command === 'number') fail(-command, 'command unreadable');
  if (command === null) fail(errno.EFAULT, 'command not read');
  if (command.length !== size || u64(command, 0) !== size) fail(errno.EINVAL, 'command size changed while read');
  return command;
}

/**
 * kdbus_negotiate_flags: the kernel writes (valid | KDBUS_FLAG_KERNEL) into
 * kernel_flags first, then rejects unknown flags with EINVAL. The write-back
 * is done by the caller through `writeKernelFlags`.
 */
export function negotiateFlags(flags: bigint, valid: bigint,
                               writeKernelFlags: (v: bigint) => void): void {
  writeKernelFlags(valid | KDBUS_FLAG_KERNEL);
  if (flags & ~valid) fail(errno.EINVAL, unknownFlags(flags));
}

/** Iterates the items in buf[start, start+size) (KDBUS_ITEMS_FOREACH); call validateItems first. */
export function* items(buf: Buffer, start: number, size: number): Generator<Item> {
  let off = start;
  const end = start + size;
  while (off < end && off + ITEM_HEADER_SIZE <= buf.length) {
    const isize = u64(buf, off);
    const type = u64(buf, off + 8);
    yield { type, size: isize, off, data: off + ITEM_HEADER_SIZE, len: isize - ITEM_HEADER_SIZE };
    off += align8(isize);
  }
}

/** kdbus_str_valid: NUL-terminated exactly at the end of the payload. */
export function strValid(buf: Buffer, off: number, len: number): boolean {
  return len > 0 && buf.indexOf(0, off) === off + len - 1;
}

/**
 * A sysname item (MAKE_NAME, CONN_DESCRIPTION) as a byte string: one char
 * per byte (Latin-1). The kernel checks and keeps these names as bytes, never
 * as text, so a byte like 0xE9 must come back out (tree, items, logs) as
 * exactly that byte; write them with sysnameBytes, log them with sysnameShown.
 * Well-known names (NAME, DST_NAME, a NAME_* match rule's name) are bytes
 * the same way (kdbus_name_is_valid) and go through the same three helpers.
 */
export function itemSysname(buf: Buffer, it: Item): string {
  return buf.toString('latin1', it.data, it.data + it.len - 1);
}

/** The bytes of a sysname (see itemSysname). */
export function sysnameBytes(name: string): Buffer {
  return Buffer.from(name, 'latin1');
}

/** A sysname for logs and error messages: printable ASCII as is, every other byte as \xNN. */
export function sysnameShown(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/**
 * isalpha() of the kernel (lib/ctype.c): its table is Latin-1, so besides
 * A-Z and a-z the bytes 0xC0-0xFF are letters, except 0xD7 and 0xF7 (the
 * multiplication and division signs).
 */
export function kernelIsAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0xc0 && c <= 0xff && c !== 0xd7 && c !== 0xf7);
}

/**
 * kdbus_sysname_is_valid on a byte string (itemSysname): isalpha, isdigit
 * or '_', with '-' and '.' allowed inside.
 */
export function sysnameValid(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (kernelIsAlpha(c) || (c >= 0x30 && c <= 0x39) || c === 0x5f) continue;
    if (i > 0 && i + 1 < name.length && (c === 0x2d || c === 0x2e)) continue;
    return false;
  }
  return true;
}

/** kdbus_item_validate_name, for MAKE_NAME and CONN_DESCRIPTION. */
function validateNameItem(buf: Buffer, it: Item): void {
  if (it.size < ITEM_HEADER_SIZE + 2) fail(errno.EINVAL, 'name item too short');
  if (it.size > ITEM_HEADER_SIZE + LIMITS.SYSNAME_MAX_LEN + 1) fail(errno.ENAMETOOLONG, 'name too long');
  if (!strValid(buf, it.data, it.len)) fail(errno.EINVAL, 'name not a string');
  if (!sysnameValid(itemSysname(buf, it))) fail(errno.EINVAL, 'invalid name');
}

function validateItem(buf: Buffer, it: Item): void {
  const len = it.len;
  switch (it.type) {
    case ITEM.PAYLOAD_VEC:
    case ITEM.PAYLOAD_OFF:
      if (len !== SIZEOF_VEC) fail(errno.EINVAL, 'bad vec item');
      if (buf.readBigUInt64LE(it.data) === 0n) fail(errno.EINVAL, 'empty vec');
      break;
    case ITEM.PAYLOAD_MEMFD:
      if (len !== SIZEOF_MEMFD) fail(errno.EINVAL, 'bad memfd item');
      if (buf.readBigUInt64LE(it.data + 8) === 0n) fail(errno.EINVAL, 'empty memfd');
      if (buf.readInt32LE(it.data + 16) < 0) fail(errno.EBADF, 'negative memfd');
      break;
    case ITEM.FDS:
      if (len % 4 !== 0) fail(errno.EINVAL, 'bad fds item');
      break;
    case ITEM.CANCEL_FD:
      if (len !== 4) fail(errno.EINVAL, 'bad cancel fd item');
      break;
    case ITEM.BLOOM_PARAMETER:
      if (len !== SIZEOF_BLOOM_PARAMETER) fail(errno.EINVAL, 'bad bloom parameter');
      break;
    case ITEM.BLOOM_FILTER:
      if (len < SIZEOF_BLOOM_FILTER) fail(errno.EINVAL, 'bad bloom filter');
      break;
    case ITEM.CONN_DESCRIPTION:
    case ITEM.MAKE_NAME:
      validateNameItem(buf, it);
      break;
    case ITEM.ATTACH_FLAGS_SEND:
    case ITEM.ATTACH_FLAGS_RECV:
    case ITEM.ID:
      if (len !== 8) fail(errno.EINVAL, 'bad u64 item');
      break;
    case ITEM.TIMESTAMP:
      if (len !== SIZEOF_TIMESTAMP) fail(errno.EINVAL);
      break;
    case ITEM.CREDS:
      if (len !== SIZEOF_CREDS) fail(errno.EINVAL);
      break;
    case ITEM.AUXGROUPS:
      if (len % 4 !== 0) fail(errno.EINVAL);
      break;
    case ITEM.NAME:
    case ITEM.DST_NAME:
    case ITEM.PID_COMM:
    case ITEM.TID_COMM:
    case ITEM.EXE:
    case ITEM.CMDLINE:
    case ITEM.CGROUP:
    case ITEM.SECLABEL:
      if (!strValid(buf, it.data, len)) fail(errno.EINVAL, 'item string not terminated');
      break;
    case ITEM.AUDIT:
      if (len !== SIZEOF_AUDIT) fail(errno.EINVAL);
      break;
    case ITEM.POLICY_ACCESS:
      if (len !== SIZEOF_POLICY_ACCESS) fail(errno.EINVAL, 'bad policy access item');
      break;
    case ITEM.NAME_ADD:
    case ITEM.NAME_REMOVE:
    case ITEM.NAME_CHANGE: {
      if (len < SIZEOF_NOTIFY_NAME_CHANGE) fail(errno.EINVAL);
      const l = len - SIZEOF_NOTIFY_NAME_CHANGE;
      if (l > 0 && !strValid(buf, it.data + SIZEOF_NOTIFY_NAME_CHANGE, l)) fail(errno.EINVAL);
      break;
    }
    case ITEM.ID_ADD:
    case ITEM.ID_REMOVE:
      if (len !== SIZEOF_NOTIFY_ID_CHANGE) fail(errno.EINVAL);
      break;
    case ITEM.REPLY_TIMEOUT:
    case ITEM.REPLY_DEAD:
      if (len !== 0) fail(errno.EINVAL);
      break;
    default:
      break;
  }
}

/** kdbus_items_validate over buf[start, start+size). */
export function validateItems(buf: Buffer, start: number, size: number): void {
  const end = start + size;
  let off = start;
  while (off < end) {
    if (off + ITEM_HEADER_SIZE > buf.length) fail(errno.EINVAL, 'item header past the end');
    const isize = buf.readBigUInt64LE(off);
    if (isize < BigInt(ITEM_HEADER_SIZE) || BigInt(off) + isize > BigInt(end)) {
      fail(errno.EINVAL, `item at ${off - start} has bad size ${isize}`);
    }
    const n = Number(isize);
    const it: Item = { type: u64(buf, off + 8), size: n, off, data: off + ITEM_HEADER_SIZE, len: n - ITEM_HEADER_SIZE };
    validateItem(buf, it);
    off += align8(n);
  }
  if (off !== start + align8(size)) fail(errno.EINVAL, 'items do not end at the command end');
}

/**
 * kdbus_items_get: the single item of a type; EEXIST if repeated, EBADMSG if
 * absent.
 */
export function singleItem(buf: Buffer, start: number, size: number, type: number): Item {
  let found: Item | undefined;
  for (const it of items(buf, start, size)) {
    if (it.type !== type) continue;
    if (found) fail(errno.EEXIST, `item ${type} repeated`);
    found = it;
  }
  if (!found) fail(errno.EBADMSG, `item ${type} missing`);
  return found;
}
