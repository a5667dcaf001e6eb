// The server's log under pressure, end to end (a real `kdbusfs mount DIR`):
//   - an unprivileged uid refused as fast as it can ask (a python3 client
//     looping on a BUS_MAKE the server refuses) gets a few lines a second;
//     what it is not given is summed up per uid, command and errno, and the
//     line count plus the summed count equal the refusals the client saw; a
//     second uid keeps its own lines; the server stays responsive meanwhile
//   - a stderr whose reader stops reading (a FIFO nobody drains) never blocks
//     the server: lines are dropped, and their count is reported once the
//     reader catches up
//   - when stderr is the journal ($JOURNAL_STREAM names it), lines carry
//     syslog priorities and no time stamp
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, mountType, needRootAndFuse, run, sleep, statOf, until, withTimeout, type Tap } from './harness.js';

needRootAndFuse();

const ATTACKER = 65534;
const OTHER = 1000;
// limits of lib/refusal-limiter.ts's default
const BURST = 10;
const PER_SECOND = 5;

// As uid argv[2], BUS_MAKE on control (argv[1]) with a command too short to
// be one (size 8: EINVAL) for argv[3] seconds; prints the count of refusals.
const FLOODER = `
import fcntl, json, os, struct, sys, time
os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
fd = os.open(sys.argv[1], os.O_RDWR)
buf = bytearray(struct.pack('<QQQQ', 8, 0, 0, 0))
refused = {}
end = time.time() + float(sys.argv[3])
while time.time() < end:
    try:
        fcntl.ioctl(fd, 0x40209500, buf, True)
    except OSError as e:
        refused[e.errno] = refused.get(e.errno, 0) + 1
print(json.dumps(refused))
`;

interface Served { child: ChildProcess; exit: Promise<number | null>; dir: string }

/** `kdbusfs mount DIR ARGS` with stderr on fd (or a pipe collected into out), waited for until it serves. */
async function serve(t: Tap, args: string[], stderr: number | 'pipe', env: NodeJS.ProcessEnv = {}): Promise<Served & { out: { text: string } }> {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-log-'));
  const child = spawn(process.execPath, [cli, 'mount', dir, ...args],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', stderr] });
  const out = { text: '' };
  child.stderr?.on('data', (d: Buffer) => { out.text += d.toString(); });
  const exit = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await withTimeout(exit, 5000, 'server exit').catch(() => undefined);
    if (mountType(dir)) await run('umount', ['-l', dir]).catch(() => undefined);
    if (!mountType(dir)) rmSync(dir, { recursive: true, force: true });
  });
  const up = await until(async () => mountType(dir) === 'fuse.kdbusfs' && await statOf(join(dir, 'control')) !== null, 15_000);
  if (!up) throw new Error(`kdbusfs mount did not come up: ${out.text}`);
  return { child, exit, dir, out };
}

async function flood(dir: string, uid: number, seconds: number): Promise<Record<string, number>> {
  const r = await run('python3', ['-c', FLOODER, join(dir, 'control'), String(uid), String(seconds)], { timeout: 60_000 });
  return JSON.parse(r.stdout) as Record<string, number>;
}

t.test('a flood of refusals from one uid: a few lines a second, the rest summed up', async (t) => {
  const s = await serve(t, ['--log-level', 'info'], 'pipe');
  // The victim: stat of control, timed, all along.
  const latencies: number[] = [];
  let flooding = true;
  const victim = (async () => {
    while (flooding) {
      const at = performance.now();
      await statOf(join(s.dir, 'control'));
      latencies.push(performance.now() - at);
      await sleep(20);
    }
  })();
  const started = performance.now();
  const [attacker, other] = await Promise.all([flood(s.dir, ATTACKER, 3), flood(s.dir, OTHER, 1)]);
  const seconds = (performance.now() - started) / 1000;
  flooding = false;
  await victim;
  const refusedBy = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  t.ok(refusedBy(attacker) > 1000, `the attacker was refused ${refusedBy(attacker)} times in 3 s`);
  t.same(Object.keys(attacker), ['22'], 'all EINVAL');

  s.child.kill('SIGTERM');
  t.equal(await withTimeout(s.exit, 10_000, 'server exit'), 0, 'the server exits 0');
  const lines = s.out.text.split('\n');
  const mine = lines.filter((l) => l.includes(`kdbusfs[refused] uid ${ATTACKER} BUS_MAKE:`));
  const bound = BURST + PER_SECOND * seconds + 1;
  t.ok(mine.length >= BURST && mine.length <= bound,
    `the attacker got ${mine.length} lines (a burst of ${BURST}, then ${PER_SECOND}/s: at most ${bound.toFixed(0)} in ${seconds.toFixed(1)} s)`);
  t.match(mine[0], /BUS_MAKE: .* \(EINVAL\)$/, 'a line names the command, the reason and the errno');
  const summaries = lines.filter((l) => l.includes(`kdbusfs[refused] uid ${ATTACKER}: `));
  const summed = summaries.reduce((n, l) => n + Number(/: (\d+) more refusals/.exec(l)?.[1] ?? 0), 0);
  t.ok(summaries.every((l) => / BUS_MAKE EINVAL x\d+$/.test(l)), 'summaries count per command and errno', { summaries });
  t.equal(mine.length + summed, refusedBy(attacker), 'lines + summed up = every refusal, none lost');
  const others = lines.filter((l) => l.includes(`kdbusfs[refused] uid ${OTHER} BUS_MAKE:`));
  t.ok(others.length >= BURST, `uid ${OTHER}, refused meanwhile, still got its own ${others.length} lines`);
  const sorted = [...latencies].sort((a, b) => a - b);
  const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? Infinity;
  t.ok(latencies.length > 20 && p99 < 1000, `the server stayed responsive: ${latencies.length} stats, p99 ${p99.toFixed(1)} ms`);
});

