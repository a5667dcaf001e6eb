// pcap files of D-Bus messages (link type DBUS, 231), laid out as busctl
// capture of 2015 wrote them: the classic libpcap header (magic a1b2c3d4,
// version 2.4, UTC, host byte order, which is little-endian on every machine
// kdbus ran on) and one record per message holding its D-Bus serialization
// (fixed header, header fields, padding, body; never the kdbus envelope),
// cut at the snapshot length.

export const LINKTYPE_DBUS = 231;
export const PCAP_MAGIC = 0xa1b2c3d4;
/** busctl capture's default snapshot length (its --size) */
export const DEFAULT_SNAPLEN = 4096;
const FILE_HEADER_SIZE = 24;
const RECORD_HEADER_SIZE = 16;

export function pcapFileHeader(snaplen: number, linkType = LINKTYPE_DBUS): Buffer {
  const h = Buffer.alloc(FILE_HEADER_SIZE);
  h.writeUInt32LE(PCAP_MAGIC, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8); // thiszone: UTC
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(linkType, 20);
  return h;
}

/** One record: the message (its parts in order) stamped with realtimeUs, cut at snaplen. */
export function pcapRecord(parts: readonly Buffer[], realtimeUs: bigint, snaplen: number): Buffer {
  const whole = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const kept = whole.subarray(0, Math.min(whole.length, snaplen));
  const h = Buffer.alloc(RECORD_HEADER_SIZE);
  h.writeUInt32LE(Number(realtimeUs / 1_000_000n) >>> 0, 0);
  h.writeUInt32LE(Number(realtimeUs % 1_000_000n), 4);
  h.writeUInt32LE(kept.length, 8);
  h.writeUInt32LE(whole.length, 12);
  return Buffer.concat([h, kept]);
}

export interface PcapRecord {
  tsSec: number;
  tsUsec: number;
  /** the length of the message before it was cut at the snapshot length */
  origLen: number;
  data: Buffer;
}

export interface PcapFile {
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  linkType: number;
  records: PcapRecord[];
}

/**
 * Reads a classic pcap file of either byte order (microsecond stamps);
 * throws on anything else or on a record cut short (a capture still being
 * written ends at its last whole record when partialTail is set).
 */
export function readPcap(buf: Buffer, opts: { partialTail?: boolean } = {}): PcapFile {
  if (buf.length < FILE_HEADER_SIZE) throw new Error(`not a pcap file: ${buf.length} bytes, shorter than its header`);
  let le: boolean;
  if (buf.readUInt32LE(0) === PCAP_MAGIC) le = true;
  else if (buf.readUInt32BE(0) === PCAP_MAGIC) le = false;
  else throw new Error(`not a microsecond pcap file: magic 0x${buf.readUInt32LE(0).toString(16)}`);
  const u32 = (off: number): number => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const u16 = (off: number): number => (le ? buf.readUInt16LE(off) : buf.readUInt16BE(off));
  const file: PcapFile = {
    versionMajor: u16(4), versionMinor: u16(6), snaplen: u32(16), linkType: u32(20), records: [],
  };
  let off = FILE_HEADER_SIZE;
  while (off < buf.length) {
    if (off + RECORD_HEADER_SIZE > buf.length) {
      if (opts.partialTail) break;
      throw new Error(`pcap record header at ${off} cut short`);
    }
    const inclLen = u32(off + 8);
    const end = off + RECORD_HEADER_SIZE + inclLen;
    if (end > buf.length) {
      if (opts.partialTail) break;
      throw new Error(`pcap record at ${off} says ${inclLen} bytes, ${buf.length - off - RECORD_HEADER_SIZE} left`);
    }
    file.records.push({
      tsSec: u32(off), tsUsec: u32(off + 4), origLen: u32(off + 12), data: buf.subarray(off + RECORD_HEADER_SIZE, end),
    });
    off = end;
  }
  return file;
}
