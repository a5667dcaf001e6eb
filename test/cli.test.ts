// The kdbusfs command as a user runs it: help texts, `mount` serving in its own
// process, clean unmount on SIGTERM, recovery after kill -9, `umount`, and the
// default mount point (inside a private mount namespace only).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/lib/cli.js');
const env = { ...process.env, KDBUSFS_QUIET: '1' };

interface Ran { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Collects a process's output and how it ended. */
function finished(child: ChildProcess): Promise<Ran> {
  return new Promise((done) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr }));
  });
}

function kdbusfs(...args: string[]): Promise<Ran> {
  return finished(spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** The fstype mounted at dir, from the mount table (never touching dir itself). */
function mountType(dir: string): string | null {
  const line = readFileSync('/proc/self/mounts', 'utf8').split('\n').reverse()
    .find((l) => l.split(' ')[1] === dir);
  return line ? line.split(' ')[2]! : null;
}

async function until(what: string, check: () => boolean, seconds = 10): Promise<void> {
  for (const end = Date.now() + seconds * 1000; Date.now() < end; await sleep(50)) {
    if (check()) return;
  }
  throw new Error(`timed out after ${seconds} s waiting until ${what}`);
}

/** Starts `kdbusfs mount dir` and waits until it serves. */
async function mount(dir: string): Promise<{ child: ChildProcess; ended: Promise<Ran> }> {
  const child = spawn(process.execPath, [cli, 'mount', dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = finished(child);
  let exited = false;
  void ended.then(() => { exited = true; });
  await until(`${dir} is mounted`, () => exited || mountType(dir) === 'fuse.kdbusfs');
  if (exited) throw new Error(`kdbusfs mount exited early:\n${(await ended).stderr}`);
  return { child, ended };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The host's mounts at or below /sys/fs. */
function sysFsMounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith('/sys/fs'));
}

t.test('--help', async (t) => {
  const top = await kdbusfs('--help');
  t.equal(top.code, 0, 'exits 0');
  for (const cmd of ['mount', 'umount', 'selftest']) t.match(top.stdout, cmd, `lists ${cmd}`);
  for (const cmd of ['mount', 'umount', 'selftest']) {
    const r = await kdbusfs(cmd, '--help');
    t.equal(r.code, 0, `${cmd} --help exits 0`);
    t.match(r.stdout, `Usage: kdbusfs ${cmd}`, `${cmd} --help shows its usage`);
  }
  const bad = await kdbusfs('frobnicate');
  t.equal(bad.code, 2, 'an unknown command exits 2');
  t.match(bad.stderr, "unknown command 'frobnicate'", 'and says so');
});

t.test('mount serves a tree and SIGTERM unmounts cleanly', async (t) => {
  const dir = tempDir(t);
  const { child, ended } = await mount(dir);
  t.ok(readdirSync(dir).includes('control'), 'control is in the root');
  const st = statSync(join(dir, 'control'));
  t.equal(st.mode & 0o777, 0o666, 'control is mode 0666');
  child.kill('SIGTERM');
  const r = await ended;
  t.equal(r.code, 0, 'exits 0 on SIGTERM');
  t.equal(mountType(dir), null, 'nothing left mounted on the directory');
});

t.test('after kill -9 the next mount on the same directory works at once', async (t) => {
  const dir = tempDir(t);
  const first = await mount(dir);
  first.child.kill('SIGKILL');
  await first.ended;
  const second = await mount(dir);
  t.ok(readdirSync(dir).includes('control'), 'the new server answers');
  second.child.kill('SIGTERM');
  t.equal((await second.ended).code, 0, 'and stops cleanly');
  t.equal(mountType(dir), null, 'nothing left mounted');
});

t.test('umount', async (t) => {
  const dir = tempDir(t);
  const { child, ended } = await mount(dir);
  const r = await kdbusfs('umount', dir);
  t.equal(r.code, 0, 'umount exits 0');
  t.equal(mountType(dir), null, 'the mount is gone');
  child.kill('SIGTERM');
  await ended;

  const notOurs = await kdbusfs('umount', dir);
  t.equal(notOurs.code, 1, 'umount of a plain directory fails');
  t.match(notOurs.stderr, 'is not a kdbusfs mount', 'with a clear message');
});

t.test('default mount point /sys/fs/kdbus, in a private mount namespace', async (t) => {
  // The namespace keeps the host's /sys/fs untouched while the overlay is made.
  const script = `
    node "$1" mount & pid=$!
    for i in $(seq 200); do [ -e /sys/fs/kdbus/control ] && break; sleep 0.05; done
    stat -c 'control %a' /sys/fs/kdbus/control
    ls /sys/fs | tr '\\n' ' '; echo
    kill -TERM $pid; wait $pid; echo "exit $?"
    grep -c ' /sys/fs/kdbus ' /proc/self/mounts`;
  const hostEntries = readdirSync('/sys/fs');
  const hostMounts = sysFsMounts();
  const r = await finished(spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli],
    { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'control 666', `/sys/fs/kdbus/control served (stderr: ${r.stderr.trim()})`);
  const entries = (lines[1] ?? '').trim().split(' ');
  t.ok(hostEntries.every((e) => entries.includes(e)), 'every /sys/fs entry is still there');
  t.equal(lines[2], 'exit 0', 'SIGTERM exits 0');
  t.equal(lines[3], '0', 'unmounted');
  t.same(sysFsMounts(), hostMounts, "the host's mounts under /sys/fs are unchanged");
  t.same(readdirSync('/sys/fs'), hostEntries, "the host's /sys/fs is unchanged");
});
