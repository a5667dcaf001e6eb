// End to end: kdbusfs/client connections in separate processes (agents,
// test/client/kdbus-agent.mjs) on a real mount, some under uid 65534:
// HELLO, unicast by id and name, calls with replies and timeouts,
// NO_AUTO_START, priorities, PEEK/DROP, broadcasts with bloom filters,
// kernel notifications, dropped-message counts, zero-copy views and fds and
// sealed memfds both ways.
import t from 'tap';
import { needRootAndFuse } from '../harness.js';
import { mountWithBus, NOBODY, stageClient } from './kdbus-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const { agent } = stageClient();

t.test('HELLO, unicast by id and by name, between uids', async (t) => {
  const { dir, newAgent, bus } = await mountWithBus(t, agent, 'msg', { bloomSize: 64, bloomHashes: 3 });
  t.equal(bus.path, `${dir}/0-msg/bus`, 'the bus file of the new bus');
  const a = await newAgent('a');
  const b = await newAgent('b', NOBODY);
  const ha = await a.do('connect', { bus: bus.path, opts: { description: 'alpha' } });
  const hb = await b.do('connect', { bus: '0-msg', opts: { root: dir, attachRecv: 'all' } });
  t.same(ha.bloom, { size: 64, nHash: 3 }, 'HELLO reports the bus bloom parameters');
  t.not(ha.id, hb.id, 'unique ids');
  t.same(await b.do('uid'), { uid: NOBODY, pid: b.pid }, 'b runs as uid 65534');

  await a.do('send', { opts: { dst: hb.id, payload: ['hello ', 'world'] } });
  const ev = await b.do('next', { kind: 'message' });
  t.ok(ev, 'b receives the message');
  t.same(ev.msg.payload, ['hello ', 'world'], 'both payload vecs arrive, in order');
  t.equal(ev.msg.srcId, ha.id, 'src_id is a');
  t.equal(ev.msg.metadata.creds?.uid, 0, 'creds metadata says the sender is uid 0');
  t.equal(ev.msg.metadata.description, 'alpha', 'the sender description is attached');
  t.equal(ev.msg.metadata.pids?.pid, a.pid, 'pids metadata carries the sender pid');

  t.match(await b.req('send', { opts: { dst: ha.id, payload: 'up' } }), { ok: false, code: 'EPERM', why: /policy/ },
    'uid 65534 may not talk to a root connection without a policy: EPERM, explained');

  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: {
    kind: 'policy-holder', name: 'org.example.C', grants: [{ world: true, access: 'own' }],
  } });
  const c = await newAgent('c', NOBODY);
  const hc = await c.do('connect', { bus: bus.path });
  t.same(await c.do('acquire', { name: 'org.example.C' }), { flags: '0', inQueue: false }, 'c owns org.example.C (OWN granted to the world by a policy holder)');
  await b.do('send', { opts: { name: 'org.example.C', payload: 'by name' } });
  const byName = await c.do('next', { kind: 'message' });
  t.equal(byName?.msg.payload[0], 'by name', 'unicast by well-known name (same uid)');
  t.equal(byName?.msg.dstName, 'org.example.C', 'DST_NAME is passed along');
  t.equal(byName?.msg.srcId, hb.id, 'from b');
  t.equal(byName?.msg.dstId, '0', 'dst_id stays KDBUS_DST_ID_NAME (0) as sent');
  t.ok(hc.id, 'c has an id');

  const gone = await b.req('send', { opts: { name: 'org.example.Nobody', payload: 'x' } });
  t.match(gone, { ok: false, code: 'ESRCH', command: 'SEND', why: /not owned/ }, 'sending to an unowned name: ESRCH, explained');
  const noId = await b.req('send', { opts: { dst: 9999, payload: 'x' } });
  t.match(noId, { ok: false, code: 'ENXIO', command: 'SEND', why: /does not exist/ }, 'sending to an unknown id: ENXIO, explained');
  const both = await b.req('send', { opts: { dst: hb.id, name: 'org.example.C', payload: 'x' } });
  t.match(both, { ok: false, code: 'EREMCHG' }, 'id and name of different connections: EREMCHG');
});

