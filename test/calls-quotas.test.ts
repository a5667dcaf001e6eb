// Method calls, replies and quotas end to end (issue #4): a real
// `kdbusfs mount DIR` in its own process (default passthrough pools), driven
// by real clients (test/clients/kdbus-peer.c, one process per connection),
// stopped with SIGTERM. What is asserted is what the kernel code does
// (ipc/kdbus/connection.c, reply.c, notify.c, queue.c, pool.c, bus.c,
// limits.h), beyond what the upstream selftests check:
//   1. EXPECT_REPLY: REPLY_TIMEOUT and REPLY_DEAD notifications, replies
//      with unknown cookies, KDBUS_CONN_MAX_REQUESTS_PENDING
//   2. synchronous calls (SEND with KDBUS_SEND_SYNC_REPLY): the reply in the
//      caller's pool, ETIMEDOUT, EPIPE, ECANCELED
//   3. a caller killed with SIGKILL while parked
//   4. a caller getting SIGINT (SA_RESTART handler) while parked
//   5. quotas: KDBUS_CONN_MAX_MSGS, the per-user share, lost messages
//      (EOVERFLOW), the receiver's pool (EXFULL / ENOBUFS)
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import {
  compileClient, connect, fails, hello, live, makeBus, mountType, needRootAndFuse, ok, Peer, peerSet, sleep,
  startServer, stopServer, withTimeout, type NewPeer, type Reply, type Tap,
} from './harness.js';

// kdbus.h values
const HELLO_ACCEPT_FD = 1;
const MSG_EXPECT_REPLY = 1;
const ITEM_REPLY_TIMEOUT = 0x8005;
const ITEM_REPLY_DEAD = 0x8006;
// limits.h
const CONN_MAX_MSGS = 256;
const CONN_MAX_MSGS_UNACCOUNTED = 16;
const CONN_MAX_MSGS_PER_USER = 16;
const CONN_MAX_REQUESTS_PENDING = 128;

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-calls-'));
chmodSync(tmp, 0o755); // uid 65534 peers must reach the mount inside
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);

// ---- helpers (the harness: test/harness.ts) ----

/** A test's peers (kdbus-peer processes), killed when the test ends. */
function peers(t: Tap): NewPeer {
  return peerSet(t, client);
}

/** A peer that dropped to uid (and gid) before opening anything. */
async function asUser(t: Tap, newPeer: NewPeer, name: string, uid: number): Promise<Peer> {
  const p = await newPeer(name);
  ok(t, await p.cmd(`setuid ${uid} ${uid}`), `${name}: drops to uid ${uid}`);
  return p;
}

/** The next notification of p (waits up to ms), freed; its notify= field. */
async function notification(t: Tap, p: Peer, what: string, ms = 2000): Promise<string> {
  const r = await p.cmd(`recv wait:${ms}`, ms + 3000);
  if (!r.ok) {
    t.fail(`${what}: no notification`, { answer: r.line });
    return '';
  }
  t.equal(r.kv.src, '0', `${what}: from the kernel (src_id 0)`);
  t.equal(r.kv.ptype, 'kernel', `${what}: payload_type KERNEL`);
  await p.cmd(`free ${r.kv.off}`);
  return r.kv.notify ?? '';
}

async function nothingQueued(t: Tap, p: Peer, what: string, ms = 150): Promise<void> {
  const r = await p.cmd(`recv wait:${ms}`, ms + 3000);
  t.equal(r.err, 'EAGAIN', what, { answer: r.line });
}

/** RECV (waiting up to ms); the message's slice is freed again. */
async function recvFree(p: Peer, ms = 0): Promise<Reply> {
  const r = await p.cmd(ms ? `recv wait:${ms}` : 'recv', ms + 5000);
  if (r.ok) await p.cmd(`free ${r.kv.off}`);
  return r;
}

/** Asserts a kernel reply notification (notify.c kdbus_notify_reply). */
function replyNotification(t: Tap, r: Reply, kind: 'reply-timeout' | 'reply-dead', waiter: Peer, cookie: number,
                           what: string): void {
  t.ok(r.ok, `${what}: a message arrives`, { answer: r.line });
  t.equal(r.kv.src, '0', `${what}: src_id KDBUS_SRC_ID_KERNEL`);
  t.equal(r.kv.dst, String(waiter.id), `${what}: dst_id is the waiter (not a broadcast)`);
  t.equal(r.kv.ptype, 'kernel', `${what}: payload_type KERNEL`);
  t.equal(r.kv.creply, String(cookie), `${what}: cookie_reply is the request's cookie`);
  t.equal(r.kv.cookie, '0', `${what}: cookie 0`);
  t.equal(r.kv.types, (kind === 'reply-timeout' ? ITEM_REPLY_TIMEOUT : ITEM_REPLY_DEAD).toString(16),
    `${what}: exactly one item, ${kind === 'reply-timeout' ? 'REPLY_TIMEOUT' : 'REPLY_DEAD'}`);
  t.equal(r.kv.notify, `${kind}:16`, `${what}: an item without payload (KDBUS_ITEM_SIZE(0))`);
  t.equal(r.kv.msize, '80', `${what}: struct kdbus_msg + the item, no metadata (attach_flags_recv 0)`);
}

// ---- 1. EXPECT_REPLY ----

