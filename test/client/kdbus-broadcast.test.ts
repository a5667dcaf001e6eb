// End to end: broadcasts through kdbusfs/client matches (bloom masks, sender
// id and name rules, MATCH_REPLACE, removal), kernel notifications as events,
// and dropped-broadcast counts, between processes of two uids.
import t from 'tap';
import { needRootAndFuse } from '../harness.js';
import { mountWithBus, NOBODY, stageClient } from './kdbus-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const { agent } = stageClient();
const BLOOM = 64;

/** A bloom filter of the bus's size with the given bits set, as hex. */
function bloom(...bits: number[]): string {
  const b = Buffer.alloc(BLOOM);
  for (const bit of bits) b[bit >> 3]! |= 1 << (bit & 7);
  return b.toString('hex');
}

t.test('broadcasts filtered by bloom masks, sender rules, MATCH_REPLACE and removal', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'bcast', { bloomSize: BLOOM, bloomHashes: 1 });
  // kdbus delivers a broadcast only to connections that may talk to its sender
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: { kind: 'policy-holder', name: 'org.example.Tx', grants: [{ world: true, access: 'talk' }] } });
  const tx = await newAgent('tx');
  const ht = await tx.do('connect', { bus: bus.path, opts: { names: ['org.example.Tx'] } });
  const other = await newAgent('other', NOBODY);
  await other.do('connect', { bus: bus.path });
  const sub = await newAgent('sub', NOBODY);
  await sub.do('connect', { bus: bus.path });
  const miss = await newAgent('miss', NOBODY);
  await miss.do('connect', { bus: bus.path });

  await sub.do('addMatch', { cookie: 1, rule: { bloomMask: bloom(3, 17) } });
  await miss.do('addMatch', { cookie: 1, rule: { bloomMask: bloom(40) } });
  await tx.do('send', { opts: { broadcast: true, payload: 'signal 1', bloom: bloom(3, 17, 99) } });
  const got = await sub.do('next', { kind: 'message' });
  t.equal(got?.msg.payload[0], 'signal 1', 'a mask whose bits the filter has: delivered');
  t.equal(got?.msg.signal, true, 'the SIGNAL flag too');
  t.equal(await miss.do('next', { kind: 'message', ms: 300 }), null, 'a mask with a bit the filter lacks: not delivered');
  await other.do('send', { opts: { broadcast: true, payload: 'bit 40', bloom: bloom(40) } });
  t.equal((await miss.do('next', { kind: 'message' }))?.msg.payload[0], 'bit 40', 'the same mask lets a filter with its bit in');

  t.match(await tx.req('send', { opts: { broadcast: true, payload: 'x', bloom: '00'.repeat(32) } }),
    { ok: false, code: 'EDOM', why: /bloom filter size/ }, 'a filter of the wrong size: EDOM, explained');

  await miss.do('addMatch', { cookie: 1, rule: { id: ht.id }, replace: true });
  await other.do('send', { opts: { broadcast: true, payload: 'from other', bloom: bloom(40) } });
  await tx.do('send', { opts: { broadcast: true, payload: 'from tx', bloom: bloom() } });
  const fromTx = await miss.do('next', { kind: 'message' });
  t.equal(fromTx?.msg.payload[0], 'from tx', 'MATCH_REPLACE: the sender-id rule replaced the old mask, tx gets through');
  t.equal(await miss.do('next', { kind: 'message', ms: 300 }), null, 'and the replaced mask no longer lets other\'s broadcast in');

  await miss.do('addMatch', { cookie: 2, rule: { name: 'org.example.Tx' } });
  await miss.do('removeMatch', { cookie: 1 });
  await tx.do('send', { opts: { broadcast: true, payload: 'by name', bloom: bloom() } });
  t.equal((await miss.do('next', { kind: 'message' }))?.msg.payload[0], 'by name', 'a sender-name rule matches the owner of the name');
  await miss.do('removeMatch', { cookie: 2 });
  await tx.do('send', { opts: { broadcast: true, payload: 'unmatched', bloom: bloom() } });
  t.equal(await miss.do('next', { kind: 'message', ms: 300 }), null, 'after removing every match nothing arrives');
  t.match(await miss.req('removeMatch', { cookie: 2 }), { ok: false, code: 'ENOENT', command: 'MATCH_REMOVE', why: /no match/ },
    'removing an unknown cookie: ENOENT, explained');
});

t.test('kernel notifications as events', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'notify');
  const watcher = await newAgent('watcher', NOBODY);
  await watcher.do('connect', { bus: bus.path });
  await watcher.do('addMatch', { cookie: 7, rule: { idAdd: {} } });
  await watcher.do('addMatch', { cookie: 7, rule: { idRemove: {} } });
  await watcher.do('addMatch', { cookie: 7, rule: { nameAdd: { name: 'org.example.N' } } });
  await watcher.do('addMatch', { cookie: 7, rule: { nameChange: {} } });
  await watcher.do('addMatch', { cookie: 7, rule: { nameRemove: {} } });

  const p = await newAgent('p');
  const hp = await p.do('connect', { bus: bus.path });
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'id-add', id: hp.id } }, 'ID_ADD of the new connection');
  await p.do('acquire', { name: 'org.example.N', flags: { allowReplacement: true } });
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'name-add', name: 'org.example.N', oldId: '0', newId: hp.id } },
    'NAME_ADD with the owner');
  const q = await newAgent('q');
  const hq = await q.do('connect', { bus: bus.path });
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'id-add', id: hq.id } }, 'ID_ADD of the second one');
  t.match(await q.do('acquire', { name: 'org.example.N', flags: { replaceExisting: true } }), { inQueue: false }, 'q takes the name over');
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'name-change', name: 'org.example.N', oldId: hp.id, newId: hq.id } },
    'NAME_CHANGE from p to q');
  await q.do('release', { name: 'org.example.N' });
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'name-remove', name: 'org.example.N', oldId: hq.id, newId: '0' } },
    'NAME_REMOVE on release');
  await p.do('close');
  t.match(await watcher.do('next', { kind: 'notification' }), { n: { type: 'id-remove', id: hp.id } }, 'ID_REMOVE when p closes');
});

t.test('dropped broadcasts from another uid are counted and surfaced', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'drop');
  const slow = await newAgent('slow');
  await slow.do('connect', { bus: bus.path, opts: { autoReceive: false } });
  await slow.do('addMatch', { cookie: 1, rule: { bloomMask: bloom() } });
  const tx = await newAgent('tx', NOBODY);
  await tx.do('connect', { bus: bus.path });
  const total = 300;
  await tx.do('send', { opts: { broadcast: true, payload: 'flood', bloom: bloom() }, count: total });
  let received = 0;
  while (await slow.do('recv')) received++;
  const dropped = await slow.do('next', { kind: 'dropped', ms: 1000 });
  t.ok(received > 0 && received < total, `the queue took some (${received}) of ${total} broadcasts`);
  t.equal(dropped?.count, total - received, 'a dropped event counts exactly the rest (EOVERFLOW\'s dropped_msgs)');
});
