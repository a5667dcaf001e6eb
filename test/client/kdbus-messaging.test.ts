// End to end: kdbusfs/client connections in separate processes (agents,
// test/client/kdbus-agent.mjs) on a real mount, some under uid 65534:
// HELLO, unicast by id and name, calls with replies and timeouts,
// NO_AUTO_START, priorities, PEEK/DROP, broadcasts with bloom filters,
// kernel notifications, dropped-message counts, zero-copy views and fds and
// sealed memfds both ways.
import t from 'tap';
import { needRootAndFuse } from '../harness.js';
import { agents, mountFresh, NOBODY, stageClient } from './kdbus-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const { agent } = stageClient();

t.test('HELLO, unicast by id and by name, between uids', async (t) => {
  const { dir } = await mountFresh(t, 'msg');
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-msg', opts: { root: dir, access: 'world', bloomSize: 64, bloomHashes: 3 } });
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