async function replies(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_cmd_msg_send: EXPECT_REPLY makes a kdbus_reply
  // (reply.c kdbus_reply_new: EMLINK beyond KDBUS_CONN_MAX_REQUESTS_PENDING
  // per waiter) linked to the waiter. reply.c kdbus_reply_list_scan_work
  // sends REPLY_TIMEOUT when its deadline (absolute CLOCK_MONOTONIC) passes
  // and drops it. kdbus_conn_disconnect sends REPLY_DEAD for the requests
  // still queued in the dying connection (from its queue) and for every
  // reply object waiting on it (from the waiters' lists) — a request that
  // was never read is reported by both walks. kdbus_conn_check_access: a
  // message with cookie_reply must match a reply object of (replier, waiter,
  // cookie), else EPERM.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-reply');
  const a = await hello(t, await newPeer('waiter'), path);
  const b = await hello(t, await newPeer('replier'), path);
  const c = await hello(t, await newPeer('third'), path);

  fails(t, await c.cmd(`send ${a.id} cookie:1 reply:999 vec:8`), 'EPERM', 'a reply to a waiter with no request pending: EPERM');
  fails(t, await b.cmd(`send ${a.id} cookie:1 expect-abs:0 vec:8`), 'EINVAL', 'EXPECT_REPLY with timeout_ns 0: EINVAL');
  fails(t, await b.cmd(`send ${a.id} cookie:0 expect:1000 vec:8`), 'EINVAL', 'EXPECT_REPLY with cookie 0: EINVAL');
  fails(t, await b.cmd(`send bcast cookie:1 expect:1000 vec:8`), 'ENOTUNIQ', 'EXPECT_REPLY to the broadcast id: ENOTUNIQ');
  fails(t, await a.cmd('recv'), 'EAGAIN', 'none of them was queued');

  // REPLY_TIMEOUT
  const t0 = Date.now();
  ok(t, await a.cmd(`send ${b.id} cookie:100 expect:300 vec:16`), 'waiter → replier: EXPECT_REPLY, timeout in 300 ms');
  const req = await recvFree(b);
  t.equal(req.kv.cookie, '100', 'the replier receives the request', { answer: req.line });
  t.equal(Number(req.kv.flags) & MSG_EXPECT_REPLY, MSG_EXPECT_REPLY, 'flagged EXPECT_REPLY');
  fails(t, await a.cmd('recv'), 'EAGAIN', 'nothing for the waiter before the deadline');
  const to = await recvFree(a, 3000);
  const late = Date.now() - t0;
  replyNotification(t, to, 'reply-timeout', a, 100, 'REPLY_TIMEOUT');
  t.ok(late >= 250 && late < 3000, `REPLY_TIMEOUT comes at the deadline (${late} ms)`);
  fails(t, await b.cmd(`send ${a.id} cookie:101 reply:100 vec:8`), 'EPERM', 'a reply after the timeout: EPERM');
  await nothingQueued(t, a, 'one notification, nothing else');

  // deadlines: notified in deadline order; one already past at once
  ok(t, await a.cmd(`send ${b.id} cookie:110 expect:600 vec:8`), 'request 110, deadline in 600 ms');
  ok(t, await a.cmd(`send ${b.id} cookie:111 expect:200 vec:8`), 'request 111, deadline in 200 ms');
  ok(t, await a.cmd(`send ${b.id} cookie:112 expect:400 vec:8`), 'request 112, deadline in 400 ms');
  for (const c of [111, 112, 110]) {
    replyNotification(t, await recvFree(a, 3000), 'reply-timeout', a, c, `REPLY_TIMEOUT in deadline order: ${c}`);
  }
  ok(t, await a.cmd(`send ${b.id} cookie:113 expect-abs:1 vec:8`), 'request 113 with a deadline long past (timeout_ns 1)');
  const past = await recvFree(a, 1000);
  replyNotification(t, past, 'reply-timeout', a, 113, 'REPLY_TIMEOUT at once');
  const drained = await b.cmd('drain');
  t.equal(drained.kv.n, '4', 'the replier still got the four requests', { answer: drained.line });

  // REPLY_DEAD, request read
  ok(t, await a.cmd(`send ${b.id} cookie:200 expect:10000 vec:16`), 'waiter → replier: EXPECT_REPLY (10 s)');
  t.equal((await recvFree(b)).kv.cookie, '200', 'the replier reads the request');
  ok(t, await b.cmd('bye'), 'the replier disconnects without answering');
  replyNotification(t, await recvFree(a, 3000), 'reply-dead', a, 200, 'REPLY_DEAD');
  await nothingQueued(t, a, 'exactly one REPLY_DEAD (the request was no longer queued)');

  // RECV with DROP of a request (kdbus_cmd_msg_recv): REPLY_DEAD at once
  ok(t, await a.cmd(`send ${c.id} cookie:250 expect:10000 vec:16`), 'waiter → third: EXPECT_REPLY');
  ok(t, await c.cmd('recv drop'), 'the third drops it (RECV with KDBUS_RECV_DROP)');
  replyNotification(t, await recvFree(a, 3000), 'reply-dead', a, 250, 'REPLY_DEAD after DROP');
  fails(t, await c.cmd(`send ${a.id} cookie:251 reply:250 vec:8`), 'EPERM', 'the dropped request cannot be answered any more');

  // REPLY_DEAD, request unread
  const b2 = await hello(t, await newPeer('replier 2'), path);
  ok(t, await a.cmd(`send ${b2.id} cookie:300 expect:10000 vec:16`), 'waiter → replier 2: EXPECT_REPLY');
  ok(t, await b2.cmd('bye'), 'replier 2 disconnects without reading it');
  replyNotification(t, await recvFree(a, 3000), 'reply-dead', a, 300, 'REPLY_DEAD (unread)');
  const second = await recvFree(a, 500);
  t.equal(second.kv.notify, 'reply-dead:16',
    'the kernel reports an unread request twice: kdbus_conn_disconnect walks the dying queue (entry->reply) and then the waiters\' reply lists',
    { answer: second.line });
  t.equal(second.kv.creply, '300', 'both for cookie 300');
  await nothingQueued(t, a, 'nothing else');

  // unknown cookies
  const b3 = await hello(t, await newPeer('replier 3'), path);
  ok(t, await a.cmd(`send ${b3.id} cookie:400 expect:10000 vec:16`), 'waiter → replier 3: EXPECT_REPLY');
  fails(t, await b3.cmd(`send ${a.id} cookie:1 reply:401 vec:8`), 'EPERM', 'a reply with a cookie never sent: EPERM');
  fails(t, await c.cmd(`send ${a.id} cookie:1 reply:400 vec:8`), 'EPERM', 'the right cookie from a connection not asked: EPERM');
  fails(t, await b3.cmd(`send ${c.id} cookie:1 reply:400 vec:8`), 'EPERM', 'the right cookie to a connection that did not ask: EPERM');
  const sent = ok(t, await b3.cmd(`send ${a.id} cookie:402 reply:400 vec:100 vec:2000`), 'replier 3 answers cookie 400');
  const got = await recvFree(a);
  t.equal(got.kv.creply, '400', 'the waiter receives the reply: cookie_reply 400', { answer: got.line });
  t.equal(got.kv.src, String(b3.id), 'from replier 3');
  t.equal(got.kv.cookie, '402', 'with the replier\'s cookie');
  t.equal(got.kv.stream, sent.kv.stream, 'payload intact');
  fails(t, await b3.cmd(`send ${a.id} cookie:403 reply:400 vec:8`), 'EPERM', 'a second reply to the same request: EPERM');

  // KDBUS_CONN_MAX_REQUESTS_PENDING (128): spread over four receivers, as
  // one user may only queue 16 + 16 messages in each (see quotas)
  const rs: Peer[] = [];
  for (let i = 0; i < 5; i++) rs.push(await hello(t, await newPeer(`receiver ${i}`), path));
  const per = CONN_MAX_MSGS_UNACCOUNTED + CONN_MAX_MSGS_PER_USER;
  for (let i = 0; i < CONN_MAX_REQUESTS_PENDING / per; i++) {
    const r = await a.cmd(`sendmany ${rs[i]!.id} ${per} cookie:${1000 * (i + 1)} expect:30000 vec:8`);
    t.equal(r.kv.sent, String(per), `${per} requests pending on receiver ${i}`, { answer: r.line });
  }
  fails(t, await a.cmd(`send ${rs[4]!.id} cookie:5000 expect:30000 vec:8`), 'EMLINK',
    `the ${CONN_MAX_REQUESTS_PENDING + 1}th pending request: EMLINK`);
  ok(t, await a.cmd(`send ${rs[4]!.id} cookie:5001 vec:8`), 'a message that expects no reply still goes');
  ok(t, await rs[0]!.cmd(`send ${a.id} cookie:1 reply:1000 vec:8`), 'receiver 0 answers one request');
  ok(t, await a.cmd(`send ${rs[4]!.id} cookie:5002 expect:30000 vec:8`), 'one request slot is free again');
  fails(t, await a.cmd(`send ${rs[4]!.id} cookie:5003 expect:30000 vec:8`), 'EMLINK', 'and taken: EMLINK');
}

