// In process: the client's command building and decoding of what the kernel
// writes into a pool (messages, notifications, metadata, info records, name
// lists), on hand-built buffers laid out per kdbus.h; and its errors.
import t from 'tap';
import { INFO, ITEM, MSG, MSG_EXPECT_REPLY, NAME_INFO } from '../../lib/abi/kdbus.js';
import { CommandBuilder } from '../../lib/client/command.js';
import { KdbusClientError, commandError, errnoName } from '../../lib/client/errors.js';
import { decodeInfo, decodeNameList } from '../../lib/client/info.js';
import { addMatchRule } from '../../lib/client/match-items.js';
import { decodeMessage } from '../../lib/client/message.js';
import { rawItems } from '../../lib/client/metadata.js';

/** A pool holding cmd at offset `at`, with `extra` bytes placed at `extraAt`. */
function pool(cmd: Buffer, at: number, extra?: { at: number; data: Buffer }): Buffer {
  const p = Buffer.alloc(64 * 1024);
  cmd.copy(p, at);
  extra?.data.copy(p, extra.at);
  return p;
}

const u32s = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);

t.test('a message with payload, fds, name and metadata', async (t) => {
  const payloadAt = 8192;
  const cmd = new CommandBuilder(MSG.items)
    .string(ITEM.DST_NAME, 'org.example.Dst')
    .u64s(ITEM.PAYLOAD_OFF, [5, payloadAt])
    .u64s(ITEM.PAYLOAD_OFF, [3, 0xffff_ffff_ffff_ffffn])
    .s32s(ITEM.FDS, [7, -1])
    .bytes(ITEM.CREDS, u32s(1, 2, 3, 4, 5, 6, 7, 8))
    .u64s(ITEM.PIDS, [100, 101, 1])
    .bytes(ITEM.AUXGROUPS, u32s(10, 20))
    .string(ITEM.OWNED_NAME, 'org.example.Src', [4])
    .string(ITEM.PID_COMM, 'node')
    .bytes(ITEM.CMDLINE, Buffer.from('node\0agent.mjs\0'))
    .bytes(ITEM.CAPS, Buffer.concat([u32s(40), u32s(1, 0), u32s(2, 0), u32s(3, 1), u32s(0xffffffff, 0x1ff)]))
    .bytes(ITEM.AUDIT, u32s(9, 1000))
    .u64s(ITEM.TIMESTAMP, [1, 2, 3])
    .finish({ [MSG.flags]: MSG_EXPECT_REPLY, [MSG.priority]: -4, [MSG.src_id]: 12, [MSG.dst_id]: 13, [MSG.cookie]: 77, [MSG.timeout_ns]: 5_000_000 });
  const msgAt = 4096;
  const p = pool(cmd, msgAt, { at: payloadAt, data: Buffer.from('hello') });
  let freed = 0;
  const m = decodeMessage(p, msgAt, false, () => { freed++; }, { peeked: false, incompleteFds: false });
  t.match(m, { srcId: 12n, dstId: 13n, cookie: 77n, priority: -4n, expectReply: true, timeoutNs: 5_000_000n, cookieReply: 0n,
    dstName: 'org.example.Dst', fds: [7, -1], offset: msgAt }, 'header, DST_NAME and FDS');
  t.same(m.payload.map((b) => b.toString('latin1')), ['hello', '\0\0\0'], 'PAYLOAD_OFF from the pool start; a null vec is zeros');
  t.same(m.metadata.creds, { uid: 1, euid: 2, suid: 3, fsuid: 4, gid: 5, egid: 6, sgid: 7, fsgid: 8 }, 'creds');
  t.same(m.metadata.pids, { pid: 100, tid: 101, ppid: 1 }, 'pids');
  t.same(m.metadata.auxGroups, [10, 20], 'auxgroups');
  t.same(m.metadata.ownedNames, [{ name: 'org.example.Src', flags: 4n }], 'owned names');
  t.same(m.metadata.cmdline, ['node', 'agent.mjs'], 'cmdline split at NULs');
  t.same(m.metadata.caps, { lastCap: 40, inheritable: 1n, permitted: 2n, effective: 3n | (1n << 32n), bounding: 0x1ff_ffff_ffffn },
    'caps: four sets of two words, low word first');
  t.same(m.metadata.audit, { sessionId: 9, loginUid: 1000 }, 'audit');
  t.same(m.metadata.timestamp, { seqnum: 1n, monotonicNs: 2n, realtimeNs: 3n }, 'timestamp');

  p.write('HELLO', payloadAt, 'latin1');
  t.equal(m.payload[0]!.toString(), 'HELLO', 'the payload is a view of the pool');
  const copy = decodeMessage(p, msgAt, true, () => undefined, { peeked: false, incompleteFds: false });
  p.write('xxxxx', payloadAt, 'latin1');
  t.equal(copy.payload[0]!.toString(), 'HELLO', 'a copy is not');
  m.free();
  t.equal(freed, 1, 'free() calls the connection\'s FREE');
});