t.test('a stderr nobody reads: the server never blocks, drops lines and reports how many', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'kdbusfs-log-fifo-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const fifo = join(work, 'stderr');
  await run('mkfifo', [fifo]);
  const holder = openSync(fifo, constants.O_RDWR); // read end kept open, never drained
  t.teardown(() => closeSync(holder));
  const s = await serve(t, [], holder);
  // A census line per SIGUSR2 (~450 bytes): far more than the pipe's 64 KiB.
  // (Paced: signals sent faster than the server takes them merge into one.)
  for (let i = 0; i < 400; i++) {
    s.child.kill('SIGUSR2');
    await sleep(2);
  }
  const at = performance.now();
  t.ok(await statOf(join(s.dir, 'control')), 'the server answers with its stderr full');
  t.ok(performance.now() - at < 2000, `at once (${(performance.now() - at).toFixed(1)} ms)`);
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  t.teardown(() => closeSync(reader));
  const drain = (): string => {
    const buf = Buffer.alloc(1 << 16);
    let text = '';
    for (;;) {
      let n = 0;
      try {
        n = readSync(reader, buf);
      } catch {
        break; // EAGAIN: drained
      }
      if (n <= 0) break;
      text += buf.subarray(0, n).toString();
    }
    return text;
  };
  const first = drain();
  const written = first.split('\n').filter((l) => l.includes('kdbusfs[census]')).length;
  t.ok(written > 0 && written < 400, `${written} of 400 census lines fit; the rest were dropped`);
  t.ok(first.split('\n').slice(0, -1).every((l) => l.includes(' kdbusfs[')), 'every line written is whole');
  s.child.kill('SIGUSR2');
  let after = '';
  await until(() => (after += drain()).includes('kdbusfs[census]'), 5000);
  // (the log's 1 s ticker may have reported them while the first drain was going on)
  const m = /kdbusfs\[log\] warning: (\d+) log lines dropped/.exec(first + after);
  t.ok(m, 'once the reader catches up, the count of dropped lines is reported', { after: after.slice(0, 300) });
  t.ok(Number(m?.[1]) > 0 && Number(m?.[1]) <= 400 - written, `${m?.[1]} lines reported dropped`);
  s.child.kill('SIGTERM');
  t.equal(await withTimeout(s.exit, 10_000, 'server exit'), 0, 'exits 0');
});

t.test('stderr is the journal: priorities instead of time stamps', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'kdbusfs-log-journal-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const file = join(work, 'journal');
  const fd = openSync(file, 'w');
  const st = fstatSync(fd, { bigint: true });
  const s = await serve(t, [], fd, { JOURNAL_STREAM: `${st.dev}:${st.ino}`, KDBUSFS_QUIET: '' });
  closeSync(fd);
  await flood(s.dir, ATTACKER, 0.5);
  s.child.kill('SIGTERM');
  t.equal(await withTimeout(s.exit, 10_000, 'server exit'), 0, 'exits 0');
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  t.match(lines.find((l) => l.includes('serving kdbus')), /^<6>kdbusfs\[mount\] serving kdbus on /, 'info: <6>, no time stamp');
  t.match(lines.find((l) => l.includes(`uid ${ATTACKER} BUS_MAKE`)), /^<6>kdbusfs\[refused\] /, 'a refusal line: <6>');
  t.match(lines.find((l) => l.includes('more refusals')), /^<5>kdbusfs\[refused\] uid 65534: /, 'a summary: <5> (notice)');
  t.ok(lines.every((l) => /^<[3-7]>kdbusfs\[/.test(l)), 'every line has a priority');

  const plain = await serve(t, [], 'pipe', { JOURNAL_STREAM: `${st.dev}:${st.ino}`, KDBUSFS_QUIET: '' });
  plain.child.kill('SIGTERM');
  await withTimeout(plain.exit, 10_000, 'server exit');
  t.match(plain.out.text, /^\d{4}-\d\d-\d\dT[\d:.]+Z kdbusfs\[mount\] /, 'a JOURNAL_STREAM that is not stderr: time stamps');
});
