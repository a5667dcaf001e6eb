// End to end: kdbusfs/client control commands between processes of two
// uids: names (queueing, replacement, listing), CONN_INFO and
// BUS_CREATOR_INFO metadata, CONN_UPDATE, custom endpoints with policies,
// monitors, BYEBYE, and a bus that lives as long as its maker's control fd.
import { realpathSync } from 'node:fs';
import t from 'tap';
import { needRootAndFuse, statOf, until } from '../harness.js';
import { agents, mountFresh, mountWithBus, NOBODY, stageClient } from './kdbus-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const { agent } = stageClient();
const ACTIVATOR = 16;

t.test('names: acquire, queue, replace, release, list', async (t) => {
  const { dir } = await mountFresh(t, 'names');
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker', NOBODY);
  const bus = await maker.do('makeBus', { name: 'names', opts: { root: dir, access: 'world' } });
  t.equal(bus.name, `${NOBODY}-names`, 'the bus name gets the maker\'s uid prefix');
  const a = await newAgent('a', NOBODY);
  const ha = await a.do('connect', { bus: bus.path });
  const b = await newAgent('b', NOBODY);
  const hb = await b.do('connect', { bus: bus.path });
  const act = await newAgent('act', NOBODY);
  const hact = await act.do('connect', { bus: bus.path, opts: { kind: 'activator', name: 'org.example.Lazy' } });

  t.same(await a.do('acquire', { name: 'org.example.X', flags: { allowReplacement: true } }), { flags: '2', inQueue: false }, 'a owns X, replaceable');
  t.match(await a.req('acquire', { name: 'org.example.X' }), { ok: false, code: 'EALREADY', why: /already owns/ }, 'again: EALREADY');
  t.match(await b.req('acquire', { name: 'org.example.X' }), { ok: false, code: 'EEXIST', why: /cannot be taken over/ }, 'b without flags: EEXIST');
  t.match(await b.do('acquire', { name: 'org.example.X', flags: { queue: true } }), { inQueue: true }, 'b with QUEUE: IN_QUEUE');

  const queued = await a.do('list', { flags: { names: true, queued: true } });
  const owners = queued.filter((e: any) => e.name === 'org.example.X');
  t.same(owners.map((e: any) => e.ownerId).sort(), [ha.id, hb.id].sort(), 'NAME_LIST with QUEUED: the owner and the queued b');
  const plain = await a.do('list', { flags: { names: true } });
  t.same(plain.filter((e: any) => e.name === 'org.example.X').map((e: any) => e.ownerId), [ha.id], 'NAME_LIST without QUEUED: the owner only');
  const unique = await a.do('list', { flags: { unique: true } });
  for (const id of [ha.id, hb.id]) t.ok(unique.some((e: any) => e.ownerId === id && e.name === undefined), `NAME_LIST UNIQUE lists id ${id}`);
  const acts = await a.do('list', { flags: { activators: true } });
  t.ok(acts.some((e: any) => e.name === 'org.example.Lazy' && e.ownerId === hact.id && (Number(e.nameFlags) & ACTIVATOR)),
    'NAME_LIST ACTIVATORS: the activator\'s name');

  t.match(await b.req('release', { name: 'org.example.Y' }), { ok: false, code: 'ESRCH', why: /neither owns nor queues/ }, 'releasing an unknown name: ESRCH');
  await a.do('release', { name: 'org.example.X' });
  const after = await b.do('list', { flags: { names: true } });
  t.same(after.filter((e: any) => e.name === 'org.example.X').map((e: any) => e.ownerId), [hb.id], 'released: the queued b owns X');
  t.match(await a.req('release', { name: 'org.example.X' }), { ok: false, code: 'ESRCH' }, 'a releasing b\'s name: ESRCH (as ipc/kdbus/names.c does)');

  const c = await newAgent('c', NOBODY);
  await c.do('connect', { bus: bus.path, opts: { names: [{ name: 'org.example.Z', flags: { allowReplacement: true } }] } });
  t.same(await b.do('acquire', { name: 'org.example.Z', flags: { replaceExisting: true } }), { flags: '1', inQueue: false },
    'REPLACE_EXISTING takes a name its owner allowed to be replaced (acquired at connect)');
});