// ---- 2. synchronous calls ----

async function syncCalls(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_cmd_msg_send with KDBUS_SEND_SYNC_REPLY parks in
  // kdbus_conn_wait_reply until the reply (installed in the caller's pool,
  // cmd->reply.offset / msg_size), the deadline (ETIMEDOUT), the replier's
  // death (kdbus_conn_disconnect → kdbus_sync_reply_wakeup(-EPIPE)) or a
  // readable CANCEL_FD (ECANCELED). Timeouts of synchronous requests send no
  // REPLY_TIMEOUT (kdbus_reply_list_scan_work skips them); the ended wait
  // unlinks the reply, so a late answer is EPERM.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-sync');
  const a = await hello(t, await newPeer('caller'), path);
  const b = await hello(t, await newPeer('replier'), path);

  const call = a.cmd(`call ${b.id} cookie:500 expect:5000 vec:64 memfd:4096`, 10_000);
  const req = await recvFree(b, 3000);
  t.equal(req.kv.cookie, '500', 'the replier gets the call', { answer: req.line });
  t.equal(Number(req.kv.flags) & MSG_EXPECT_REPLY, MSG_EXPECT_REPLY, 'flagged EXPECT_REPLY');
  t.equal(req.kv.pattern, 'ok', 'with its payload');
  const ans = ok(t, await b.cmd(`send ${a.id} cookie:501 reply:500 vec:100 vec:3000 memfd:8192`), 'the replier answers');
  const r = await call;
  t.ok(r.ok, 'the call returns the reply', { answer: r.line });
  t.equal(r.kv.src, String(b.id), 'reply: src_id is the replier');
  t.equal(r.kv.dst, String(a.id), 'reply: dst_id is the caller');
  t.equal(r.kv.cookie, '501', 'reply: its cookie');
  t.equal(r.kv.creply, '500', 'reply: cookie_reply is the call\'s cookie');
  t.equal(r.kv.ptype, 'dbus', 'reply: payload_type DBusDBus');
  t.equal(r.kv.inpool, 'yes', 'reply: at cmd->reply.offset, inside the caller\'s pool');
  t.equal(r.kv.slice, r.kv.msize, 'cmd->reply.msg_size is the message size');
  t.equal(r.kv.stream, ans.kv.stream, 'reply: every payload byte (vectors and memfd)');
  t.equal(r.kv.types, '2,2,3', 'reply: PAYLOAD_OFF, PAYLOAD_OFF, PAYLOAD_MEMFD (the memfd installed in the caller)', {
    answer: r.line,
  });
  t.equal(r.kv.pattern, 'ok', 'reply: every byte matches');
  t.equal(r.kv.free, '0', 'the reply slice is freed with FREE');
  fails(t, await a.cmd('recv'), 'EAGAIN', 'the reply is not also queued');

  const tt = await a.cmd(`call ${b.id} cookie:510 expect:300 vec:8`, 10_000);
  fails(t, tt, 'ETIMEDOUT', 'no answer within 300 ms: ETIMEDOUT');
  const el = Number(tt.kv.elapsed);
  t.ok(el >= 290 && el < 3000, `at the deadline (${el} ms)`);
  t.equal((await recvFree(b)).kv.cookie, '510', 'the call is still queued at the replier');
  fails(t, await b.cmd(`send ${a.id} cookie:511 reply:510 vec:8`), 'EPERM', 'an answer after the timeout: EPERM');
  await nothingQueued(t, a, 'no REPLY_TIMEOUT for a synchronous call', 300);

  const past = await a.cmd(`call ${b.id} cookie:515 expect-abs:1 vec:8`, 10_000);
  fails(t, past, 'ETIMEDOUT', 'a deadline already past: ETIMEDOUT');
  t.ok(Number(past.kv.elapsed) < 1000, `without waiting (${past.kv.elapsed} ms)`);
  t.equal((await recvFree(b)).kv.cookie, '515', 'the call was queued all the same (the deadline is checked after queueing)');

  const cc = await a.cmd(`call ${b.id} cookie:540 expect:5000 cancel:200 vec:8`, 10_000);
  fails(t, cc, 'ECANCELED', 'CANCEL_FD written by another thread after 200 ms: ECANCELED');
  const ec = Number(cc.kv.elapsed);
  t.ok(ec >= 190 && ec < 3000, `when it was written (${ec} ms)`);
  t.equal((await recvFree(b)).kv.cookie, '540', 'the call was delivered');
  fails(t, await b.cmd(`send ${a.id} cookie:541 reply:540 vec:8`), 'EPERM', 'an answer after the cancel: EPERM');
  const c0 = await a.cmd(`call ${b.id} cookie:542 expect:5000 cancel:0 vec:8`, 10_000);
  fails(t, c0, 'ECANCELED', 'CANCEL_FD written at once: ECANCELED');
  t.ok(Number(c0.kv.elapsed) < 2000, `without waiting for the timeout (${c0.kv.elapsed} ms)`);
  t.equal((await recvFree(b)).kv.cookie, '542', 'the call was still delivered (queued before the wait)');

  const c = await hello(t, await newPeer('replier that dies'), path);
  const dies = a.cmd(`call ${c.id} cookie:520 expect:5000 vec:8`, 10_000);
  t.equal((await recvFree(c, 3000)).kv.cookie, '520', 'the replier reads the call');
  ok(t, await c.cmd('bye'), 'and disconnects without answering');
  const de = await dies;
  fails(t, de, 'EPIPE', 'the caller: EPIPE');
  t.ok(Number(de.kv.elapsed) < 3000, `at once (${de.kv.elapsed} ms)`);
  await nothingQueued(t, a, 'no REPLY_DEAD notification besides');

  const d = await hello(t, await newPeer('replier that never reads'), path);
  const dies2 = a.cmd(`call ${d.id} cookie:530 expect:5000 vec:8`, 10_000);
  await sleep(200);
  ok(t, await d.cmd('bye'), 'a replier disconnects with the call unread');
  fails(t, await dies2, 'EPIPE', 'the caller: EPIPE');
  const extra = await recvFree(a, 500);
  t.equal(extra.kv.notify, 'reply-dead:16',
    'and, from the walk of the dying queue (kdbus_conn_disconnect: entry->reply, sync or not), a REPLY_DEAD for cookie 530',
    { answer: extra.line });
  t.equal(extra.kv.creply, '530', 'for cookie 530');
  await nothingQueued(t, a, 'nothing else');

  const dropped = a.cmd(`call ${b.id} cookie:545 expect:5000 vec:8`, 10_000);
  await sleep(100);
  ok(t, await b.cmd('recv drop wait:2000'), 'the replier drops the call (RECV with DROP)');
  const dr = await dropped;
  fails(t, dr, 'EPIPE', 'the caller: EPIPE (kdbus_sync_reply_wakeup(reply, -EPIPE))');
  t.ok(Number(dr.kv.elapsed) < 3000, `at once (${dr.kv.elapsed} ms)`);
  await nothingQueued(t, a, 'and no REPLY_DEAD');

  // a call to a name held by an activator: the implementer taking it over
  // gets the call and the pending reply (kdbus_conn_move_messages moves
  // reply_src), and its answer ends the call
  await connect(t, await newPeer('activator'), path, 'activator name:sync.svc policy:world:talk', 'an activator for sync.svc');
  const viaAct = a.cmd('call name cookie:560 name:sync.svc expect:5000 vec:40', 10_000);
  await sleep(150);
  const impl = await hello(t, await newPeer('implementer'), path);
  ok(t, await impl.cmd('acquire sync.svc'), 'an implementer takes sync.svc over');
  const got = await recvFree(impl, 3000);
  t.equal(got.kv.cookie, '560', 'and receives the parked call', { answer: got.line });
  t.equal(got.kv.dstname, 'sync.svc', 'addressed to sync.svc');
  const ia = ok(t, await impl.cmd(`send ${a.id} cookie:561 reply:560 vec:77`), 'the implementer answers');
  const va = await viaAct;
  t.ok(va.ok, 'the call returns its answer', { answer: va.line });
  t.equal(va.kv.src, String(impl.id), 'from the implementer');
  t.equal(va.kv.stream, ia.kv.stream, 'payload intact');

  const again = a.cmd(`call ${b.id} cookie:550 expect:5000 vec:8`, 10_000);
  t.equal((await recvFree(b, 3000)).kv.cookie, '550', 'the caller calls again');
  ok(t, await b.cmd(`send ${a.id} cookie:551 reply:550 vec:8`), 'answered');
  t.equal((await again).kv.creply, '550', 'and gets the reply');
}

