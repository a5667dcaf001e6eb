// pcap files of D-Bus messages (lib/commands/pcap.ts): the header and record
// layout busctl capture of 2015 wrote, the snapshot length, and the reader
// (either byte order, a capture cut short).
import t from 'tap';
import { DEFAULT_SNAPLEN, LINKTYPE_DBUS, pcapFileHeader, pcapRecord, readPcap } from '../../lib/commands/pcap.js';

t.test('the file header: magic, version 2.4, UTC, snaplen, link type 231', async (t) => {
  const h = pcapFileHeader(DEFAULT_SNAPLEN);
  t.equal(h.toString('hex'), 'd4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + '00100000' + 'e7000000');
  t.equal(LINKTYPE_DBUS, 231);
});

t.test('a record: the stamp, the kept and the original length, the bytes', async (t) => {
  const r = pcapRecord([Buffer.from('head'), Buffer.from('body!')], 1_700_000_000_123_456n, 4096);
  t.equal(r.readUInt32LE(0), 1_700_000_000, 'seconds');
  t.equal(r.readUInt32LE(4), 123_456, 'microseconds');
  t.equal(r.readUInt32LE(8), 9, 'incl_len');
  t.equal(r.readUInt32LE(12), 9, 'orig_len');
  t.equal(r.subarray(16).toString(), 'headbody!', 'the parts in order');
  const cut = pcapRecord([Buffer.alloc(100, 7)], 0n, 10);
  t.same([cut.readUInt32LE(8), cut.readUInt32LE(12), cut.length], [10, 100, 26], 'cut at the snapshot length, orig_len kept');
});

t.test('read back', async (t) => {
  const file = Buffer.concat([pcapFileHeader(64), pcapRecord([Buffer.from('one')], 5_000_001n, 64),
    pcapRecord([Buffer.alloc(80, 1)], 6_000_000n, 64)]);
  const f = readPcap(file);
  t.same([f.versionMajor, f.versionMinor, f.snaplen, f.linkType], [2, 4, 64, 231]);
  t.same(f.records.map((r) => [r.tsSec, r.tsUsec, r.origLen, r.data.length]), [[5, 1, 3, 3], [6, 0, 80, 64]]);
  t.equal(f.records[0]!.data.toString(), 'one');
  t.throws(() => readPcap(file.subarray(0, file.length - 1)), /says 64 bytes, 63 left/, 'a record cut short is an error');
  t.equal(readPcap(file.subarray(0, file.length - 1), { partialTail: true }).records.length, 1, 'or ignored when asked');
  t.throws(() => readPcap(Buffer.alloc(24)), /not a microsecond pcap file/, 'another magic');
  t.throws(() => readPcap(Buffer.alloc(3)), /shorter than its header/);
  // the same file written big-endian
  const be = Buffer.alloc(24 + 16 + 2);
  be.writeUInt32BE(0xa1b2c3d4, 0); be.writeUInt16BE(2, 4); be.writeUInt16BE(4, 6); be.writeUInt32BE(64, 16); be.writeUInt32BE(231, 20);
  be.writeUInt32BE(9, 24); be.writeUInt32BE(2, 28); be.writeUInt32BE(2, 32); be.writeUInt32BE(2, 36); be.write('hi', 40);
  t.same(readPcap(be).records.map((r) => [r.tsSec, r.data.toString()]), [[9, 'hi']], 'big-endian files too');
});
