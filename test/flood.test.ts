// A flood (issue #7): one uid sends to a receiver as fast as it can and
// runs into its quota, while two other uids keep calling the same receiver.
// kdbus (connection.c kdbus_conn_entry_insert, kdbus_conn_quota_inc;
// limits.h): a receiver's first 16 queued messages are not accounted, from
// then on each sending user may have 16 queued there (ENOBUFS beyond), up to
// 256 in all. So the flooder fills its share and is refused (ENOBUFS) over
// and over, and the others, with a call or two in flight, never are.
//
// A real `kdbusfs mount DIR` in its own process; the receiver, the flooder
// and the callers are test/clients/flood-client.c processes (the bus maker
// and a policy holder granting TALK are kdbus-peer processes). Every message
// carries its cookie; the receiver counts per sender what arrived once,
// twice or out of order. Asserted: the flooder got ENOBUFS and no other
// error, every message it was not refused arrived exactly once and in
// order; every call of the other two uids was answered (none refused, none
// lost or duplicated), each within 2 s; the receiver's queue never held more
// than the quotas allow; afterwards the server's census is back to its
// baseline.
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  census, censusBack, compileClient, connect, hello, live, makeBus, mountType, needRootAndFuse, ok, peerSet, sleep,
  startServer, stopServer, until, withTimeout, type Census, type Peer, type Tap,
} from './harness.js';

// limits.h
const CONN_MAX_MSGS_UNACCOUNTED = 16;
const CONN_MAX_MSGS_PER_USER = 16;

const FLOODER_UID = 1000;
const CALLER_UIDS = [1001, 1002];
const WARMUP_CALLS = 20;
const CALLS = 300;
const CALL_TIMEOUT_MS = 5000;
const CALL_BOUND_MS = 2000;

