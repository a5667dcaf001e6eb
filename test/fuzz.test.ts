// Fuzzing, short form (the long form is bench/fuzz-long.sh): a real
// `kdbusfs mount DIR`, then test/clients/fuzz-client.c, seeded and bounded
// by a request count and a time limit: worker processes under uids 0, 65534
// and 65533 issue all 16 KDBUS_CMD_* with random and mutated sizes, flags,
// items and pointers, valid messages with vectors, memfds and fds, and race
// opens, closes, HELLO, BYEBYE and SIGKILL of each other.
//
// Invariants asserted:
//  1. the server answers every request (the client's per-step watchdog
//     counts none that hung), stays alive, and a fresh client can still make
//     a bus and pass a message byte for byte afterwards;
//  2. no connection receives data it cannot attribute to a message sent to
//     it (the client counts no violation: markers, pool-relative offsets);
//  3. after all clients are gone the server is back to its baseline: its
//     census (lib/core/census.ts: buses, connections, names, matches,
//     replies, queued messages, pool slices, charges, held fds...) equals
//     the one taken before, only `control` is in the root, its fd count is
//     within 2 of the baseline, its RSS within 64 MiB of it.
// Also: a worker killed around an fd install is reaped by its parent, not
// left a zombie traced by the server's fd-install tracer ("zombies=").
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  census, censusBack, compileClient, mountType, needRootAndFuse, sleep, startServer, stopServer, until,
  withTimeout,
} from './harness.js';

const SEED = 20151;
const PROCS = 8;
const REQUESTS = 40_000;
const SECONDS = 6;
const FD_SLACK = 2;
const RSS_SLACK = 64 << 20;

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-fuzz-'));
chmodSync(tmp, 0o755); // workers under uid 65534/65533 must reach the mount
const client = join(tmp, 'fuzz-client');
await compileClient('fuzz-client.c', client, ['-Wno-format']);

/** Served: dir/control can be stat'ed within 2 s. */
function controlServed(dir: string): Promise<boolean> {
  return withTimeout(stat(join(dir, 'control')), 2000, 'stat control').then(() => true, () => false);
}

/** The server's open fds and resident set size (bytes). */
function usage(pid: number): { fds: number; rss: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rss: Number(m?.[1] ?? 0) * 1024 };
}

/** Runs the fuzz client; never rejects: the exit code and output are returned. */
async function client$(args: string[], ms: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    execFile(client, args, { timeout: ms, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : null) : 0;
      done({ code, out: String(out), err: String(err) });
    });
  });
}

await t.test(`fuzz: seed ${SEED}, ${PROCS} processes, ${REQUESTS} requests or ${SECONDS} s`, async (t) => {
  const dir = join(tmp, 'kdbus');
  mkdirSync(dir);
  const server = await startServer(t, dir, { probe: controlServed, every: 50 });
  if (server) {
    const onlyControl = async (): Promise<boolean> => {
      const names = await withTimeout(readdir(dir), 5000, 'readdir').catch(() => null);
      return names !== null && names.length === 1 && names[0] === 'control';
    };

    // A first round trip, so that whatever the server opens once is open.
    const warm = await client$(['check', dir, '0-fuzz-warmup'], 20_000);
    t.match(warm.out, /^check ok/, 'before: a fresh client makes a bus and passes a message byte for byte', warm);
    t.ok(await until(onlyControl, 5000, 50), 'before: the checker\'s bus is gone with its control fd');
    await sleep(200);
    if (server.exited) throw new Error(`kdbusfs exited: ${JSON.stringify(await server.ended)} ${server.stderr}`);
    const base = usage(server.child.pid!);
    const baseCensus = await census(server);

    const fuzz = await client$(['fuzz', dir, String(SEED), String(PROCS), String(REQUESTS), String(SECONDS)], 40_000);
    const counts: Record<string, number> = {};
    for (const m of fuzz.out.matchAll(/(\w+)=(\d+)/g)) if (!(m[1]! in counts)) counts[m[1]!] = Number(m[2]);
    t.comment(fuzz.out.trim());
    if (fuzz.err.trim()) t.comment(fuzz.err.trim().split('\n').slice(0, 20).join('\n'));
    t.equal(fuzz.code, 0, 'the fuzz client finished within its bounds and found no hang and no violation',
      { stderr: fuzz.err.slice(0, 4000) });
    t.ok((counts.requests ?? 0) >= 1000, `requests were fuzzed (${counts.requests})`);
    t.ok((counts.badptr ?? 0) > 0, `bad pointers were passed (${counts.badptr})`);
    t.ok((counts.sent ?? 0) > 0 && (counts.recv ?? 0) > 0, `messages were sent (${counts.sent}) and received (${counts.recv})`);
    t.equal(counts.hangs, 0, '1. every request returned within the watchdog bound');
    t.equal(counts.violations, 0, '2. no connection received data it could not attribute, no offset outside its pool');
    t.equal(counts.zombies ?? 0, 0, 'killed workers are reaped: none is left a zombie traced by the server');

    t.equal(server.exited, false, '1. the server process is alive after the fuzzing');
    const after = await client$(['check', dir, '0-fuzz-after'], 20_000);
    t.match(after.out, /^check ok/, '1. after: a fresh client makes a bus, HELLO, sends and receives byte for byte', after);

    t.ok(await until(onlyControl, 10_000, 50), '3. every bus is gone: only control is left in the root');
    const { off } = await censusBack(server, baseCensus);
    t.same(off, {}, '3. the server\'s census is back to its baseline: every count as before');
    let now = usage(server.child.pid!);
    await until(() => { now = usage(server.child.pid!); return Math.abs(now.fds - base.fds) <= FD_SLACK; }, 5000, 50);
    t.ok(Math.abs(now.fds - base.fds) <= FD_SLACK, `3. server fd count back to its baseline ±${FD_SLACK} (${base.fds} -> ${now.fds})`);
    t.ok(now.rss <= base.rss + RSS_SLACK,
      `3. server RSS within 64 MiB of its baseline (${(base.rss / 2 ** 20).toFixed(1)} -> ${(now.rss / 2 ** 20).toFixed(1)} MiB)`);

    await stopServer(t, server);
  }
});

t.teardown(() => {
  if (!mountType(join(tmp, 'kdbus'))) rmSync(tmp, { recursive: true, force: true });
});