t.test('CONN_INFO and BUS_CREATOR_INFO metadata, CONN_UPDATE', async (t) => {
  const { newAgent, maker, bus } = await mountWithBus(t, agent, 'info', { attachCreator: String(0x3fff) }, 0x3fffn); // every item let through
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: { kind: 'policy-holder', name: 'org.example.Info', grants: [{ world: true, access: 'own' }] } });
  const target = await newAgent('target', NOBODY);
  const ht = await target.do('connect', { bus: bus.path, opts: { description: 'the-target' } });
  const asker = await newAgent('asker');
  await asker.do('connect', { bus: bus.path });

  const info = await asker.do('connInfo', { target: ht.id });
  t.equal(info.id, ht.id, 'CONN_INFO by id: that connection');
  const md = info.metadata;
  t.match(md.creds, { uid: NOBODY, euid: NOBODY, gid: NOBODY, fsuid: NOBODY }, 'creds');
  t.match(md.pids, { pid: target.pid, tid: target.pid }, 'pids (pid and tid of the connecting thread)');
  t.type(md.auxGroups, Array, 'auxgroups');
  t.equal(md.pidComm, 'node', 'pid comm');
  t.type(md.tidComm, 'string', 'tid comm');
  t.equal(md.exe, realpathSync(process.execPath), 'exe');
  t.match(md.cmdline?.[0], /node$/, 'cmdline (kdbusfs attaches argv[0])');
  t.type(md.cgroup, 'string', 'cgroup');
  t.match(md.caps, { lastCap: Number }, 'caps');
  t.equal(md.caps?.effective, '0', 'uid 65534 has no effective capabilities');
  t.equal(md.description, 'the-target', 'the connection description');
  t.notOk(md.ownedNames, 'no names owned yet');
  // audit and seclabel exist only where the system has them: when attached they are decoded
  if (md.audit) t.match(md.audit, { sessionId: Number, loginUid: Number }, 'audit');
  if (md.seclabel !== undefined) t.type(md.seclabel, 'string', 'seclabel');

  await target.do('acquire', { name: 'org.example.Info' });
  const byName = await asker.do('connInfo', { target: 'org.example.Info' });
  t.equal(byName.id, ht.id, 'CONN_INFO by name: its owner');
  t.same(byName.metadata.ownedNames, [{ name: 'org.example.Info', flags: '0' }], 'owned names');
  t.match(await asker.req('connInfo', { target: 'org.example.None' }), { ok: false, code: 'ESRCH', why: /no connection owns/ }, 'unknown name: ESRCH');
  t.match(await asker.req('connInfo', { target: 4242 }), { ok: false, code: 'ENXIO', why: /no connection with that id/ }, 'unknown id: ENXIO');

  const creator = await target.do('busCreatorInfo');
  t.equal(creator.busName, '0-info', 'BUS_CREATOR_INFO: the bus name');
  t.match(creator.metadata.creds, { uid: 0 }, 'the creator is root');
  t.match(creator.metadata.pids, { pid: maker.pid }, 'the creator\'s pid');

  // CONN_UPDATE: the receiver asks for timestamps and creds on what it gets, then for nothing
  const tx = await newAgent('tx');
  await tx.do('connect', { bus: bus.path });
  await target.do('update', { opts: { attachRecv: String(1 | 2) } });
  await tx.do('send', { opts: { dst: ht.id, payload: 'with metadata' } });
  const withMd = (await target.do('next', { kind: 'message' }))?.msg;
  t.ok(withMd?.metadata.timestamp && withMd.metadata.creds, 'after CONN_UPDATE(recv TIMESTAMP|CREDS): both attached');
  t.notOk(withMd?.metadata.pids, 'and nothing not asked for (pids)');
  await target.do('update', { opts: { attachRecv: '0' } });
  await tx.do('send', { opts: { dst: ht.id, payload: 'bare' } });
  t.same((await target.do('next', { kind: 'message' }))?.msg.metadata, {}, 'after CONN_UPDATE(recv 0): no metadata');
});