// ---- 3. SIGKILL while parked ----

async function killed(t: Tap, dir: string): Promise<void> {
  // A synchronous call waits interruptibly (kdbus_conn_wait_reply,
  // TASK_INTERRUPTIBLE): a fatal signal ends it and the process dies at
  // once; its connection is disconnected as any other (ID_REMOVE, replies
  // to it are ENXIO: the id is gone).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-kill');
  const w = await hello(t, await newPeer('watcher'), path);
  ok(t, await w.cmd('match 1 id-remove'), 'watcher: ID_REMOVE');
  const b = await hello(t, await newPeer('replier'), path);
  const k = await hello(t, await newPeer('caller'), path);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    k.child.once('exit', (code, signal) => done({ code, signal })));
  const parked = k.cmd(`call ${b.id} cookie:600 expect:20000 vec:8`, 25_000).catch((e: Error) => e);
  t.equal((await recvFree(b, 3000)).kv.cookie, '600', 'the call arrived: the caller is parked');
  await sleep(100);
  const t0 = process.hrtime.bigint();
  k.child.kill('SIGKILL');
  const ex = await withTimeout(exit, 5000, 'the caller dies');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.equal(ex.signal, 'SIGKILL', 'the caller died of SIGKILL');
  t.ok(ms < 200, `reaped within 200 ms (${ms.toFixed(1)} ms)`);
  t.ok((await parked) instanceof Error, 'its call never answered');
  t.equal(await notification(t, w, 'ID_REMOVE'), `id-remove:${k.id}:${HELLO_ACCEPT_FD}`, 'ID_REMOVE of the killed caller');
  fails(t, await b.cmd(`send ${k.id} cookie:601 reply:600 vec:8`), 'ENXIO', 'an answer to the dead caller: ENXIO');
  const s1 = ok(t, await b.cmd(`send ${w.id} cookie:602 vec:300`), 'the replier still sends');
  const g1 = await recvFree(w);
  t.equal(g1.kv.stream, s1.kv.stream, 'and it arrives');
  const s2 = ok(t, await w.cmd(`send ${b.id} cookie:603 vec:300`), 'and still receives');
  const g2 = await recvFree(b);
  t.equal(g2.kv.stream, s2.kv.stream, 'intact');
  const call = b.cmd(`call ${w.id} cookie:604 expect:5000 vec:8`, 10_000);
  t.equal((await recvFree(w, 3000)).kv.cookie, '604', 'a new synchronous call');
  ok(t, await w.cmd(`send ${b.id} cookie:605 reply:604 vec:8`), 'answered');
  t.equal((await call).kv.creply, '604', 'completes');
  fails(t, await b.cmd('recv'), 'EAGAIN', 'nothing left over');

  // Other ways to die while parked: a signal whose default action kills
  // (the kernel turns it into SIGKILL: complete_signal), and SIGKILL after
  // a handled SIGINT that did not end the call.
  const variants: { name: string; handler: boolean; signals: NodeJS.Signals[] }[] = [
    { name: 'SIGTERM (no handler)', handler: false, signals: ['SIGTERM'] },
    { name: 'SIGINT (handled), then SIGKILL', handler: true, signals: ['SIGINT', 'SIGKILL'] },
  ];
  let cookie = 610;
  for (const v of variants) {
    const kk = await hello(t, await newPeer(`caller (${v.name})`), path);
    if (v.handler) ok(t, await kk.cmd('sigint'), `${v.name}: SIGINT handler installed`);
    const gone = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      kk.child.once('exit', (code, signal) => done({ code, signal })));
    const pending = kk.cmd(`call ${b.id} cookie:${cookie} expect:20000 vec:8`, 25_000).catch((e: Error) => e);
    t.equal((await recvFree(b, 3000)).kv.cookie, String(cookie), `${v.name}: the caller is parked`);
    cookie++;
    await sleep(100);
    let t1 = 0n;
    for (const [i, sig] of v.signals.entries()) {
      if (i > 0) await sleep(100);
      t1 = process.hrtime.bigint();
      kk.child.kill(sig);
    }
    const e2 = await withTimeout(gone, 5000, `${v.name}: the caller dies`);
    const ms2 = Number(process.hrtime.bigint() - t1) / 1e6;
    t.equal(e2.signal, v.signals[v.signals.length - 1], `${v.name}: the caller died of ${v.signals[v.signals.length - 1]}`);
    t.ok(ms2 < 200, `${v.name}: reaped within 200 ms of the last signal (${ms2.toFixed(1)} ms)`);
    await pending;
    t.equal(await notification(t, w, 'ID_REMOVE'), `id-remove:${kk.id}:${HELLO_ACCEPT_FD}`, `${v.name}: ID_REMOVE`);
  }
  await hello(t, await newPeer('newcomer'), path);
}

