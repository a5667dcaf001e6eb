// Decoding the metadata items the kernel attaches to messages and to
// CONN_INFO / BUS_CREATOR_INFO answers into plain objects.
import { ITEM, ITEM_HEADER_SIZE, NAME_ITEM, align8 } from '../abi/kdbus.js';

export interface Timestamp { seqnum: bigint; monotonicNs: bigint; realtimeNs: bigint }
export interface Creds { uid: number; euid: number; suid: number; fsuid: number; gid: number; egid: number; sgid: number; fsgid: number }
export interface Pids { pid: number; tid: number; ppid: number }
/** Each set as a bit mask (bit n = capability n). */
export interface Caps { lastCap: number; inheritable: bigint; permitted: bigint; effective: bigint; bounding: bigint }
export interface Audit { sessionId: number; loginUid: number }
export interface OwnedName { name: string; flags: bigint }

/** Every metadata item, each present only when the kernel attached it. */
export interface Metadata {
  timestamp?: Timestamp;
  creds?: Creds;
  pids?: Pids;
  auxGroups?: number[];
  ownedNames?: OwnedName[];
  tidComm?: string;
  pidComm?: string;
  exe?: string;
  cmdline?: string[];
  cgroup?: string;
  caps?: Caps;
  seclabel?: string;
  audit?: Audit;
  description?: string;
}

/** One raw item: its type and payload (a view). */
export interface RawItem { type: number; data: Buffer }

/** The items in buf[start, end), as views. */
export function* rawItems(buf: Buffer, start: number, end: number): Generator<RawItem> {
  let off = start;
  while (off + ITEM_HEADER_SIZE <= end) {
    const size = Number(buf.readBigUInt64LE(off));
    if (size < ITEM_HEADER_SIZE || off + size > end) break;
    yield { type: Number(buf.readBigUInt64LE(off + 8)), data: buf.subarray(off + ITEM_HEADER_SIZE, off + size) };
    off += align8(size);
  }
}

/** A NUL-terminated string payload (without the NUL); names are bytes, read as latin1. */
export function itemString(data: Buffer, encoding: BufferEncoding = 'utf8'): string {
  const nul = data.indexOf(0);
  return data.toString(encoding, 0, nul < 0 ? data.length : nul);
}

/** kdbus_name: u64 flags, then the name. */
export function ownedName(data: Buffer): OwnedName {
  return { flags: data.readBigUInt64LE(NAME_ITEM.flags), name: itemString(data.subarray(NAME_ITEM.name), 'latin1') };
}

function caps(data: Buffer): Caps {
  const lastCap = data.readUInt32LE(0);
  const words = (data.length - 4) / 16; // four sets of equal size
  const set = (n: number): bigint => {
    let mask = 0n;
    for (let i = 0; i < words; i++) mask |= BigInt(data.readUInt32LE(4 + (n * words + i) * 4)) << BigInt(32 * i);
    return mask;
  };
  return { lastCap, inheritable: set(0), permitted: set(1), effective: set(2), bounding: set(3) };
}

/** Adds item to md when it is a metadata item; false when it is not one. */
export function addMetadata(md: Metadata, it: RawItem): boolean {
  const d = it.data;
  switch (it.type) {
    case ITEM.TIMESTAMP:
      md.timestamp = { seqnum: d.readBigUInt64LE(0), monotonicNs: d.readBigUInt64LE(8), realtimeNs: d.readBigUInt64LE(16) };
      return true;
    case ITEM.CREDS: {
      const u = (i: number): number => d.readUInt32LE(i * 4);
      md.creds = { uid: u(0), euid: u(1), suid: u(2), fsuid: u(3), gid: u(4), egid: u(5), sgid: u(6), fsgid: u(7) };
      return true;
    }
    case ITEM.PIDS:
      md.pids = { pid: Number(d.readBigUInt64LE(0)), tid: Number(d.readBigUInt64LE(8)), ppid: Number(d.readBigUInt64LE(16)) };
      return true;
    case ITEM.AUXGROUPS:
      md.auxGroups = Array.from({ length: d.length / 4 }, (_, i) => d.readUInt32LE(i * 4));
      return true;
    case ITEM.OWNED_NAME:
      (md.ownedNames ??= []).push(ownedName(d));
      return true;
    case ITEM.TID_COMM: md.tidComm = itemString(d); return true;
    case ITEM.PID_COMM: md.pidComm = itemString(d); return true;
    case ITEM.EXE: md.exe = itemString(d); return true;
    case ITEM.CMDLINE: {
      // NUL-separated arguments, the last one NUL-terminated
      const args = d.toString('utf8').split('\0');
      if (args.at(-1) === '') args.pop();
      md.cmdline = args;
      return true;
    }
    case ITEM.CGROUP: md.cgroup = itemString(d); return true;
    case ITEM.CAPS: md.caps = caps(d); return true;
    case ITEM.SECLABEL: md.seclabel = itemString(d); return true;
    case ITEM.AUDIT: md.audit = { sessionId: d.readUInt32LE(0), loginUid: d.readUInt32LE(4) }; return true;
    case ITEM.CONN_DESCRIPTION: md.description = itemString(d, 'latin1'); return true;
    default: return false;
  }
}
