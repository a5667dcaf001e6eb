// Soak, short form (the long form is bench/soak.sh): a real `kdbusfs mount
// DIR`, then test/clients/soak-client.c for a few seconds over 200
// connections in 25 processes under uids 0, 65534 and 65533: unicasts by id
// and by name (vectors, some memfds and fds), bloom-filtered broadcasts,
// asynchronous and synchronous calls, name acquire/release churn, match
// churn, connections closing (BYEBYE or plain close) and reopening, and a
// client process SIGKILLed every few seconds. Every message carries a unique
// id that the client's shared ledger follows from SEND to RECV.
//
// Invariants asserted:
//  1. every message whose SEND returned 0 was received exactly once, unless
//     its receiver was closed abruptly or killed; none was corrupted,
//     misdelivered, reordered, or received although its SEND failed;
//  2. every broadcast reached each stable subscriber of its topic exactly
//     once, or was among the drops that subscriber was told of (EOVERFLOW);
//     every synchronous call that returned 0 brought its reply, and no
//     asynchronous call had more than one outcome (reply, REPLY_TIMEOUT or
//     REPLY_DEAD; a request still unread when its receiver goes gets two
//     REPLY_DEADs, as kdbus_conn_disconnect sends them);
//  3. no growth: with the traffic paused and drained, the server's RSS
//     without its pool mappings is at most 32 MiB above the figure after the
//     warm-up, and its fd count is the same (±2; the fd channels of live
//     receivers apart, native/fdchannel.h);
//  4. after all clients are gone: only `control` in the root, the server's
//     fd count within 2 of the one before the run, its RSS no higher than at
//     the end of the traffic (+8 MiB).
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { compileClient, mountType, needRootAndFuse, sleep, startServer, stopServer, until, withTimeout } from './harness.js';

const SECONDS = 20;
const CONNS = 200;
const RATE = 1500;
// V8 grows its heap to its working size (about 46 MiB committed, 8 MiB live,
// measured with --trace-gc) over the first 10-15 s of traffic; after that the
// figure drifts by a few MiB (bench/soak.sh: +5 MiB over 7 minutes).
const WARMUP = 10;
const GROWTH_BOUND = 32 << 20;
const FD_SLACK = 2;

t.setTimeout(90_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-soak-'));
chmodSync(tmp, 0o755); // clients under uids 65534 and 65533 must reach the mount
const client = join(tmp, 'soak-client');
await compileClient('soak-client.c', client);

function controlServed(dir: string): Promise<boolean> {
  return withTimeout(stat(join(dir, 'control')), 2000, 'stat control').then(() => true, () => false);
}

/** The server's open fds and resident set size (kB). */
function usage(pid: number): { fds: number; rssKb: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rssKb: Number(m?.[1] ?? 0) };
}

/** key=value numbers of the first output line starting with `prefix`. */
function figures(out: string, prefix: string): Record<string, number> {
  const line = out.split('\n').find((l) => l.startsWith(prefix)) ?? '';
  const r: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+)=(\d+)/g)) r[m[1]!] = Number(m[2]);
  return r;
}