// ---- 4. SIGINT while parked ----

async function interrupted(t: Tap, dir: string): Promise<void> {
  // The kernel: a signal ends kdbus_conn_wait_reply with -ERESTARTSYS; the
  // handler runs; with SA_RESTART the SEND is restarted and
  // kdbus_cmd_msg_send finds the interrupted reply by its cookie and waits
  // again, so the call ends as if never interrupted (reply or ETIMEDOUT at
  // the original deadline), the handler having run at the signal.
  // kdbusfs (lib/core/call.ts, README "Signals during a synchronous call"):
  // a FUSE request the server has read cannot be restarted, so a non-fatal
  // signal does not end the call: it completes with the same result and the
  // handler runs then, when the ioctl returns. That is what is asserted.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-sigint');
  const b = await hello(t, await newPeer('replier'), path);
  const s = await hello(t, await newPeer('caller'), path);
  ok(t, await s.cmd('sigint'), 'the caller installs a SIGINT handler with SA_RESTART');

  const p1 = s.cmd(`call ${b.id} cookie:700 expect:800 vec:8`, 10_000);
  t.equal((await recvFree(b, 3000)).kv.cookie, '700', 'the call arrived: the caller is parked');
  await sleep(150);
  s.child.kill('SIGINT');
  const r1 = await p1;
  fails(t, r1, 'ETIMEDOUT', 'SIGINT during the call: still ETIMEDOUT at the deadline');
  const e1 = Number(r1.kv.elapsed);
  t.ok(e1 >= 790 && e1 < 3000, `at the 800 ms deadline (${e1} ms)`);
  t.equal(r1.kv.sigs, '1', 'the handler ran once');
  t.ok(Number(r1.kv.sig_ms) >= e1 - 50, `when the call completed (handler at ${r1.kv.sig_ms} ms, call ended at ${e1} ms)`);

  const p2 = s.cmd(`call ${b.id} cookie:710 expect:5000 vec:8`, 10_000);
  t.equal((await recvFree(b, 3000)).kv.cookie, '710', 'a second call arrived');
  await sleep(100);
  s.child.kill('SIGINT');
  await sleep(300);
  const sent = ok(t, await b.cmd(`send ${s.id} cookie:711 reply:710 vec:500 memfd:1000`), 'the replier answers after the signal');
  const r2 = await p2;
  t.ok(r2.ok, 'SIGINT during the call: the call returns the reply', { answer: r2.line });
  t.equal(r2.kv.creply, '710', 'cookie_reply 710');
  t.equal(r2.kv.stream, sent.kv.stream, 'payload intact');
  t.equal(r2.kv.sigs, '1', 'the handler ran once');
  t.ok(Number(r2.kv.sig_ms) >= 350, `after the reply was sent (handler at ${r2.kv.sig_ms} ms, call ended at ${r2.kv.elapsed} ms)`);
  const back = ok(t, await s.cmd(`send ${b.id} cookie:712 vec:16`), 'the caller goes on');
  t.equal((await recvFree(b)).kv.stream, back.kv.stream, 'its message arrives');
  t.equal(s.child.exitCode, null, 'the caller is alive');
}

