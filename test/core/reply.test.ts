// Reply tracking in process (ipc/kdbus/reply.c, connection.c): a message
// with EXPECT_REPLY makes the sender wait for a reply with that cookie from
// that receiver; only such a reply is let through, once; an unanswered
// request ends in a REPLY_TIMEOUT notification, one whose replier goes away or
// drops it in REPLY_DEAD; a waiter has at most 128 requests pending.
import t from 'tap';
import { HELLO_ACTIVATOR, ITEM, KDBUS_DST_ID_NAME, LIMITS, MSG_EXPECT_REPLY, RECV_DROP } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { item, str, until } from '../helpers.js';
import { inMs, makeBus } from './client.js';

const request = (dst: bigint, cookie: bigint, ms = 10_000) =>
  ({ dst, flags: MSG_EXPECT_REPLY, cookie, timeoutNs: inMs(ms), payload: Buffer.from(`request ${cookie}`) });

t.test('a reply with the cookie goes through once; others are refused', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const c = connect();
  t.equal(a.send(request(b.id, 41n)), 0);
  t.equal(a.conn.replies.size, 1, 'the sender waits for one reply');
  const req = b.recv().msg!;
  t.equal(req.cookie, 41n);
  t.equal(req.flags & MSG_EXPECT_REPLY, MSG_EXPECT_REPLY);

  t.equal(b.send({ dst: a.id, cookieReply: 40n }), -errno.EPERM, 'a wrong cookie is no reply');
  t.equal(c.send({ dst: a.id, cookieReply: 41n }), -errno.EPERM, 'nor is the right cookie from someone else');
  t.equal(b.send({ dst: a.id, cookieReply: 41n, payload: Buffer.from('the answer') }), 0);
  t.equal(a.conn.replies.size, 0, 'the wait is over');
  t.equal(b.send({ dst: a.id, cookieReply: 41n }), -errno.EPERM, 'a second reply is refused');

  const [reply, ...rest] = a.drain();
  t.equal(rest.length, 0);
  t.equal(reply?.cookieReply, 41n);
  t.equal(reply?.srcId, b.id);
  t.equal(reply?.payload.toString(), 'the answer');
});

t.test('an unanswered request times out: REPLY_TIMEOUT from the kernel, late replies refused', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const sent = Date.now();
  t.equal(a.send(request(b.id, 7n, 30)), 0);
  t.ok(await until(() => a.conn.queue.count > 0, 2000, 5), 'the timeout notification comes');
  t.ok(Date.now() - sent >= 29, 'not before the deadline');
  const [n] = a.drain();
  t.equal(n?.notification, ITEM.REPLY_TIMEOUT);
  t.equal(n?.srcId, 0n, 'from the kernel');
  t.equal(n?.cookieReply, 7n, 'naming the request');
  t.equal(a.conn.replies.size, 0);
  t.equal(b.recv().msg?.cookie, 7n, 'the request itself was delivered');
  t.equal(b.send({ dst: a.id, cookieReply: 7n }), -errno.EPERM, 'a reply after the timeout is refused');
});

t.test('a replier that goes away or drops the request: REPLY_DEAD', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const dropper = connect();
  const leaver = connect();
  t.equal(a.send(request(dropper.id, 1n)), 0);
  t.equal(a.send(request(leaver.id, 2n)), 0);
  t.equal(dropper.recv(RECV_DROP).ret, 0, 'dropped unread');
  // read first: a request still queued at a leaver adds a REPLY_DEAD of its own, as in kdbus_conn_disconnect
  t.equal(leaver.recv().msg?.cookie, 2n);
  leaver.close();
  const notes = a.drain();
  t.same(notes.map((m) => [m.notification, m.cookieReply]), [[ITEM.REPLY_DEAD, 1n], [ITEM.REPLY_DEAD, 2n]]);
  t.equal(a.conn.replies.size, 0);
});

t.test('a request to a name moved from an activator is answered by the new owner', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const activator = connect({ flags: HELLO_ACTIVATOR, items: [item(ITEM.NAME, str('org.example.Echo'))] });
  t.equal(a.send({ ...request(KDBUS_DST_ID_NAME, 3n), dstName: 'org.example.Echo' }), 0);
  t.equal(activator.conn.queue.count, 1, 'the request waits at the activator');
  const owner = connect();
  t.equal(owner.acquire('org.example.Echo').ret, 0);
  const req = owner.recv().msg!;
  t.equal(req.cookie, 3n, 'it moved to the owner');
  t.equal(owner.send({ dst: req.srcId, cookieReply: req.cookie, payload: Buffer.from('echo') }), 0,
    'the owner may answer what the activator was asked');
  const [reply] = a.drain();
  t.equal(reply?.cookieReply, 3n);
  t.equal(reply?.srcId, owner.id);
  t.equal(a.conn.replies.size, 0);
});

t.test('at most 128 requests pending per waiter: EMLINK', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  // one receiver takes at most 32 messages from one user (the quota): spread them
  const receivers = Array.from({ length: 5 }, () => connect());
  let sent = 0;
  for (let i = 0; sent < LIMITS.CONN_MAX_REQUESTS_PENDING; i++) {
    t.equal(a.send(request(receivers[Math.floor(i / 30)]!.id, BigInt(i + 1))), 0);
    sent++;
  }
  t.equal(a.conn.replies.size, LIMITS.CONN_MAX_REQUESTS_PENDING);
  t.equal(a.send(request(receivers[4]!.id, 1000n)), -errno.EMLINK);
  t.equal(a.send({ dst: receivers[4]!.id }), 0, 'a message expecting no reply still goes');
  t.equal(a.send({ dst: receivers[0]!.id, flags: MSG_EXPECT_REPLY, cookie: 5n }), -errno.EINVAL,
    'EXPECT_REPLY needs a timeout');
});
