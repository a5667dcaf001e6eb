// The kdbusfs command as a user runs it: help texts, `mount` serving in its own
// process, clean unmount on SIGTERM, recovery after kill -9, `umount`, and the
// default mount point (inside a private mount namespace only).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { waitFor } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/lib/cli.js');
const env = { ...process.env, KDBUSFS_QUIET: '1' };

interface Ran { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** A child process: its output so far, and how it ended. */
interface Proc { child: ChildProcess; out: Ran; ended: Promise<Ran> }

function start(command: string, args: string[]): Proc {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Ran = { code: null, signal: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => { out.stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out.stderr += d.toString(); });
  const ended = new Promise<Ran>((done) => child.on('close', (code, signal) => done({ ...out, code, signal })));
  return { child, out, ended };
}

/** Waits for p to exit; a hang fails the test (and kills p) instead of stalling the run. */
async function exitOf(p: Proc, seconds = 15): Promise<Ran> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((done) => { timer = setTimeout(() => done(null), seconds * 1000); });
  const r = await Promise.race([p.ended, late]);
  clearTimeout(timer);
  if (r) return r;
  p.child.kill('SIGKILL');
  throw new Error(`${p.child.spawnargs.join(' ')} did not exit within ${seconds} s; its stderr:\n${p.out.stderr}`);
}

function kdbusfs(...args: string[]): Promise<Ran> {
  return exitOf(start(process.execPath, [cli, ...args]));
}

/** The fstype mounted at dir, from the mount table (never touching dir itself). */
function mountType(dir: string): string | null {
  const line = readFileSync('/proc/self/mounts', 'utf8').split('\n').reverse()
    .find((l) => l.split(' ')[1] === dir);
  return line ? line.split(' ')[2]! : null;
}


function serves(dir: string): boolean {
  try {
    return readdirSync(dir).includes('control');
  } catch {
    return false;
  }
}