// ---- 5. quotas ----

async function quotas(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_entry_insert: ENOBUFS once the receiver holds
  // KDBUS_CONN_MAX_MSGS (256) messages; kdbus_conn_queue_user_quota: the
  // first 16 messages of a queue are not accounted, from then on each
  // sending user (uid; kdbus_domain_user) may have 16 queued (ENOBUFS).
  // bus.c: a broadcast or notification that cannot be queued is counted in
  // lost_count, and the next RECV that finds a message reports it once as
  // EOVERFLOW with dropped_msgs (kdbus_cmd_msg_recv).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-quota');
  const r = await hello(t, await newPeer('receiver'), path);
  ok(t, await r.cmd('acquire quota.sink'), 'receiver (root) owns quota.sink');
  await connect(t, await newPeer('holder'), path, 'holder name:quota.sink policy:world:talk',
    'policy holder: WORLD TALK on quota.sink (other users may send to the receiver)');

  const u1 = await hello(t, await asUser(t, newPeer, 'uid 1000', 1000), path);
  const per = CONN_MAX_MSGS_UNACCOUNTED + CONN_MAX_MSGS_PER_USER;
  const f1 = await u1.cmd(`sendmany ${r.id} ${per + 1} cookie:1 vec:8`);
  fails(t, f1, 'ENOBUFS', `uid 1000 floods the receiver: ENOBUFS after ${per}`);
  t.equal(f1.kv.sent, String(per), `16 unaccounted + 16 for uid 1000 = ${per} queued`);
  // accounted on the real uid (connection.c kdbus_conn_new: current_uid())
  const u1b = await newPeer('ruid 1000, euid 2000');
  ok(t, await u1b.cmd('creds 1000 2000 1000 1000 1000 1000'), 'a peer with real uid 1000, effective uid 2000');
  await hello(t, u1b, path);
  fails(t, await u1b.cmd(`send ${r.id} cookie:50 vec:8`), 'ENOBUFS', 'it shares the share of uid 1000: ENOBUFS');
  const u2 = await hello(t, await asUser(t, newPeer, 'uid 1001', 1001), path);
  const f2 = await u2.cmd(`sendmany ${r.id} ${CONN_MAX_MSGS_PER_USER + 1} cookie:100 vec:8`);
  t.equal(f2.kv.sent, String(CONN_MAX_MSGS_PER_USER), 'uid 1001 still gets its 16 through', { answer: f2.line });
  fails(t, f2, 'ENOBUFS', 'and then ENOBUFS');
  const rs = await hello(t, await newPeer('root sender'), path);
  const f3 = await rs.cmd(`sendmany ${r.id} ${CONN_MAX_MSGS_PER_USER + 1} cookie:200 vec:8`);
  t.equal(f3.kv.sent, String(CONN_MAX_MSGS_PER_USER), 'root (privileged) has a share of 16 like anyone', { answer: f3.line });
  fails(t, f3, 'ENOBUFS', 'and then ENOBUFS');

  // fill the queue up to 256 with 16 more users of 16 messages each... 12 more
  let queued = per + 2 * CONN_MAX_MSGS_PER_USER;
  for (let uid = 1002; queued < CONN_MAX_MSGS; uid++) {
    // the first of them keeps effective uid 1000: its real uid counts
    const u = await newPeer(`uid ${uid}`);
    const euid = uid === 1002 ? 1000 : uid;
    ok(t, await u.cmd(`creds ${uid} ${euid} ${uid} ${uid} ${uid} ${uid}`), `peer: real uid ${uid}, effective uid ${euid}`);
    await hello(t, u, path);
    const f = await u.cmd(`sendmany ${r.id} ${CONN_MAX_MSGS_PER_USER} cookie:${uid * 100} vec:8`);
    t.equal(f.kv.sent, String(CONN_MAX_MSGS_PER_USER), `real uid ${uid} (euid ${euid}): 16 queued`, { answer: f.line });
    queued += CONN_MAX_MSGS_PER_USER;
  }
  t.equal(queued, CONN_MAX_MSGS, `${CONN_MAX_MSGS} messages queued`);
  const u14 = await hello(t, await asUser(t, newPeer, 'uid 1014', 1014), path);
  fails(t, await u14.cmd(`send ${r.id} cookie:1 vec:8`), 'ENOBUFS', `the ${CONN_MAX_MSGS + 1}th, from a user with nothing queued: ENOBUFS`);

  ok(t, await r.cmd('match 1 id-add'), 'receiver: ID_ADD');
  ok(t, await r.cmd('match 2 bloom:0'), 'receiver: every broadcast');
  await hello(t, await newPeer('newcomer'), path);
  ok(t, await rs.cmd('send bcast cookie:9 signal bloom:1 vec:8'), 'a broadcast (the sender is not told about the full queue)');
  const lost = await r.cmd('recv');
  fails(t, lost, 'EOVERFLOW', 'RECV after losses: EOVERFLOW');
  t.equal(lost.kv.dropped, '2', 'dropped_msgs: the ID_ADD notification and the broadcast');
  const first = await recvFree(r);
  t.equal(first.kv.cookie, '1', 'the next RECV returns the oldest message', { answer: first.line });
  t.equal(first.kv.src, String(u1.id), 'from uid 1000');
  ok(t, await u14.cmd(`send ${r.id} cookie:2 vec:8`), 'one slot free: uid 1014 gets in now');
  const second = await recvFree(r);
  t.equal(second.kv.cookie, '2', 'losses are reported once', { answer: second.line });
  const rest = await r.cmd('drain', 15_000);
  t.equal(rest.kv.n, String(CONN_MAX_MSGS - 1), 'the rest of the queue drains', { answer: rest.line });
  t.equal(rest.kv.bad, '0', 'every message intact');
  t.equal(rest.kv.last_src, String(u14.id), 'the last one from uid 1014');
  const again = await u1.cmd(`sendmany ${r.id} ${per} cookie:1 vec:8`);
  t.equal(again.kv.sent, String(per), 'an empty queue: uid 1000 has its share again', { answer: again.line });

  // A broadcast refused by the per-user share is lost as well. DROP does not
  // report losses and an empty queue answers EAGAIN: the count waits for
  // the next RECV that finds a message (kdbus_cmd_msg_recv order: peek,
  // DROP, lost_count).
  ok(t, await r.cmd('match 3 bloom:0'), 'receiver: every broadcast (again)');
  ok(t, await u1.cmd('send bcast cookie:90 signal bloom:1 vec:8'), 'uid 1000, its share used up, broadcasts');
  for (let i = 0; i < per; i++) {
    const d = await r.cmd('recv drop');
    if (!d.ok) { t.fail('RECV with DROP', { answer: d.line }); break; }
  }
  t.pass(`the receiver drops all ${per} messages (RECV with DROP)`);
  fails(t, await r.cmd('recv'), 'EAGAIN', 'an empty queue: EAGAIN, not EOVERFLOW');
  ok(t, await u2.cmd(`send ${r.id} cookie:91 vec:8`), 'a new message');
  const lost2 = await r.cmd('recv');
  fails(t, lost2, 'EOVERFLOW', 'now RECV reports the lost broadcast: EOVERFLOW');
  t.equal(lost2.kv.dropped, '1', 'dropped_msgs 1');
  t.equal((await recvFree(r)).kv.cookie, '91', 'then the message');
}