await t.test(`soak: ${CONNS} connections, ${SECONDS} s of mixed traffic, every message counted`, async (t) => {
  const dir = join(tmp, 'kdbus');
  mkdirSync(dir);
  const server = await startServer(t, dir, { probe: controlServed, every: 50 });
  if (!server) return;
  const pid = server.child.pid!;
  await sleep(300);
  const base = usage(pid);

  const run = await new Promise<{ code: number | null; out: string; err: string }>((done) => {
    execFile(client, [dir, String(SECONDS), String(CONNS), '--rate', String(RATE), '--warmup', String(WARMUP),
      '--sample', '2', '--kill-every', '3', '--seed', '7', '--server-pid', String(pid)],
    { timeout: 75_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : null) : 0;
      done({ code, out: String(out), err: String(err) });
    });
  });
  t.comment(run.out.trim());
  if (run.err.trim()) t.comment(run.err.trim().split('\n').slice(0, 20).join('\n'));
  t.equal(run.code, 0, 'the soak client finished and its verdict is ok', { stderr: run.err.slice(0, 4000) });
  t.match(run.out, /^verdict ok$/m, 'verdict ok');

  const c = figures(run.out, 'result uni_queued=');
  const msgs = figures(run.out, 'result messages:');
  const bc = figures(run.out, 'result broadcasts:');
  const calls = figures(run.out, 'result calls:');
  t.ok(msgs.queued! > 2000, `messages were queued (${msgs.queued})`);
  t.equal(msgs.lost, 0, '1. no queued message was lost');
  t.equal(msgs.duplicated, 0, '1. no message was received twice');
  t.equal(msgs.received! + msgs.discarded_with_closed_receiver!, msgs.queued, '1. received + discarded with a closed receiver = queued');
  t.equal(msgs.phantom, 0, '1. nothing was received whose SEND failed');
  t.same([msgs.corrupt, msgs.misdelivered, msgs.reordered], [0, 0, 0], '1. none corrupt, misdelivered or out of order');
  t.ok(bc.sent! > 100 && bc.deliveries_expected! > 0, `broadcasts were sent (${bc.sent}) and expected at stable subscribers (${bc.deliveries_expected})`);
  t.equal(bc.lost, 0, '2. no broadcast delivery lost at a stable subscriber');
  t.equal(bc.duplicated, 0, '2. no broadcast delivered twice');
  t.equal(bc.delivered! + bc.dropped_reported! - (bc.drops_overreported ?? 0), bc.deliveries_expected,
    '2. delivered + drops reported = expected');
  t.ok(calls.sync! > 0 && calls.sync_replied! > 0 && calls.async! > 0, `calls were made (sync ${calls.sync}, async ${calls.async})`);
  t.equal(calls.bad_outcomes, 0, '2. no call had more than one outcome');
  t.ok(c.name_acquired! > 0 && c.name_released! > 0, `names were acquired (${c.name_acquired}) and released (${c.name_released})`);
  t.ok(c.conns_bye! > 0 && c.conns_abrupt! > 0 && c.workers_killed! > 0,
    `connections churned: ${c.conns_bye} BYEBYE, ${c.conns_abrupt} closed, ${c.workers_killed} client processes killed`);
  t.ok(c.memfd_recv! > 0 && c.fds_recv! > 0, `memfds (${c.memfd_recv}) and fds (${c.fds_recv}) were received`);

  const warm = figures(run.out, 'quiesce label=warmup');
  const end = figures(run.out, 'quiesce label=end');
  t.ok(warm.net_kb! > 0 && end.net_kb! > 0, 'the server was sampled after the warm-up and at the end');
  t.ok((end.net_kb! - warm.net_kb!) * 1024 <= GROWTH_BOUND,
    `3. RSS without pools grew at most 32 MiB after the warm-up (${(warm.net_kb! / 1024).toFixed(1)} -> ${(end.net_kb! / 1024).toFixed(1)} MiB)`);
  // fds without the fd channels of live receivers, which come and go with the workers (soak-client.c usage)
  t.ok(Math.abs(end.fds! - warm.fds!) <= FD_SLACK,
    `3. fd count the same after the warm-up and at the end (${warm.fds} -> ${end.fds}; fd channels ${warm.channels} -> ${end.channels})`);

  const onlyControl = async (): Promise<boolean> => {
    const names = await withTimeout(readdir(dir), 5000, 'readdir').catch(() => null);
    return names !== null && names.length === 1 && names[0] === 'control';
  };
  t.ok(await until(onlyControl, 10_000, 50), '4. every bus is gone: only control is left in the root');
  let now = usage(pid);
  await until(() => { now = usage(pid); return Math.abs(now.fds - base.fds) <= FD_SLACK; }, 10_000, 50);
  t.ok(Math.abs(now.fds - base.fds) <= FD_SLACK, `4. server fd count back to its baseline ±${FD_SLACK} (${base.fds} -> ${now.fds})`);
  t.ok(now.rssKb <= end.rss_kb! + 8192,
    `4. server RSS no higher than at the end of the traffic + 8 MiB (${(base.rssKb / 1024).toFixed(1)} before, ${(end.rss_kb! / 1024).toFixed(1)} at the end, ${(now.rssKb / 1024).toFixed(1)} after)`);
  t.equal(server.exited, false, 'the server is alive');
  await stopServer(t, server);
});

t.teardown(() => {
  if (!mountType(join(tmp, 'kdbus'))) rmSync(tmp, { recursive: true, force: true });
});