/** Starts `kdbusfs mount dir` and waits until it serves; a server left running is killed at teardown. */
async function mount(t: { teardown(fn: () => void): void }, dir: string): Promise<Proc> {
  const p = start(process.execPath, [cli, 'mount', dir]);
  t.teardown(() => { if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL'); });
  let exited = false;
  void p.ended.then(() => { exited = true; });
  // Served, not only mounted: a killed server's mount stays in the table (its
  // readdir fails ENOTCONN) until the new server replaces it.
  await waitFor(`${dir} is served`, () => exited || (mountType(dir) === 'fuse.kdbusfs' && serves(dir)), 30_000, 50);
  if (exited) throw new Error(`kdbusfs mount exited early:\n${p.out.stderr}`);
  return p;
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-cli-'));
  // Never recurse into a mount a failed test left behind.
  t.teardown(() => { if (mountType(dir) === null) rmSync(dir, { recursive: true, force: true }); });
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

t.test('mount --limit: a wrong NAME=VALUE is a usage error that says why', async (t) => {
  const dir = tempDir(t);
  const unknown = await kdbusfs('mount', dir, '--limit', 'nope=1');
  t.equal(unknown.code, 2, 'exits 2');
  t.match(unknown.stderr, /unknown limit nope \(known: user_queued_bytes, /, 'names the known limits');
  const malformed = await kdbusfs('mount', dir, '--limit', 'user_fds');
  t.equal(malformed.code, 2, 'exits 2');
  t.match(malformed.stderr, 'is not NAME=VALUE');
  t.equal(mountType(dir), null, 'nothing was mounted');
});

t.test('mount serves a tree and SIGTERM unmounts cleanly', async (t) => {
  const dir = tempDir(t);
  const server = await mount(t, dir);
  t.ok(readdirSync(dir).includes('control'), 'control is in the root');
  const st = statSync(join(dir, 'control'));
  t.equal(st.mode & 0o777, 0o666, 'control is mode 0666');
  server.child.kill('SIGTERM');
  const r = await exitOf(server);
  t.equal(r.code, 0, 'exits 0 on SIGTERM');
  t.equal(mountType(dir), null, 'nothing left mounted on the directory');
});

t.test('after kill -9 the next mount on the same directory works at once', async (t) => {
  const dir = tempDir(t);
  const first = await mount(t, dir);
  first.child.kill('SIGKILL');
  await exitOf(first);
  const second = await mount(t, dir);
  t.ok(readdirSync(dir).includes('control'), 'the new server answers');
  second.child.kill('SIGTERM');
  t.equal((await exitOf(second)).code, 0, 'and stops cleanly');
  t.equal(mountType(dir), null, 'nothing left mounted');
});

t.test('umount', async (t) => {
  const dir = tempDir(t);
  const server = await mount(t, dir);
  const r = await kdbusfs('umount', dir);
  t.equal(r.code, 0, 'umount exits 0');
  t.equal(mountType(dir), null, 'the mount is gone');
  t.equal((await exitOf(server)).code, 0, 'the server sees its session end and exits 0');

  const notOurs = await kdbusfs('umount', dir);
  t.equal(notOurs.code, 1, 'umount of a plain directory fails');
  t.match(notOurs.stderr, 'is not a kdbusfs mount', 'with a clear message');
});

t.test('default mount point /sys/fs/kdbus, in a private mount namespace', async (t) => {
  // The namespace keeps the host's /sys/fs untouched while the overlay is made.
  // A user namespace (with its own network namespace, which sysfs needs) may
  // mount sysfs only while some sysfs mount is fully visible (lib/sysfs-overlay.ts).
  const script = `
    sysfs_in_userns() { unshare -Urmn sh -c 'mount -t sysfs sysfs /mnt' 2>/dev/null && echo mountable || echo refused; }
    echo "before: $(sysfs_in_userns)"
    node "$1" mount & pid=$!
    for i in $(seq 1200); do [ -e /sys/fs/kdbus/control ] && break; sleep 0.05; done
    stat -c 'control %a' /sys/fs/kdbus/control
    ls /sys/fs | tr '\\n' ' '; echo
    echo "serving: $(sysfs_in_userns)"
    umount /run/kdbusfs/witness/sysfs
    echo "serving, witness removed: $(sysfs_in_userns)"
    kill -TERM $pid; wait $pid; echo "exit $?"
    grep -c ' /sys/fs/kdbus ' /proc/self/mounts
    grep -c ' /sys/fs tmpfs ' /proc/self/mounts
    [ -e /run/kdbusfs ] && echo "/run/kdbusfs left" || echo "/run/kdbusfs gone"
    echo "after: $(sysfs_in_userns)"`;
  const hostEntries = readdirSync('/sys/fs');
  const hostMounts = sysFsMounts();
  const r = await exitOf(start('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli]), 90);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'before: mountable', 'before: a new user namespace can mount sysfs', { stderr: r.stderr });
  t.equal(lines[1], 'control 666', `/sys/fs/kdbus/control served (stderr: ${r.stderr.trim()})`);
  const entries = (lines[2] ?? '').trim().split(' ');
  t.ok(hostEntries.every((e) => entries.includes(e)), 'every /sys/fs entry is still there');
  t.equal(lines[3], 'serving: mountable', 'while kdbusfs serves /sys/fs/kdbus, a new user namespace can mount sysfs');
  t.equal(lines[4], 'serving, witness removed: refused',
    'without the witness sysfs the overlay alone makes the kernel refuse it (what the witness is for)');
  t.equal(lines[5], 'exit 0', 'SIGTERM exits 0');
  t.equal(lines[6], '0', 'unmounted');
  t.equal(lines[7], '0', 'the tmpfs over /sys/fs is gone');
  t.equal(lines[8], '/run/kdbusfs gone', 'the witness directory is gone');
  t.equal(lines[9], 'after: mountable', 'after: a new user namespace can mount sysfs');
  t.same(sysFsMounts(), hostMounts, "the host's mounts under /sys/fs are unchanged");
  t.same(readdirSync('/sys/fs'), hostEntries, "the host's /sys/fs is unchanged");
});
