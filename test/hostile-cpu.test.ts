// CPU (issue #17, 5): one user's expensive requests must not starve the
// others. The attacker (uid 1000, test/clients/hostile-cpu.c) holds
// CONNS connections and, in turn: NAME_LIST over CONNS x 256 names from four
// threads in a loop; broadcasts from four threads while every connection has
// 256 matches of seven BLOOM_MASK rules (1 KiB: 16 generations each) that
// cost every rule a test to its last word; then all its connections close at
// once (their names and matches torn down). Meanwhile a victim pair under uid
// 1001 makes synchronous 8-byte calls at 500/s. Asserted for each: no victim
// call fails and the victim's p99 stays within twice its undisturbed p99 or
// 20 ms, whichever is larger; afterwards the census and the server's fds are
// back to their baselines and its memory (shared pool memory left out) within
// RSS_MARGIN_MIB of what it was before the attacker came.
//
// The scale fits a test on a loaded 2-CPU machine: 200 connections (51,200
// names, 51,200 matches). The long form, 1022 connections as in the issue:
// bench/hostile-cpu.sh.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  census, censusBack, compileClient, live, mountType, needRootAndFuse, ok, peerSet, sleep, startServer, stopServer,
  until,
} from './harness.js';
import { fdCount, MiB, residentBytes, victimHolds, victimPair } from './hostile.js';

const ATTACKER_UID = 1000;
const VICTIM_UID = 1001;
const CONNS = Number(process.env.HOSTILE_CPU_CONNS ?? 200);
const RATE = 500;
const UNDISTURBED_CALLS = 1000;
const ATTACK_SECONDS = 4;
const DISTURBED_CALLS = ATTACK_SECONDS * RATE;
const THREADS = 4;
const BLOOM = 64; // makeBus's bloom size
const RSS_MARGIN_MIB = 64;
// kdbusfs's per-user quotas (lib/core/user.ts) would refuse the attacker at
// 16,384 names and matches and 16 MiB of match rules: raised to what the
// attack needs, so that what is tested is the cost of the work, not the
// quota that bounds it by default.
const LIMITS = [`user_names=${CONNS * 256}`, `user_matches=${CONNS * 256}`, `user_match_bytes=${CONNS * 256 * 8}K`];

/** Resident memory of process pid in MiB, shared memory (the pools' memfds) left out. */
function rssMiB(pid: number): number {
  const { rss, shmem } = residentBytes(pid);
  return (rss - shmem) / MiB;
}

t.setTimeout(Number(process.env.HOSTILE_CPU_TIMEOUT_MS ?? 300_000));

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-hostile-cpu-'));
chmodSync(tmp, 0o755); // the peers under other uids must reach the mount inside
const victimClient = await compileClient('hostile-memory.c', join(tmp, 'hostile-memory'), ['-pthread']);
const attackerClient = await compileClient('hostile-cpu.c', join(tmp, 'hostile-cpu'), ['-pthread']);
const peerClient = await compileClient('kdbus-peer.c', join(tmp, 'kdbus-peer'), ['-pthread']);

