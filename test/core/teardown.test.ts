// Teardown in process (connection.c kdbus_conn_disconnect, bus.c,
// lib/core/census.ts): a connection that goes frees its names (they pass on,
// with NAME_REMOVE), its matches, its replies and its queue; BYEBYE refuses
// while messages wait; once every file is closed each census count is back
// to zero.
import t from 'tap';
import { HELLO_ACTIVATOR, ITEM, KDBUS_DST_ID_NAME, KDBUS_MATCH_ID_ANY, MSG_EXPECT_REPLY, NAME_QUEUE }
  from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { FakeWorld } from './fake-env.js';
import { item, str } from '../helpers.js';
import { inMs, makeBus, rule } from './client.js';

const POLLERR = 0x8, POLLHUP = 0x10;

t.test('a disconnect frees names, matches, replies and queue; others are told', async (t) => {
  const { connect, bus } = makeBus(t);
  const watcher = connect();
  t.equal(watcher.matchAdd(1n, [rule.nameChange(ITEM.NAME_REMOVE, KDBUS_MATCH_ID_ANY, KDBUS_MATCH_ID_ANY)]), 0);
  t.equal(watcher.matchAdd(2n, [rule.idChange(ITEM.ID_REMOVE, KDBUS_MATCH_ID_ANY)]), 0);
  const peer = connect();
  const going = connect();
  t.equal(going.acquire('org.example.Going').ret, 0);
  t.equal(going.acquire('org.example.Shared', NAME_QUEUE).ret, 0, 'no one has it: owned');
  t.equal(peer.acquire('org.example.Shared', NAME_QUEUE).ret, 0, 'queued behind going');
  t.equal(going.matchAdd(9n, []), 0);
  t.equal(going.send({ dst: peer.id, flags: MSG_EXPECT_REPLY, cookie: 1n, timeoutNs: inMs(10_000) }), 0);
  t.equal(peer.send({ dst: going.id, payload: Buffer.from('never read') }), 0);
  const conn = going.conn;
  t.equal(conn.replies.size, 1);
  t.equal(conn.queue.count, 1);

  t.equal(going.byebye(), -errno.EBUSY, 'BYEBYE refuses while a message waits');
  t.ok(conn.active);
  going.close();
  t.notOk(conn.active);
  t.equal(conn.replies.size, 0, 'its pending reply is gone');
  t.equal(conn.queue.count, 0, 'its queue is freed');
  t.equal(conn.pool.slicesInUse(), 0, "and the payloads' slices with it");
  t.equal(bus.names.lookup('org.example.Going'), null, 'its own name is gone');
  t.equal(bus.names.lookup('org.example.Shared')?.owner, peer.conn, 'a shared name passed on');
  t.equal(bus.connection(going.id), undefined);
  t.equal(going.file.poll(), POLLERR | POLLHUP, 'a dead connection polls HUP');

  const seen = watcher.drain();
  t.same(seen.map((m) => m.notification), [ITEM.NAME_REMOVE, ITEM.ID_REMOVE],
    'NAME_REMOVE for the name that went, then ID_REMOVE (a name passing on is a NAME_CHANGE)');
  t.equal(peer.recv().msg?.cookie, 1n, "its request is still with the peer");
  t.equal(peer.send({ dst: going.id, cookieReply: 1n }), -errno.ENXIO, 'a reply has no one to go to');
});

t.test('BYEBYE on an empty queue ends the connection; the file is of no more use', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(a.byebye(), 0);
  t.equal(a.byebye(), -errno.EALREADY);
  t.equal(a.send({ dst: b.id }), -errno.ECONNRESET, 'every command after it: ECONNRESET');
  t.equal(b.send({ dst: a.id }), -errno.ENXIO);
});

t.test('every census count goes back to zero once every file is closed', async (t) => {
  const world = new FakeWorld();
  const zero = world.counts();
  t.equal(zero.buses + zero.connections + zero.handles + zero.users, 0, 'an empty domain counts nothing');

  const b = makeBus(t, world);
  const activator = b.connect({ flags: HELLO_ACTIVATOR, items: [item(ITEM.NAME, str('org.example.Lazy'))] });
  const clients = Array.from({ length: 4 }, () => b.connect());
  const [c0, c1, c2, c3] = clients as [typeof activator, typeof activator, typeof activator, typeof activator];
  t.equal(c0.acquire('org.example.A').ret, 0);
  t.equal(c1.acquire('org.example.A', NAME_QUEUE).ret, 0);
  t.equal(c1.matchAdd(1n, [rule.senderId(c0.id)]), 0);
  t.equal(c0.send({ dst: c1.id, payload: Buffer.from('queued') }), 0);
  t.equal(c0.send({ dst: KDBUS_DST_ID_NAME, dstName: 'org.example.Lazy', payload: Buffer.from('for later') }), 0);
  t.equal(c2.send({ dst: c3.id, flags: MSG_EXPECT_REPLY, cookie: 1n, timeoutNs: inMs(10_000) }), 0);
  const parked = c3.call({ dst: c2.id, flags: MSG_EXPECT_REPLY, cookie: 2n, timeoutNs: inMs(10_000) });
  const fd = world.openFd(c0.conn.tid, 'file');
  t.equal(c0.send({ dst: c2.id, fds: [fd] }), 0);

  const busy = world.counts();
  t.equal(busy.buses, 1);
  t.equal(busy.connections, 5);
  t.equal(busy.handles, 6, 'the control file and five endpoint files');
  t.equal(busy.names, 2, 'org.example.A and the activator name');
  t.equal(busy.nameWaiters, 1);
  t.equal(busy.matches, 1);
  t.equal(busy.replies, 2);
  t.equal(busy.parked, 1);
  t.equal(busy.queued, 5, 'at c1, at the activator, the request and the call, at c2 with an fd');
  t.equal(busy.heldFds, 1);
  t.equal(busy.poolSlices, 2, 'the payloads of the two messages that have one');
  t.equal(busy.users, 1, 'one user, charged for a bus and five connections');
  t.equal(busy.userCharges, 6);

  for (const c of [activator, ...clients]) c.close();
  t.equal(await parked.pending.answered, -errno.EPIPE, 'the parked call is answered as its replier (c2) closes');
  b.control.close();
  t.same(world.counts(), zero, 'back to zero: nothing left behind');
  t.equal(world.domain.buses.size, 0);
});