t.test('calls: replies, REPLY_TIMEOUT, REPLY_DEAD, NO_AUTO_START, across uids', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'call');
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: { kind: 'policy-holder', name: 'org.example.Echo', grants: [{ world: true, access: 'talk' }] } });
  const srv = await newAgent('srv');
  const hs = await srv.do('connect', { bus: bus.path, opts: { names: ['org.example.Echo'] } });
  await srv.do('echo', { prefix: 'echo:' });
  const caller = await newAgent('caller', NOBODY);
  await caller.do('connect', { bus: bus.path });

  const reply = await caller.do('call', { opts: { name: 'org.example.Echo', payload: 'ping', timeoutMs: 5000 } });
  t.same(reply.payload, ['echo:ping'], 'uid 65534 calls a root service by name (TALK policy) and gets its reply');
  t.equal(reply.srcId, hs.id, 'the reply comes from the service');
  t.not(reply.cookieReply, '0', 'the reply names the call\'s cookie');
  const call = await srv.do('next', { kind: 'message' });
  t.equal(call.msg.expectReply, true, 'the service saw EXPECT_REPLY');
  t.equal(call.msg.cookie, reply.cookieReply, 'cookie_reply is the call\'s cookie');

  await srv.do('echo', { prefix: null });
  const timedOut = await caller.req('call', { opts: { name: 'org.example.Echo', payload: 'late', timeoutMs: 300 } });
  t.match(timedOut, { ok: false, code: 'ETIMEDOUT', command: 'call', why: /REPLY_TIMEOUT/ }, 'no reply in time: the promise rejects with ETIMEDOUT');

  const pending = caller.req('call', { opts: { name: 'org.example.Echo', payload: 'dies', timeoutMs: 10_000 } });
  t.ok(await srv.do('next', { kind: 'message', ms: 5000 }), 'the service got the late call');
  t.ok(await srv.do('next', { kind: 'message', ms: 5000 }), 'and the one it will never answer');
  await srv.do('close');
  t.match(await pending, { ok: false, code: 'ECONNRESET', why: /REPLY_DEAD/ }, 'the service closes: the call rejects with ECONNRESET (REPLY_DEAD)');

  const lazy = await newAgent('activator');
  await lazy.do('connect', { bus: bus.path, opts: { kind: 'activator', name: 'org.example.Lazy' } });
  const starter = await newAgent('starter');
  await starter.do('connect', { bus: bus.path });
  t.match(await starter.req('send', { opts: { name: 'org.example.Lazy', payload: 'x', noAutoStart: true } }),
    { ok: false, code: 'EADDRNOTAVAIL', why: /activator/ }, 'NO_AUTO_START to a name only an activator holds: EADDRNOTAVAIL');
  await starter.do('send', { opts: { name: 'org.example.Lazy', payload: 'wake up' } });
  const woke = await lazy.do('next', { kind: 'message' });
  t.equal(woke?.msg.payload[0], 'wake up', 'without NO_AUTO_START the activator queues the message');
});

t.test('manual receiving: priorities, PEEK, DROP', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'prio');
  const rx = await newAgent('rx', NOBODY);
  const hr = await rx.do('connect', { bus: bus.path, opts: { autoReceive: false } });
  const tx = await newAgent('tx');
  await tx.do('connect', { bus: bus.path });
  for (const [p, body] of [[5, 'low'], [-3, 'urgent'], [0, 'normal']] as const) {
    await tx.do('send', { opts: { dst: hr.id, payload: body, priority: p } });
  }
  t.ok(await rx.do('next', { kind: 'readable' }), 'autoReceive off: a readable event');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await rx.do('pending', { kind: 'readable' }), 0, 'told once, not again until the next recv() (no spinning on level-triggered poll)');
  const peek = await rx.do('recv', { opts: { peek: true } });
  t.match(peek, { payload: ['low'], peeked: true }, 'PEEK shows the oldest message');
  t.match(await rx.do('recv', { opts: { peek: true } }), { payload: ['low'] }, 'and leaves it queued');
  t.match(await rx.do('recv', { opts: { priority: 0 } }), { payload: ['urgent'], priority: '-3' }, 'USE_PRIORITY 0: the most urgent first');
  t.match(await rx.do('recv', { opts: { priority: 0 } }), { payload: ['normal'] }, 'then priority 0');
  t.equal(await rx.do('recv', { opts: { priority: 0 } }), null, 'nothing at priority <= 0 is left (ENOMSG)');
  t.equal(await rx.do('recv', { opts: { drop: true } }), null, 'DROP discards the last one');
  t.equal(await rx.do('recv'), null, 'the queue is empty (EAGAIN)');
});

t.test('manual receiving in the handler, as the proxy: one message per readable, none told while unanswered', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'pump');
  const rx = await newAgent('rx');
  const hr = await rx.do('connect', { bus: bus.path, opts: { autoReceive: false } });
  await rx.do('pump', { limit: 2 });
  const tx = await newAgent('tx');
  await tx.do('connect', { bus: bus.path });
  for (const body of ['one', 'two', 'three', 'four']) await tx.do('send', { opts: { dst: hr.id, payload: body } });
  t.match(await rx.do('next', { kind: 'pumped' }), { payload: ['one'] }, 'the first taken in its readable');
  t.match(await rx.do('next', { kind: 'pumped' }), { payload: ['two'] }, 'the watch kept on: the next readable takes the second');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await rx.do('pending', { kind: 'readable' }), 3, 'a third readable, left unanswered');
  t.equal(await rx.do('pending', { kind: 'pumped' }), 0, 'and nothing taken (the queue stays with kdbus)');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await rx.do('pending', { kind: 'readable' }), 3, 'unanswered: not told again (no spinning on level-triggered poll)');
  await rx.do('pump', { limit: 10 });
  await rx.do('resume');
  t.match(await rx.do('next', { kind: 'pumped' }), { payload: ['three'] }, 'resume(): told again, the third taken');
  t.match(await rx.do('next', { kind: 'pumped' }), { payload: ['four'] }, 'then the fourth');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await rx.do('pending', { kind: 'readable' }), 5, 'the queue empty: no readable more');
  t.equal(await rx.do('recv'), null, 'nothing left (EAGAIN)');
});