await t.test(`uid ${ATTACKER_UID} makes the server work hard; uid ${VICTIM_UID} keeps calling`, async (t) => {
  const dir = join(tmp, 'kdbus');
  mkdirSync(dir);
  const server = await startServer(t, dir, { args: LIMITS.flatMap((l) => ['--limit', l]) });
  if (!server) return;
  const serverPid = server.child.pid!;
  const base = await census(server);
  const baseFds = fdCount(serverPid);
  const baseRss = rssMiB(serverPid);

  await t.test('the attacks', async (t) => {
    // The attacker's own bus (as any user may make one), open to the world:
    // its owner may own names on it without a policy.
    const maker = await peerSet(t, peerClient)('maker');
    ok(t, await maker.cmd(`setuid ${ATTACKER_UID} ${ATTACKER_UID}`), `maker: drops to uid ${ATTACKER_UID}`);
    ok(t, await maker.cmd(`make ${dir}/control ${ATTACKER_UID}-hostile-cpu world ${BLOOM} 1`), 'the attacker makes a bus');
    const path = `${dir}/${ATTACKER_UID}-hostile-cpu/bus`;
    const victim = await victimPair(t, peerSet(t, victimClient), path, VICTIM_UID, RATE);
    const attacker = await peerSet(t, attackerClient)('attacker');
    ok(t, await attacker.cmd(`setuid ${ATTACKER_UID}`), `attacker: drops to uid ${ATTACKER_UID}`);

    const quiet = await victim.calls(UNDISTURBED_CALLS);
    t.equal(quiet.kv.failed, '0', `undisturbed: ${UNDISTURBED_CALLS} calls at ${RATE}/s answered`, { answer: quiet.line });
    t.comment(`undisturbed: ${quiet.line}`);

    ok(t, await attacker.cmd(`conns ${path} ${CONNS}`, 120_000), `attacker: ${CONNS} connections`);
    ok(t, await attacker.cmd('names 256', 120_000), `attacker: ${CONNS} x 256 names`);
    let peakRss = rssMiB(serverPid);
    const during = async (what: string, attack: string) => {
      const calls = victim.calls(DISTURBED_CALLS);
      const a = await attacker.cmd(attack, 120_000);
      const v = await calls;
      peakRss = Math.max(peakRss, rssMiB(serverPid));
      t.comment(`${what}: attacker ${a.line}; victim ${v.line}`);
      ok(t, a, `${what}: the attacker's requests are served`);
      await t.test(`${what}: the victim`, async (t) => victimHolds(t, quiet, v, DISTURBED_CALLS));
    };

    await during(`NAME_LIST over ${CONNS * 256} names, ${THREADS} threads`, `list ${ATTACK_SECONDS} ${THREADS}`);

    ok(t, await attacker.cmd(`matches 256 7 1024 ${BLOOM}`, 300_000), `attacker: ${CONNS} x 256 matches of 7 bloom masks`);
    peakRss = Math.max(peakRss, rssMiB(serverPid));
    await during(`broadcasts over ${CONNS * 256} matches, ${THREADS} threads`,
      `broadcast ${ATTACK_SECONDS} ${THREADS} ${BLOOM}`);

    // The closes return at once; the server tears down while the victim calls.
    const calls = victim.calls(DISTURBED_CALLS);
    await sleep(200);
    ok(t, await attacker.cmd('close'), 'attacker: every connection closed');
    const v = await calls;
    t.comment(`teardown of ${CONNS} connections with 256 names and 256 matches each: victim ${v.line}`);
    await t.test('teardown: the victim', async (t) => victimHolds(t, quiet, v, DISTURBED_CALLS));
    t.comment(`server memory without pools: ${baseRss.toFixed(0)} MiB before, ${peakRss.toFixed(0)} MiB at the peak`);
  });

  const { off } = await censusBack(server, base, 30_000);
  t.same(off, {}, 'every client gone: the census is back to the baseline');
  t.equal(live.size, 0, 'no client process is left');
  t.ok(await until(() => fdCount(serverPid) === baseFds, 10_000, 50),
    `the server's fds are back to the baseline (${baseFds}; now ${fdCount(serverPid)})`);
  let rss = rssMiB(serverPid);
  const back = await until(() => (rss = rssMiB(serverPid)) <= baseRss + RSS_MARGIN_MIB, 20_000, 200);
  const m = (await census(server)).memory;
  t.ok(back, `the server's memory is back within ${RSS_MARGIN_MIB} MiB of ${baseRss.toFixed(0)} MiB ` +
    `(now ${rss.toFixed(0)} MiB; V8 heap used ${(m.heapUsed / 2 ** 20).toFixed(0)} MiB, ` +
    `array buffers ${(m.arrayBuffers / 2 ** 20).toFixed(0)} MiB)`);
  await stopServer(t, server, dir);
});

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'kdbus'))) rmSync(tmp, { recursive: true, force: true });
});
