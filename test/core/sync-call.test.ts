// Synchronous calls in process (connection.c kdbus_conn_wait_reply,
// kdbus_conn_entry_sync_attach; lib/core/call.ts): a SEND with SYNC_REPLY
// is parked, not answered; the reply answers it, written into the caller's
// pool and command; the deadline, a CANCEL_FD, the replier going away (EPIPE)
// or the caller's own connection going away (ECONNRESET) end it otherwise.
import t from 'tap';
import { ITEM, MSG_EXPECT_REPLY, RECV_DROP } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { item } from '../helpers.js';
import { inMs, makeBus } from './client.js';

const int32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
const call = (dst: bigint, cookie: bigint, ms = 10_000) =>
  ({ dst, flags: MSG_EXPECT_REPLY, cookie, timeoutNs: inMs(ms), payload: Buffer.from('ping') });

t.test('the call parks; the reply answers it, straight into the caller', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = a.call(call(b.id, 11n));
  t.equal(c.pending.result, undefined, 'parked, not answered');
  t.equal(world.counts().parked, 1);

  const req = b.recv().msg!;
  t.equal(req.payload.toString(), 'ping');
  t.equal(b.send({ dst: a.id, cookieReply: 11n, payload: Buffer.from('pong') }), 0);
  t.equal(await c.pending.answered, 0, 'answered by the reply');
  const reply = c.reply();
  t.equal(reply.cookieReply, 11n);
  t.equal(reply.srcId, b.id);
  t.equal(reply.payload.toString(), 'pong');
  t.equal(a.conn.queue.count, 0, 'the reply never went through the queue');
  t.equal(world.counts().parked, 0);
  t.equal(a.conn.replies.size, 0);
});

t.test('the replier goes away: EPIPE', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = a.call(call(b.id, 1n));
  t.equal(c.pending.result, undefined);
  t.equal(b.recv().msg?.cookie, 1n, 'the replier read the call');
  b.close();
  t.equal(await c.pending.answered, -errno.EPIPE);
  t.equal(world.counts().parked, 0);
  t.equal(a.drain().length, 0, 'no REPLY_DEAD besides: the caller learned it from the SEND');
});

t.test('the replier drops the call unread: EPIPE', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = a.call(call(b.id, 1n));
  t.equal(b.recv(RECV_DROP).ret, 0);
  t.equal(await c.pending.answered, -errno.EPIPE);
});

t.test('the deadline passes: ETIMEDOUT, and the late reply is refused', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const started = Date.now();
  const c = a.call(call(b.id, 2n, 25));
  t.equal(await c.pending.answered, -errno.ETIMEDOUT);
  t.ok(Date.now() - started >= 24, 'not before the deadline');
  t.equal(b.recv().msg?.cookie, 2n);
  t.equal(b.send({ dst: a.id, cookieReply: 2n }), -errno.EPERM);
  t.equal(world.counts().parked, 0);
  t.equal(a.drain().length, 0, 'no REPLY_TIMEOUT notification for a synchronous call');
});

t.test('a deadline already past fails at once', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = a.call({ ...call(b.id, 3n), timeoutNs: inMs(-1) });
  t.equal(c.pending.result, -errno.ETIMEDOUT);
  t.equal(a.conn.replies.size, 0);
});

t.test('CANCEL_FD readable: ECANCELED, the fd let go', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const fd = world.openFd(a.conn.tid, 'file');
  const c = a.call(call(b.id, 4n), [item(ITEM.CANCEL_FD, int32(fd))]);
  t.equal(c.pending.result, undefined);
  t.equal(world.watches.size, 1, 'the cancel fd is watched');
  t.equal(world.counts().heldFds, 1);
  for (const w of world.watches.values()) w.onReadable();
  t.equal(await c.pending.answered, -errno.ECANCELED);
  t.equal(world.watches.size, 0);
  t.equal(world.counts().heldFds, 0);
});

t.test("the caller's own connection goes: ECONNRESET", async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = a.call(call(b.id, 5n));
  a.close();
  t.equal(await c.pending.answered, -errno.ECONNRESET);
  t.equal(world.counts().parked, 0);
  t.equal(b.recv().msg?.cookie, 5n, 'the request was delivered');
  t.equal(b.send({ dst: a.id, cookieReply: 5n }), -errno.ENXIO, 'and has no one to answer to');
});

t.test('SYNC_REPLY needs EXPECT_REPLY; a reply with fds is installed before the answer', async (t) => {
  const { world, connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(a.call({ dst: b.id }).pending.result, -errno.EINVAL);

  const c = a.call(call(b.id, 6n));
  b.recv();
  const fd = world.openFd(b.conn.tid, 'file');
  t.equal(b.send({ dst: a.id, cookieReply: 6n, fds: [fd] }), 0);
  t.equal(c.pending.result, undefined, 'still parked while the fd is installed');
  t.equal(await c.pending.answered, 0);
  const reply = c.reply();
  t.equal(reply.fds.length, 1);
  t.equal(world.fdTable(a.conn.tid).get(reply.fds[0]!), 'file', 'the caller has the fd');
  t.equal(world.counts().heldFds, 0);
});