async function endpointUser(t: Tap, dir: string): Promise<void> {
  // endpoint.c kdbus_ep_new: every connection on a custom endpoint is
  // accounted on the endpoint's own anonymous user (kdbus_conn_new:
  // conn->user = ep->user), whatever its uid; that budget is not shared
  // with ordinary users on the default endpoint.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-epquota');
  const bus = dirname(path);
  ok(t, await (await newPeer('endpoint maker')).cmd(`epmake ${path} 0-ep world name:ep.sink policy:world:talk`),
    'root: ENDPOINT_MAKE 0-ep granting TALK on ep.sink');
  const r = await hello(t, await newPeer('receiver'), path);
  ok(t, await r.cmd('acquire ep.sink'), 'receiver (root, default endpoint) owns ep.sink');
  await connect(t, await newPeer('holder'), path, 'holder name:ep.sink policy:world:talk', 'bus: WORLD TALK on ep.sink');
  const e1 = await hello(t, await asUser(t, newPeer, 'uid 1000 on the custom endpoint', 1000), `${bus}/0-ep`);
  const e2 = await hello(t, await asUser(t, newPeer, 'uid 1001 on the custom endpoint', 1001), `${bus}/0-ep`);
  const d1 = await hello(t, await asUser(t, newPeer, 'uid 1000 on the default endpoint', 1000), path);
  const per = CONN_MAX_MSGS_UNACCOUNTED + CONN_MAX_MSGS_PER_USER;
  const f1 = await e1.cmd(`sendmany ${r.id} ${per + 1} cookie:1 vec:8`);
  t.equal(f1.kv.sent, String(per), `uid 1000 on the endpoint: ${per} queued`, { answer: f1.line });
  fails(t, f1, 'ENOBUFS', 'then ENOBUFS');
  fails(t, await e2.cmd(`send ${r.id} cookie:100 vec:8`), 'ENOBUFS',
    'uid 1001 on the same endpoint: the same (anonymous) user, ENOBUFS at once');
  const f3 = await d1.cmd(`sendmany ${r.id} ${CONN_MAX_MSGS_PER_USER + 1} cookie:200 vec:8`);
  t.equal(f3.kv.sent, String(CONN_MAX_MSGS_PER_USER), 'uid 1000 on the default endpoint has its own 16', { answer: f3.line });
}

