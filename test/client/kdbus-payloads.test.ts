// End to end: kdbusfs/client payloads between processes of two uids: pool
// views freed by the caller versus copies freed at once, fds and sealed
// memfds in both directions, and the errors of a full receiver.
import t from 'tap';
import { needRootAndFuse } from '../harness.js';
import { mountWithBus, NOBODY, stageClient } from './kdbus-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const { agent } = stageClient();
const POOL = 64 * 1024;

t.test('zero-copy views live until free(); copies free their slice at once', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'view');
  const viewer = await newAgent('viewer', NOBODY);
  const hv = await viewer.do('connect', { bus: bus.path, opts: { receive: 'view', poolSize: POOL } });
  const copier = await newAgent('copier', NOBODY);
  const hc = await copier.do('connect', { bus: bus.path, opts: { receive: 'copy', poolSize: POOL } });
  const tx = await newAgent('tx');
  await tx.do('connect', { bus: bus.path });

  const body = 'v'.repeat(4096);
  const full = await tx.do('sendUntilError', { opts: { dst: hv.id, payload: body }, max: 64 });
  t.ok(full.sent > 0 && full.sent < 64, `a viewer that frees nothing fills its pool after ${full.sent} messages`);
  t.match(full, { code: /^(EXFULL|ENOBUFS)$/, why: /pool is full|too many messages/ }, 'the sender is told why (EXFULL / ENOBUFS, explained)');
  const first = await viewer.do('next', { kind: 'message' });
  t.equal(first?.msg.payload[0], body, 'the view shows the payload');
  while (await viewer.do('next', { kind: 'message', ms: 200 })) { /* the rest, all held */ }
  const freed = await viewer.do('free', { offset: first.msg.offset });
  t.equal(freed.before[0], body, 'a held view still reads the payload later, just before free()');
  await tx.do('send', { opts: { dst: hv.id, payload: 'fits again' } });
  t.equal((await viewer.do('next', { kind: 'message' }))?.msg.payload[0], 'fits again', 'after free() the pool takes a message again');

  // one at a time, each received before the next: 4x the pool in total
  let n = 0;
  for (let i = 0; i < 64; i++) {
    const sent = await tx.req('send', { opts: { dst: hc.id, payload: body } });
    if (!sent.ok || (await copier.do('next', { kind: 'message' }))?.msg.payload[0] !== body) break;
    n++;
  }
  t.equal(n, 64, 'a copying receiver frees each slice at once: 4 pools\' worth pass through one pool');
});

t.test('fds and sealed memfds both ways', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'fds');
  const rootSide = await newAgent('root-side');
  const hr = await rootSide.do('connect', { bus: bus.path, opts: { names: ['org.example.Root'] } });
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: { kind: 'policy-holder', name: 'org.example.Root', grants: [{ world: true, access: 'talk' }] } });
  const user = await newAgent('user', NOBODY);
  const hu = await user.do('connect', { bus: bus.path });
  const refuser = await newAgent('refuser', NOBODY);
  const hx = await refuser.do('connect', { bus: bus.path, opts: { acceptFds: false } });

  await rootSide.do('send', { opts: { dst: hu.id }, fdTexts: ['file one', 'file two'] });
  t.same((await user.do('next', { kind: 'message' }))?.msg.fds, ['file one', 'file two'], 'root -> uid 65534: two fds, readable in the receiver');
  await user.do('send', { opts: { dst: hr.id }, fdTexts: ['from nobody'] });
  t.same((await rootSide.do('next', { kind: 'message' }))?.msg.fds, ['from nobody'], 'uid 65534 -> root: an fd');

  await rootSide.do('send', { opts: { dst: hu.id, payload: 'head' }, memfd: 'memfd body' });
  const m1 = await user.do('next', { kind: 'message' });
  t.same(m1?.msg.payload, ['head'], 'the vec part of a mixed message');
  t.match(m1?.msg.memfds, [{ data: 'memfd body', seals: 15, size: 10 }], 'root -> uid 65534: a sealed memfd arrives sealed, with its data');
  await user.do('send', { opts: { dst: hr.id }, memfd: 'x'.repeat(100_000) });
  const m2 = await rootSide.do('next', { kind: 'message' });
  t.equal(m2?.msg.memfds[0]?.data.length, 100_000, 'uid 65534 -> root: a 100 kB memfd');

  t.match(await rootSide.req('send', { opts: { dst: hu.id }, memfd: 'loose', unsealed: true }),
    { ok: false, code: /^(EMEDIUMTYPE|ETXTBSY)$/, command: 'SEND', why: /seal/ }, 'an unsealed memfd is refused, explained');
  t.match(await rootSide.req('send', { opts: { dst: hx.id }, fdTexts: ['refused'] }),
    { ok: false, code: 'ECOMM', why: /ACCEPT_FD/ }, 'fds to a connection without ACCEPT_FD: ECOMM, explained');
});
