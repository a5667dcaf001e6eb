// Quotas in process (ipc/kdbus/limits.h, connection.c
// kdbus_conn_entry_insert / kdbus_conn_quota_inc): a receiver takes 16
// messages from anyone (KDBUS_CONN_MAX_MSGS_UNACCOUNTED), then 16 more per
// sending user (KDBUS_CONN_MAX_MSGS_PER_USER): the next unicast is ENOBUFS,
// a broadcast is counted as lost and reported at the next RECV. Pool space
// is a quota of its own.
import t, { type Test as Tap } from 'tap';
import { KDBUS_DST_ID_BROADCAST, LIMITS, MSG_SIGNAL } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { DEFAULT_LIMITS, type UserLimits } from '../../lib/core/user.js';
import { makeBus } from './client.js';
import { FakeWorld } from './fake-env.js';

const QUOTA = LIMITS.CONN_MAX_MSGS_UNACCOUNTED + LIMITS.CONN_MAX_MSGS_PER_USER;

t.test('16 + 16 messages from one user, then ENOBUFS until a charged one is received', async (t) => {
  t.equal(QUOTA, 32, "kdbus's limits");
  const { world, connect } = makeBus(t);
  const a = connect();
  const other = connect(); // the same user: the quota is per user, not per connection
  const b = connect();
  for (let i = 0; i < QUOTA; i++) {
    if (a.send({ dst: b.id, payload: Buffer.from(`m${i}`) }) !== 0) t.fail(`message ${i} refused`);
  }
  t.equal(b.conn.queue.count, QUOTA);
  t.equal(world.counts().chargedMessages, LIMITS.CONN_MAX_MSGS_PER_USER, 'the 16 past the free share are charged');
  t.equal(a.send({ dst: b.id }), -errno.ENOBUFS, 'the 33rd is refused');
  t.equal(other.send({ dst: b.id }), -errno.ENOBUFS, 'from any connection of that user');
  t.equal(b.conn.queue.count, QUOTA, 'nothing was queued');

  // the first 16 were queued free of charge: receiving them frees no charge
  for (let i = 0; i < LIMITS.CONN_MAX_MSGS_UNACCOUNTED; i++) t.equal(b.recv().msg?.payload.toString(), `m${i}`);
  t.equal(a.send({ dst: b.id }), -errno.ENOBUFS, 'the charged 16 still count against the user');
  t.equal(b.recv().msg?.payload.toString(), 'm16', 'the first charged one received');
  t.equal(world.counts().chargedMessages, LIMITS.CONN_MAX_MSGS_PER_USER - 1);
  // 15 queued: one fits in the free share again, and one in the charge returned
  t.equal(a.send({ dst: b.id, payload: Buffer.from('m32') }), 0, 'below 16 queued: free of charge');
  t.equal(world.counts().chargedMessages, LIMITS.CONN_MAX_MSGS_PER_USER - 1);
  t.equal(a.send({ dst: b.id, payload: Buffer.from('m33') }), 0, 'charged again');
  t.equal(world.counts().chargedMessages, LIMITS.CONN_MAX_MSGS_PER_USER);
  t.equal(a.send({ dst: b.id }), -errno.ENOBUFS);

  const rest = b.drain();
  t.equal(rest.length, 17);
  t.same(rest.slice(-2).map((m) => m.payload.toString()), ['m32', 'm33']);
  t.equal(world.counts().chargedMessages, 0, 'every charge returned');
  t.equal(a.send({ dst: b.id }), 0);
});

t.test('a broadcast past the quota is lost, and the receiver is told how many', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(b.matchAdd(1n, []), 0);
  for (let i = 0; i < QUOTA; i++) t.equal(a.send({ dst: b.id }), 0);
  const signal = { dst: KDBUS_DST_ID_BROADCAST, flags: MSG_SIGNAL, bloom: { generation: 0n, words: Array<bigint>(8).fill(0n) } };
  t.equal(a.send(signal), 0, 'a broadcast does not fail for one full receiver');
  t.equal(a.send(signal), 0);
  t.equal(b.conn.queue.count, QUOTA, 'but it is not queued there');

  const r = b.recv();
  t.equal(r.ret, -errno.EOVERFLOW, 'the next RECV reports the loss');
  t.equal(r.dropped, 2n, 'dropped_msgs counts both');
  t.equal(b.recv().ret, 0, 'then receiving goes on');
});

t.test('pool space: a payload over half of what is free is EXFULL, over all of it ENOBUFS', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const small = connect({ poolSize: 4096 });
  t.equal(a.send({ dst: small.id, payload: Buffer.alloc(3000) }), -errno.EXFULL);
  t.equal(a.send({ dst: small.id, payload: Buffer.alloc(5000) }), -errno.ENOBUFS);
  t.equal(a.send({ dst: small.id, payload: Buffer.alloc(1000, 0x61) }), 0);
  t.equal(small.recv().msg?.payload.equals(Buffer.alloc(1000, 0x61)), true);
  t.equal(small.conn.pool.slicesInUse(), 0);
});

/** A bus in a world with these limits, counting the fds the server takes from clients. */
function countingTakes(t: Tap, limits: Partial<UserLimits>, fdBudget?: number) {
  const bus = makeBus(t, new FakeWorld({ ...DEFAULT_LIMITS, ...limits }));
  if (fdBudget !== undefined) bus.world.domain.users.setFdLimit(bus.world.domain.users.limits.server_fds_reserved + fdBudget);
  const counter = { takes: 0 };
  const took = bus.world.fdLedger.took.bind(bus.world.fdLedger);
  bus.world.fdLedger.took = (fd) => { counter.takes++; return took(fd); };
  return { ...bus, counter };
}

t.test('a SEND over its user_fds is refused before the server takes any of its fds', async (t) => {
  const { world, connect, counter } = countingTakes(t, { user_fds: 4 });
  const a = connect();
  const b = connect();
  const fd = world.openFd(a.conn.tid, 'file');
  t.equal(a.send({ dst: b.id, fds: [fd, fd, fd] }), 0, 'three fds: within user_fds 4');
  t.equal(counter.takes, 3);
  t.equal(a.send({ dst: b.id, fds: [fd, fd] }), -errno.EMFILE, 'two more: EMFILE');
  t.equal(counter.takes, 3, 'none of them taken');
  t.equal(a.send({ dst: b.id, fds: [fd] }), 0, 'one more fits');
  t.equal(counter.takes, 4);
  t.equal(world.counts().heldFds, 4);
});

t.test("a SEND past the server's fd budget is refused before the server takes any of its fds", async (t) => {
  const { world, connect, counter } = countingTakes(t, {}, 4);
  const a = connect();
  const b = connect();
  const fd = world.openFd(a.conn.tid, 'file');
  t.equal(a.send({ dst: b.id, fds: [fd, fd, fd] }), 0, 'three fds: within the budget of 4');
  t.equal(a.send({ dst: b.id, fds: [fd, fd] }), -errno.EMFILE, 'two more: EMFILE');
  t.equal(counter.takes, 3, 'none of them taken');
  t.equal(a.send({ dst: b.id, fds: [fd + 50] }), -errno.EBADF, 'within the budget, the fds are looked at as before');
});