t.test('custom endpoints with policies, monitors, BYEBYE, bus lifetime', async (t) => {
  const { dir, newAgent, maker, bus } = await mountWithBus(t, agent, 'ep');
  // the bus policy lets anybody own both names; the endpoint's narrows it
  for (const name of ['org.example.Guest', 'org.example.Other']) {
    const holder = await newAgent(`holder ${name}`);
    await holder.do('connect', { bus: bus.path, opts: { kind: 'policy-holder', name, grants: [{ world: true, access: 'own' }] } });
  }
  const ep = await maker.do('makeEndpoint', { bus: bus.path, name: 'guests', opts: {
    access: 'world', policy: [{ name: 'org.example.Guest', grants: [{ world: true, access: 'own' }] }],
  } });
  t.equal(ep.path, `${dir}/0-ep/0-guests`, 'the endpoint file sits next to the bus file');
  const guest = await newAgent('guest', NOBODY);
  const hg = await guest.do('connect', { bus: ep.path });
  t.ok(hg.id, 'uid 65534 connects through the custom endpoint');
  await guest.do('acquire', { name: 'org.example.Guest' });
  t.match(await guest.req('acquire', { name: 'org.example.Other' }), { ok: false, code: 'EPERM' }, 'a name outside the endpoint policy: EPERM');
  await maker.do('updatePolicy', { name: ep.name, policy: [
    { name: 'org.example.Guest', grants: [{ world: true, access: 'own' }] },
    { name: 'org.example.Other', grants: [{ user: NOBODY, access: 'own' }] },
  ] });
  t.ok((await guest.req('acquire', { name: 'org.example.Other' })).ok, 'ENDPOINT_UPDATE grants it to uid 65534: now owned');

  const mon = await newAgent('monitor');
  t.match(await mon.req('connect', { bus: ep.path, opts: { kind: 'monitor' } }), { ok: false, code: 'EOPNOTSUPP', why: /custom endpoints/ },
    'no monitor on a custom endpoint');
  await mon.do('connect', { bus: bus.path, opts: { kind: 'monitor' } });
  const a = await newAgent('a');
  const ha = await a.do('connect', { bus: bus.path });
  await a.do('send', { opts: { dst: hg.id, payload: 'seen by the monitor' } });
  t.equal((await guest.do('next', { kind: 'message' }))?.msg.payload[0], 'seen by the monitor', 'the guest gets a\'s message');
  const seen = await mon.do('next', { kind: 'message' });
  t.match(seen?.msg, { payload: ['seen by the monitor'], srcId: ha.id, dstId: hg.id }, 'and the monitor sees a copy');

  await a.do('send', { opts: { dst: hg.id, payload: 'queued' } });
  const b = await newAgent('b');
  const hb = await b.do('connect', { bus: bus.path, opts: { autoReceive: false } });
  await a.do('send', { opts: { dst: hb.id, payload: 'unread' } });
  t.match(await b.req('byebye'), { ok: false, code: 'EBUSY', why: /still queued/ }, 'BYEBYE with a message queued: EBUSY');
  await b.do('recv');
  await b.do('byebye');
  t.match(await a.req('send', { opts: { dst: hb.id, payload: 'after bye' } }), { ok: false, code: 'ENXIO' }, 'after BYEBYE the id is gone');
  await b.do('close');

  const silent = await newAgent('silent', NOBODY);
  const hs = await silent.do('connect', { bus: bus.path });
  const caller = await newAgent('caller', NOBODY);
  await caller.do('connect', { bus: bus.path });
  const unanswered = caller.req('call', { opts: { dst: hs.id, payload: 'anyone?', timeoutMs: 20_000 } }, 30_000);
  t.ok(await silent.do('next', { kind: 'message' }), 'a call waits for a reply that will not come');

  await maker.do('dropOwner', { name: bus.name });
  t.ok(await guest.do('next', { kind: 'hangup', ms: 5000 }), 'closing the control fd ends the bus: its connections hang up');
  t.match(await unanswered, { ok: false, code: 'ECONNRESET', why: /shut down/ }, 'and a pending call rejects with ECONNRESET at once');
  t.ok(await until(async () => (await statOf(`${dir}/0-ep`)) === null, 5000), 'and the bus directory is gone');
});
