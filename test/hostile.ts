// What the hostile-user tests (issue #17: test/hostile-memory.test.ts,
// test/hostile-resources.test.ts, test/hostile-cpu.test.ts) share: the server's fds and memory read
// from /proc, the victim's latency bound, and a FUSE mount of the
// attacker's that never answers (test/clients/stuck-fuse.c). Not a test
// itself (tap runs test/**/*.test.ts only).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hello, ok, until, withTimeout, type NewPeer, type Peer, type Reply, type Tap } from './harness.js';

/** The open fds of process pid. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What the open fds of process pid refer to (readlink of /proc/PID/fd/N: never touches the file). */
export function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Resident memory of process pid (VmRSS and its shmem part, RssShmem: the pools), bytes. */
export function residentBytes(pid: number): { rss: number; shmem: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') * 1024, shmem: kib('RssShmem') * 1024 };
}

export const MiB = 1024 * 1024;

export function mib(n: number): string {
  return `${(n / MiB).toFixed(1)} MiB`;
}

/**
 * The victim's bound during an attack (issue #17): all its calls answered,
 * none failed, p99 within twice the undisturbed p99 or 20 ms, whichever is
 * larger. quiet and during are test/clients/victim.h `calls` answers.
 */
export function victimHolds(t: Tap, quiet: Reply, during: Reply, calls: number): void {
  t.equal(during.kv.done, String(calls), `under attack: all ${calls} victim calls answered`, { answer: during.line });
  t.equal(during.kv.failed, '0', 'none failed', { answer: during.line });
  const bound = Math.max(2 * Number(quiet.kv.p99_ms), 20);
  t.ok(Number(during.kv.p99_ms) <= bound, `victim p99 ${during.kv.p99_ms} ms <= ${bound.toFixed(2)} ms ` +
    `(undisturbed p50/p99 ${quiet.kv.p50_ms}/${quiet.kv.p99_ms} ms; under attack p50 ${during.kv.p50_ms} ms)`);
}

/**
 * A victim pair: a receiver answering calls and a caller making synchronous
 * 8-byte calls to it, both of test/clients/hostile-memory.c under uid, on
 * bus. calls(n) makes n calls at rate per second and answers done= failed=
 * p50_ms= p99_ms=.
 */
export async function victimPair(t: Tap, newClient: NewPeer, bus: string, uid: number, rate: number):
    Promise<{ calls: (n: number) => Promise<Reply> }> {
  const peer = async (name: string): Promise<Peer> => {
    const p = await newClient(name);
    ok(t, await p.cmd(`setuid ${uid}`), `${name}: drops to uid ${uid}`);
    return hello(t, p, bus);
  };
  const receiver = await peer('victim receiver');
  ok(t, await receiver.cmd('serve'), 'the victim receiver answers calls');
  const caller = await peer('victim caller');
  return { calls: (n) => caller.cmd(`calls ${receiver.id} ${n} ${rate} 5000`, 120_000) };
}

export interface StuckMount {
  /** READs it holds */
  reads(): number;
  /** FLUSHes it holds (hold-flush) */
  flushes(): number;
  /** ends it: what waits for it fails */
  stop(): Promise<void>;
}

/**
 * test/clients/stuck-fuse.c (binary) mounted at dir, its file readable by
 * uid; holdFlush: FLUSH never answered either. Stopped when t ends; null
 * (t failed) when it does not come up.
 */
export async function stuckMount(t: Tap, binary: string, dir: string, uid: number, holdFlush = false):
    Promise<StuckMount | null> {
  const child = spawn(binary, [dir, String(uid), ...(holdFlush ? ['hold-flush'] : [])], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const gone = new Promise<void>((done) => child.on('close', () => done()));
  const stop = async () => {
    child.kill('SIGTERM');
    await withTimeout(gone, 5000, 'stuck-fuse exits').catch(() => child.kill('SIGKILL'));
  };
  t.teardown(stop);
  if (!await until(() => out.includes('ok ready') || out.includes('err'), 5000) || !out.includes('ok ready')) {
    t.fail('the stuck FUSE mount comes up', { out });
    return null;
  }
  return {
    reads: () => (out.match(/^read /gm) ?? []).length,
    flushes: () => (out.match(/^flush$/gm) ?? []).length,
    stop,
  };
}