t.setTimeout(90_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-flood-'));
chmodSync(tmp, 0o755); // peers under other uids must reach the mount inside
const peerClient = await compileClient('kdbus-peer.c', join(tmp, 'kdbus-peer'), ['-pthread']);
const floodClient = await compileClient('flood-client.c', join(tmp, 'flood-client'), ['-pthread']);

/** A flood-client as uid (root: 0, no setuid), connected. */
async function floodPeer(t: Tap, newPeer: (name: string) => Promise<Peer>, name: string, uid: number,
                         bus: string): Promise<Peer> {
  const p = await newPeer(name);
  if (uid) ok(t, await p.cmd(`setuid ${uid}`), `${name}: drops to uid ${uid}`);
  return hello(t, p, bus);
}

/** srcs=ID:COUNT:DUPS:DISORDER:MAX,... of the receiver's stats, by sender id. */
function perSender(line: string): Map<number, { count: number; dups: number; disorder: number; max: number }> {
  const out = new Map<number, { count: number; dups: number; disorder: number; max: number }>();
  const srcs = /srcs=(\S+)/.exec(line)?.[1] ?? '-';
  if (srcs === '-') return out;
  for (const rec of srcs.split(',')) {
    const [id, count, dups, disorder, max] = rec.split(':').map(Number);
    out.set(id!, { count: count!, dups: dups!, disorder: disorder!, max: max! });
  }
  return out;
}

await t.test(`uid ${FLOODER_UID} floods a receiver; uids ${CALLER_UIDS.join(' and ')} keep calling it`, async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir);
  if (!server) return;
  const base = await census(server);

  await t.test('the flood', async (t) => {
    const newPeer = peerSet(t, peerClient);
    const newFlood = peerSet(t, floodClient);
    const { path } = await makeBus(t, newPeer, dir, '0-flood');
    await connect(t, await newPeer('policy holder'), path, 'holder name:flood.sink policy:world:talk',
      'a policy holder: everyone may TALK to flood.sink');
    const recv = await floodPeer(t, newFlood, 'receiver', 0, path);
    ok(t, await recv.cmd('acquire flood.sink'), 'the receiver owns flood.sink');
    ok(t, await recv.cmd('serve'), 'and receives (answering every call) in a thread');
    const flooder = await floodPeer(t, newFlood, `flooder (uid ${FLOODER_UID})`, FLOODER_UID, path);
    const callers: Peer[] = [];
    for (const uid of CALLER_UIDS) callers.push(await floodPeer(t, newFlood, `caller (uid ${uid})`, uid, path));

    const warm = await Promise.all(callers.map((c) => c.cmd(`calls ${recv.id} ${WARMUP_CALLS} ${CALL_TIMEOUT_MS}`, 30_000)));
    for (const [i, w] of warm.entries()) {
      t.equal(w.kv.done, String(WARMUP_CALLS), `before the flood: uid ${CALLER_UIDS[i]}'s ${WARMUP_CALLS} calls answered`,
        { answer: w.line });
    }

    ok(t, await flooder.cmd(`flood ${recv.id}`), 'the flood starts');
    let full: Census | null = null;
    await until(async () => {
      const c = await census(server);
      if (c.chargedMessages >= CONN_MAX_MSGS_PER_USER) full = c;
      return full !== null;
    }, 5000, 50);
    t.ok(full, `the flooder fills its share of the receiver's queue (${CONN_MAX_MSGS_PER_USER} messages charged to it)`);

    // The calls under the flood, with censuses taken meanwhile.
    const t0 = Date.now();
    const calls = Promise.all(callers.map((c) => c.cmd(`calls ${recv.id} ${CALLS} ${CALL_TIMEOUT_MS}`, 60_000)));
    let running = true;
    void calls.finally(() => { running = false; });
    const during: Census[] = [];
    while (running) {
      during.push(await census(server));
      await sleep(100);
    }
    const results = await calls;
    const callMs = Date.now() - t0;
    const stop = await flooder.cmd('stop');
    const stats = await withTimeout(recv.cmd('stats', 20_000), 25_000, 'the receiver\'s stats');

    t.comment(`flooder: ${stop.line}; callers: ${results.map((r) => r.line).join(' | ')}; receiver: ${stats.line}`);
    t.ok(Number(stop.kv.enobufs) > 0, `the flooder hit its quota: ENOBUFS ${stop.kv.enobufs} times`, { answer: stop.line });
    t.equal(stop.kv.other, '0', 'and got no other error', { answer: stop.line });
    t.ok(Number(stop.kv.sent) > CONN_MAX_MSGS_UNACCOUNTED + CONN_MAX_MSGS_PER_USER,
      `its messages kept going as the receiver made room (${stop.kv.sent} sent)`);
    for (const [i, r] of results.entries()) {
      const uid = CALLER_UIDS[i];
      t.equal(r.kv.done, String(CALLS), `during the flood: uid ${uid}'s ${CALLS} calls were all answered`, { answer: r.line });
      t.equal(r.kv.failed, '0', `none refused or lost (${r.kv.err})`);
      t.ok(Number(r.kv.max_ms) < CALL_BOUND_MS, `each within ${CALL_BOUND_MS} ms (slowest ${r.kv.max_ms} ms, ` +
        `all ${CALLS} in ${r.kv.total_ms} ms)`);
    }
    t.ok(during.length > 0, `${during.length} censuses during the calls (${callMs} ms)`);
    const maxQueued = Math.max(...during.map((c) => c.queued));
    const maxCharged = Math.max(...during.map((c) => c.chargedMessages));
    const bound = CONN_MAX_MSGS_UNACCOUNTED + CONN_MAX_MSGS_PER_USER + CALLER_UIDS.length;
    t.ok(maxQueued <= bound, `the receiver's queue never held more than 16 unaccounted + 16 of the flooder's + ` +
      `a call per caller = ${bound} (at most ${maxQueued})`);
    t.ok(maxCharged <= CONN_MAX_MSGS_PER_USER + CALLER_UIDS.length, `at most 16 charged to the flooder and one call ` +
      `per caller (at most ${maxCharged})`);

    t.equal(stats.kv.bad, '0', 'the receiver found every payload intact');
    t.equal(stats.kv.lost, '0', 'and lost none');
    const got = perSender(stats.line);
    const fl = got.get(flooder.id);
    t.same(fl, { count: Number(stop.kv.sent), dups: 0, disorder: 0, max: Number(stop.kv.sent) },
      `every message the flooder was not refused arrived once, in order (${stop.kv.sent})`);
    for (const [i, c] of callers.entries()) {
      const n = WARMUP_CALLS + CALLS;
      t.same(got.get(c.id), { count: n, dups: 0, disorder: 0, max: n },
        `every call of uid ${CALLER_UIDS[i]} arrived once, in order (${n})`);
    }
  });

  const { off } = await censusBack(server, base);
  t.same(off, {}, 'every client gone: the census is back to the baseline');
  t.equal(live.size, 0, 'no client process is left');
  await stopServer(t, server, dir);
});

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'mnt'))) rmSync(tmp, { recursive: true, force: true });
});