async function poolFull(t: Tap, dir: string): Promise<void> {
  // queue.c kdbus_queue_entry_alloc: with the payload needing pool_size
  // bytes of the receiver's pool and avail = kdbus_pool_remain(), EXFULL if
  // pool_size < avail && pool_size > avail / 2 ("do not give out more than
  // half of the remaining space"); a payload >= avail skips that test and
  // fails the allocation instead (pool.c kdbus_pool_slice_alloc: ENOBUFS).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-pool');
  const MiB = 1 << 20;
  const p = await connect(t, await newPeer('receiver'), path, `pool:${MiB}`, 'receiver with a 1 MiB pool');
  const q = await hello(t, await newPeer('sender'), path);
  fails(t, await q.cmd(`send ${p.id} cookie:1 vec:600000`), 'EXFULL', '600000 B of 1 MiB free: more than half, EXFULL');
  const m2 = ok(t, await q.cmd(`send ${p.id} cookie:2 vec:${MiB / 2}`), 'exactly half (512 KiB): accepted');
  fails(t, await q.cmd(`send ${p.id} cookie:3 vec:${MiB / 4 + 8}`), 'EXFULL', '256 KiB + 8 of 512 KiB free: EXFULL');
  const m4 = ok(t, await q.cmd(`send ${p.id} cookie:4 vec:${MiB / 4}`), 'exactly half again (256 KiB): accepted');
  fails(t, await q.cmd(`send ${p.id} cookie:5 vec:300000`), 'ENOBUFS', '300000 B with 256 KiB free: ENOBUFS');
  fails(t, await q.cmd(`send ${p.id} cookie:6 vec:${MiB / 8 + 8}`), 'EXFULL', '128 KiB + 8 of 256 KiB free: EXFULL');
  // message.c kdbus_msg_scan_items: a memfd adds only its padding to
  // pool_size (none for 1 MiB), so queue.c allocates no payload slice
  const mf = await q.cmd(`send ${p.id} cookie:7 memfd:${MiB}`);
  t.ok(mf.ok, 'a 1 MiB memfd needs no pool space at SEND: accepted', { answer: mf.line });
  const g2 = await recvFree(p);
  t.equal(g2.kv.cookie, '2', 'the receiver gets the 512 KiB message', { answer: g2.line });
  t.equal(g2.kv.stream, m2.kv.stream, 'intact');
  const g4 = await recvFree(p);
  t.equal(g4.kv.stream, m4.kv.stream, 'and the 256 KiB one, intact');
  if (mf.ok) t.equal((await recvFree(p)).kv.cookie, '7', 'and the memfd');
  fails(t, await p.cmd('recv'), 'EAGAIN', 'nothing else was queued');
  ok(t, await q.cmd(`send ${p.id} cookie:8 vec:${MiB / 2}`), 'the pool is empty again: 512 KiB accepted');
  fails(t, await q.cmd(`send ${p.id} cookie:9 vec:300000`), 'EXFULL', '300000 B of 512 KiB free: EXFULL');
  fails(t, await q.cmd(`send ${p.id} cookie:10 vec:600000`), 'ENOBUFS', '600000 B of 512 KiB free: ENOBUFS');
  t.equal((await recvFree(p)).kv.cookie, '8', 'the 512 KiB message is received');
  ok(t, await q.cmd(`send ${p.id} cookie:11 vec:${MiB}`), 'a payload of exactly the whole free pool is not "more than half of what remains" (not < avail): accepted');
}

// ---- the mount ----

await t.test('kdbusfs mount (passthrough pools)', async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir);
  if (!server) return;

  await t.test('1. EXPECT_REPLY: REPLY_TIMEOUT, REPLY_DEAD, unknown cookies, EMLINK', (t) => replies(t, dir));
  await t.test('2. synchronous calls: reply in the pool, ETIMEDOUT, ECANCELED, EPIPE', (t) => syncCalls(t, dir));
  await t.test('3. SIGKILL while parked in a synchronous call', (t) => killed(t, dir));
  await t.test('4. SIGINT (SA_RESTART) while parked in a synchronous call', (t) => interrupted(t, dir));
  await t.test('5a. quotas: 256 messages, 16 + 16 per user, EOVERFLOW', (t) => quotas(t, dir));
  await t.test('5b. quotas: the receiver\'s pool (EXFULL, ENOBUFS)', (t) => poolFull(t, dir));
  await t.test('5c. quotas: a custom endpoint\'s anonymous user', (t) => endpointUser(t, dir));

  t.equal(live.size, 0, 'no peer process is left');
  await stopServer(t, server, dir);
});

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'mnt'))) rmSync(tmp, { recursive: true, force: true });
});
