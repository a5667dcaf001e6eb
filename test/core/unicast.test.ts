// Unicast routing in process (ipc/kdbus/bus.c kdbus_bus_find_conn_by_id,
// connection.c kdbus_cmd_send / kdbus_conn_entry_insert): a message sent by
// id or by well-known name lands in exactly its receiver's queue, its payload
// copied into the receiver's pool, the receiver's poller woken; the errnos of
// a missing or mismatched destination; fds passed through a RECV that waits
// for their install.
import t from 'tap';
import { ITEM, KDBUS_DST_ID_NAME, RECV_PEEK } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { item, u64s } from '../helpers.js';
import { makeBus } from './client.js';

const POLLIN = 0x1;

t.test('a message to a unique id reaches that connection only, payload and header intact', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = connect();
  t.not(a.id, b.id, 'HELLO hands out distinct ids');
  // HELLO's pool slice: { u64 size; the BLOOM_PARAMETER item }
  t.same(b.helloItems, Buffer.concat([u64s(40n), item(ITEM.BLOOM_PARAMETER, u64s(64n, 1n))]),
    "HELLO hands over the bus's bloom parameters");
  const wakeupsBefore = b.file.wakeups;
  t.equal(b.file.poll() & POLLIN, 0, 'nothing to read yet');

  t.equal(a.send({ dst: b.id, cookie: 7n, priority: -3n, payload: Buffer.from('hello, b') }), 0);
  t.equal(b.file.wakeups, wakeupsBefore + 1, "the receiver's poller is woken once");
  t.equal(b.file.poll() & POLLIN, POLLIN, 'the receiver polls readable');

  const r = b.recv();
  t.equal(r.ret, 0);
  t.ok(r.msg);
  t.equal(r.msg!.srcId, a.id, 'src_id is the sender');
  t.equal(r.msg!.dstId, b.id);
  t.equal(r.msg!.cookie, 7n);
  t.equal(r.msg!.priority, -3n);
  t.equal(r.msg!.payload.toString(), 'hello, b', 'the payload vector arrives byte for byte');
  t.equal(b.recv().ret, -errno.EAGAIN, 'one message, received once');
  t.equal(c.recv().ret, -errno.EAGAIN, 'a bystander gets nothing');
  t.equal(a.recv().ret, -errno.EAGAIN, 'the sender gets nothing back');
  t.equal(b.file.poll() & POLLIN, 0, 'drained');
  t.equal(b.conn.pool.slicesInUse(), 0, 'FREE gave the slice back');
  t.equal(world.counts().queued, 0);
});

t.test('PEEK leaves the message queued; order is FIFO', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  for (const word of ['one', 'two', 'three']) t.equal(a.send({ dst: b.id, payload: Buffer.from(word) }), 0);
  const peeked = b.recv(RECV_PEEK);
  t.equal(peeked.msg?.payload.toString(), 'one');
  t.same(b.drain().map((m) => m.payload.toString()), ['one', 'two', 'three']);
});

t.test('a message to a well-known name reaches its owner and says which name', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(b.acquire('org.example.B').ret, 0);

  t.equal(a.send({ dst: KDBUS_DST_ID_NAME, dstName: 'org.example.B', payload: Buffer.from('by name') }), 0);
  const m = b.recv().msg!;
  t.equal(m.dstName, 'org.example.B', 'the DST_NAME item comes along');
  t.equal(m.srcId, a.id);
  t.equal(m.payload.toString(), 'by name');

  // a name plus the id of its owner is accepted; another id is EREMCHG
  t.equal(a.send({ dst: b.id, dstName: 'org.example.B' }), 0);
  t.equal(b.recv().msg?.dstName, 'org.example.B');
  t.equal(a.send({ dst: a.id, dstName: 'org.example.B' }), -errno.EREMCHG);
  t.equal(a.send({ dst: KDBUS_DST_ID_NAME, dstName: 'org.example.Nobody' }), -errno.ESRCH);
  t.equal(a.send({ dst: KDBUS_DST_ID_NAME }), -errno.EDESTADDRREQ, 'by name without a name');
  t.equal(b.recv().ret, -errno.EAGAIN, 'refused sends queue nothing');
});

t.test('unknown ids and bad message pointers are refused', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  t.equal(a.send({ dst: a.id + 100n }), -errno.ENXIO);
  const bad = a.run(0, Buffer.alloc(8)); // ioctl number 0: no such command
  t.equal(bad.ret, -errno.ENOTTY);
});

t.test('fds travel: RECV waits for their install, then shows the numbers the receiver got', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const fd = world.openFd(a.conn.tid, 'file');
  t.equal(a.send({ dst: b.id, fds: [fd], payload: Buffer.from('with fd') }), 0);
  t.equal(world.counts().heldFds, 1, 'the server holds its copy of the fd');

  const before = new Set(world.fdTable(b.conn.tid).keys());
  const r = await b.recvAsync();
  t.equal(r.ret, 0);
  t.equal(r.msg!.fds.length, 1);
  const got = r.msg!.fds[0]!;
  t.notOk(before.has(got), 'a number that was free in the receiver');
  t.equal(world.fdTable(b.conn.tid).get(got), 'file', 'the receiver now has that file');
  t.equal(r.msg!.payload.toString(), 'with fd');
  t.equal(world.counts().heldFds, 0, "the server's copy is closed once installed");
  t.equal(world.counts().parked, 0);

  // a receiver that did not HELLO with ACCEPT_FD refuses fds
  const noFds = connect({ flags: 0n });
  t.equal(a.send({ dst: noFds.id, fds: [fd] }), -errno.ECOMM);
  t.equal(world.counts().heldFds, 0, 'a refused send keeps no fd');
  t.equal(a.send({ dst: b.id, fds: [fd + 50] }), -errno.EBADF, 'an fd the sender does not have');
});
