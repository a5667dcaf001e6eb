// Pointers into pools (issue #7): a client whose command, message or payload
// vector lies in a page of a pool mapping that was never read, and a client
// that reads a page of its pool while the server stores a message there.
// With page-cache pools (--no-passthrough) each used to hang the whole mount:
// the page is read through FUSE from the very server whose one thread waits
// for it (native/stallrescue.h). test/clients/pool-pointer.c runs the cases;
// the same client runs against passthrough pools, which never had the fault
// path, as a control.
//
//
// Last, a pointer into another FUSE mount whose server does not answer (a
// second kdbusfs, stopped with SIGSTOP): nothing this server can answer. The
// memory task that faults on it is killed after its time (native/memtask.h):
// the SEND fails with EFAULT while the other server is still stopped, and
// this one serves throughout (test/hostile-memory.test.ts: the same from an
// attacker's own FUSE mount, with a victim measuring its calls).
//
// A hanging server leaves the client blocked in its ioctl, unkillable until
// the server dies: the client's promise is bounded, and the harness kills
// the server when the test ends.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { compileClient, needRootAndFuse, startServer, stopServer, until, withTimeout } from './harness.js';

const CASES = ['msg', 'other', 'vec', 'cmd', 'store', 'pass'];

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-pool-pointer-'));
chmodSync(tmp, 0o755);
const client = join(tmp, 'pool-pointer');
await compileClient('pool-pointer.c', client, ['-pthread']);
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function runClient(dir: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    execFile(client, [dir, ...CASES], (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : null) : 0;
      done({ code, out: String(out), err: String(err) });
    });
  });
}

for (const mode of ['page-cache', 'passthrough'] as const) {
  await t.test(`${mode} pools: pointers into never-read pool pages`, async (t) => {
    const dir = join(tmp, mode);
    mkdirSync(dir);
    const server = await startServer(t, dir, { args: mode === 'page-cache' ? ['--no-passthrough'] : [] });
    if (!server) return;
    const r = await withTimeout(runClient(dir), 30_000, 'the client finishes (the server answers)').catch((e: Error) => e);
    if (r instanceof Error) {
      t.fail(r.message, { stderr: server.stderr });
      return; // the harness kills the server, which frees the client
    }
    t.equal(r.code, 0, 'every case ok', { out: r.out, err: r.err });
    const lines = new Map(r.out.trim().split('\n').map((l) => [l.split(' ')[0]!, l] as const));
    for (const c of CASES) t.match(lines.get(c) ?? '', new RegExp(`^${c} ok`), `case ${c}`);
    t.ok(await withTimeout(stat(join(dir, 'control')), 5000, 'stat control').then(() => true, () => false),
      'the mount still serves');
    if (mode === 'page-cache') {
      // Otherwise the cases did not reach the fault path and proved nothing.
      t.match(lines.get('vec') ?? '', /evicted=1/, 'the vec case read a page evicted from the page cache');
      t.match(server.stderr, /answered [1-9]\d* READs it caused itself/,
        'the rescue thread answered READs the loop thread caused');
    }
    await stopServer(t, server, dir);
  });
}

await t.test('a pointer into another FUSE mount that does not answer', async (t) => {
  const dirA = join(tmp, 'stalled');
  const dirB = join(tmp, 'stopped');
  mkdirSync(dirA);
  mkdirSync(dirB);
  const a = await startServer(t, dirA);
  const b = await startServer(t, dirB, { args: ['--no-passthrough'] });
  if (!a || !b) return;
  const c = spawn(client, [dirA, `foreign=${dirB}`, 'pass'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((done) => c.on('close', (code) => done(code)));
  t.teardown(() => { c.kill('SIGKILL'); });
  t.ok(await until(() => out.includes('foreign ready'), 10_000), 'the client holds a never-read pool page of B', { out });

  b.child.kill('SIGSTOP');
  t.teardown(() => { b.child.kill('SIGCONT'); });
  const sent = Date.now();
  c.stdin.write('go\n');
  // (its exit then waits for B: closing its connection to B is a request to B)
  t.ok(await until(() => /^pass /m.test(out), 5000), 'the client is through its cases while B is stopped', { out });
  const ms = Date.now() - sent;
  t.match(out, /^foreign ok/m, 'case foreign: the SEND fails with EFAULT', { stderr: a.stderr });
  t.match(out, /^pass ok/m, 'case pass: A serves on');
  t.ok(ms < 2000, `the client is answered in ${ms} ms (the memory task's bound is 50 ms)`);
  t.match(a.stderr, /took over \d+ ms .* the request fails with EFAULT/, 'A says why');
  t.ok(await withTimeout(stat(join(dirA, 'control')), 2000, 'stat control').then(() => true, () => false),
    'A answers a stat of its control while B is still stopped');
  b.child.kill('SIGCONT');
  t.equal(await withTimeout(exited, 10_000, 'the client exits once B answers').catch(() => null), 0, 'the client exits 0');
  await stopServer(t, a, dirA);
  await stopServer(t, b, dirB);
});