t.test('notifications', async (t) => {
  const name = new CommandBuilder(MSG.items).string(ITEM.NAME_CHANGE, 'org.x', [1, 0, 2, 4]).finish({ [MSG.cookie]: 5 });
  t.same(decodeMessage(pool(name, 0), 0, true, () => undefined, { peeked: false, incompleteFds: false }).notification,
    { type: 'name-change', oldId: 1n, oldFlags: 0n, newId: 2n, newFlags: 4n, name: 'org.x' }, 'NAME_CHANGE');
  const id = new CommandBuilder(MSG.items).u64s(ITEM.ID_REMOVE, [9, 1]).finish();
  t.same(decodeMessage(pool(id, 0), 0, true, () => undefined, { peeked: false, incompleteFds: false }).notification,
    { type: 'id-remove', id: 9n, flags: 1n }, 'ID_REMOVE');
  const dead = new CommandBuilder(MSG.items).bytes(ITEM.REPLY_DEAD, Buffer.alloc(0)).finish({ [MSG.timeout_ns]: 33 });
  const d = decodeMessage(pool(dead, 0), 0, true, () => undefined, { peeked: false, incompleteFds: false });
  t.same(d.notification, { type: 'reply-dead', cookie: 33n }, 'REPLY_DEAD names the call by cookie_reply');
  const fromPeer = new CommandBuilder(MSG.items).u64s(ITEM.ID_ADD, [1, 0]).finish({ [MSG.src_id]: 4 });
  t.equal(decodeMessage(pool(fromPeer, 0), 0, true, () => undefined, { peeked: false, incompleteFds: false }).notification, undefined,
    'notification items count only from the kernel (src_id 0)');
});

t.test('info records and name lists', async (t) => {
  const info = new CommandBuilder(INFO.items).string(ITEM.MAKE_NAME, '0-bus').u64s(ITEM.BLOOM_PARAMETER, [64, 3])
    .string(ITEM.CONN_DESCRIPTION, 'desc').u64s(0x9999, [1]).finish({ [INFO.id]: 2, [INFO.flags]: 1 });
  const i = decodeInfo(pool(info, 128), 128);
  t.match(i, { id: 2n, flags: 1n, busName: '0-bus', bloom: { size: 64, nHash: 3 }, metadata: { description: 'desc' } }, 'a kdbus_info');
  t.same(i.otherItems.map((x) => x.type), [0x9999], 'unknown items are kept raw');

  const a = new CommandBuilder(NAME_INFO.items).string(ITEM.OWNED_NAME, 'org.a', [8]).finish({ [NAME_INFO.owner_id]: 3, [NAME_INFO.conn_flags]: 1 });
  const b = new CommandBuilder(NAME_INFO.items).finish({ [NAME_INFO.owner_id]: 4 });
  const list = Buffer.concat([Buffer.alloc(8), a, b]);
  list.writeBigUInt64LE(BigInt(list.length), 0);
  t.same(decodeNameList(pool(list, 256), 256), [
    { ownerId: 3n, connFlags: 1n, name: 'org.a', nameFlags: 8n, metadata: {} },
    { ownerId: 4n, connFlags: 0n, metadata: {} },
  ], 'a kdbus_name_list: a named entry and a bare id');
});

t.test('match rules as items', async (t) => {
  const cmd = new CommandBuilder(0);
  addMatchRule(cmd, { bloomMask: Buffer.alloc(16, 1), name: 'org.n', id: 5, nameAdd: {}, idRemove: { id: 7 } });
  const buf = cmd.finish();
  const its = [...rawItems(buf, 0, buf.length)];
  t.same(its.map((x) => x.type), [ITEM.BLOOM_MASK, ITEM.NAME, ITEM.ID, ITEM.NAME_ADD, ITEM.ID_REMOVE], 'one item per field, in kdbus order');
  t.equal(its[0]!.data.length, 16, 'the mask as given');
  t.equal(its[1]!.data.toString(), 'org.n\0', 'a NUL-terminated name');
  t.same([its[3]!.data.readBigUInt64LE(0), its[3]!.data.readBigUInt64LE(16), its[3]!.data.length],
    [0xffff_ffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn, 32], 'absent ids in a name rule: KDBUS_MATCH_ID_ANY, no name: any name');
  t.equal(its[4]!.data.readBigUInt64LE(0), 7n, 'an id rule\'s id');
});

t.test('errors name the errno, the command and, where ambiguous, why', async (t) => {
  const e = commandError('SEND', -6);
  t.ok(e instanceof KdbusClientError && e instanceof Error, 'a KdbusClientError is an Error');
  t.match(e, { code: 'ENXIO', errno: 6, command: 'SEND', why: /destination connection id/ }, 'ENXIO on SEND: the id is gone');
  t.match(commandError('SEND', -3), { code: 'ESRCH', why: /not owned/ }, 'ESRCH on SEND: the name is not owned');
  t.match(commandError('CONN_INFO', -3), { code: 'ESRCH', why: /owns that name/ }, 'the same errno means something else for CONN_INFO');
  t.equal(commandError('SEND', -5).why, undefined, 'no guess where the errno says it all');
  t.equal(errnoName(78), 'EREMCHG', 'errnos Node does not name come from the core\'s table');
  t.equal(errnoName(95), 'EOPNOTSUPP', 'EOPNOTSUPP, as kdbus.txt spells it');
});
