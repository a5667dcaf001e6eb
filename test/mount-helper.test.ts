// kdbusfs as mount(8) runs it: `mount -t fuse.kdbusfs kdbusfs DIR -o ...` and
// an fstab line (`mount -a -T FILE`) through bin/mount.fuse.kdbusfs installed
// as /sbin/mount.fuse.kdbusfs, and the command line libfuse's mount.fuse3
// would run (`kdbusfs SOURCE DIR -o OPTS,dev,suid`). Each returns once the
// mount serves, with the server detached (a session of its own); `umount DIR`
// ends the server cleanly; a server that cannot serve makes the command fail
// with the reason, nothing left running or mounted; -o options reach the
// server (log_file, log_level, no_passthrough); mount -f mounts nothing.
// Also: --version, and the watchdog named apart from the server in ps.
//
// The helper goes into /sbin only inside a private mount namespace (an
// overlay on /usr/sbin), so the host's /sbin is never written.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { cli, mountType, needRootAndFuse, root, until, type Tap } from './harness.js';

needRootAndFuse();

const run = promisify(execFile);
const helper = join(root, 'bin/mount.fuse.kdbusfs');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

function tempDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-mnt-'));
  t.teardown(async () => {
    if (mountType(join(dir, 'mnt'))) await run('umount', ['-l', join(dir, 'mnt')]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Processes whose command line contains every one of words (NUL-separated arguments), by pid. */
function processes(...words: string[]): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (words.every((w) => argv.includes(w))) out.set(Number(pid), argv);
  }
  return out;
}

async function gone(pids: number[], ms = 10_000): Promise<boolean> {
  return until(() => pids.every((p) => !existsSync(`/proc/${p}`)), ms, 50);
}

t.test('--version prints package.json\'s version', async (t) => {
  const r = await run(process.execPath, [cli, '--version']);
  t.equal(r.stdout, `kdbusfs ${pkg.version}\n`);
});

t.test('mount -t fuse.kdbusfs and an fstab line, through the helper in /sbin', async (t) => {
  const dir = tempDir(t);
  const mnt = join(dir, 'mnt');
  const log = join(dir, 'server.log');
  writeFileSync(join(dir, 'fstab'), `# a comment\nkdbusfs ${mnt} fuse.kdbusfs defaults,noauto,no_passthrough,log_file=${log},x-foo=1 0 0\n`);
  // In a private mount namespace: the helper put into /sbin, mount by type,
  // what the server looks like, umount; the same by fstab.
  const script = `
    set -u
    w=$1; helper=$2; mnt=$w/mnt
    mkdir -p $w/up $w/work $mnt
    mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir=$w/up,workdir=$w/work /usr/sbin || exit 9
    ln -s "$helper" /usr/sbin/mount.fuse.kdbusfs
    server() { pgrep -f -- "cli.js mount $mnt" | tr '\\n' ' '; }
    watchdog() { for p in $(pgrep -x kdbusfs-watch); do tr '\\0' ' ' </proc/$p/cmdline; echo; done | grep -c "^kdbusfs-watchdog $mnt"; }

    mount -t fuse.kdbusfs kdbusfs $mnt -o log_file=$w/type.log,log_level=debug; echo "type-rc $?"
    echo "type-fstype $(grep " $mnt " /proc/self/mounts | cut -d' ' -f3)"
    echo "type-control $(ls $mnt)"
    pid=$(server); echo "type-server $pid"
    echo "type-sid $(ps -o sid= -p $pid | tr -d ' ') $(ps -o sid= -p $$ | tr -d ' ')"
    echo "type-watchdog $(watchdog)"
    umount $mnt; echo "type-umount-rc $?"
    for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -0 $pid 2>/dev/null && echo "type-after still-running" || echo "type-after gone"

    mount -f -t fuse.kdbusfs kdbusfs $mnt; echo "fake-rc $? $(grep -c " $mnt " /proc/self/mounts)"

    mount -a -T $w/fstab; echo "fstab-noauto $(grep -c " $mnt " /proc/self/mounts)"
    mount -T $w/fstab $mnt; echo "fstab-rc $?"
    echo "fstab-control $(ls $mnt)"
    pid=$(server)
    umount $mnt; echo "fstab-umount-rc $?"
    for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -0 $pid 2>/dev/null && echo "fstab-after still-running" || echo "fstab-after gone"`;
  const r = await run('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', dir, helper],
    { timeout: 60_000 }).catch((e: { stdout: string; stderr: string }) => e);
  const got = new Map(r.stdout.split('\n').map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)]));
  const ctx = { stdout: r.stdout, stderr: r.stderr };
  t.equal(got.get('type-rc'), '0', 'mount -t fuse.kdbusfs exits 0', ctx);
  t.equal(got.get('type-fstype'), 'fuse.kdbusfs', 'and the mount is there when it returns');
  t.equal(got.get('type-control'), 'control', 'served at once');
  t.match(got.get('type-server') ?? '', /^\d+ $/, 'one server process');
  const [sid, shellSid] = (got.get('type-sid') ?? '').split(' ');
  t.not(sid, shellSid, 'detached: in a session of its own');
  t.equal(got.get('type-watchdog'), '1', 'its watchdog shows as "kdbusfs-watchdog DIR" in ps');
  t.equal(got.get('type-umount-rc'), '0', 'umount exits 0');
  t.equal(got.get('type-after'), 'gone', 'and the server exits');
  const typeLog = readFileSync(join(dir, 'type.log'), 'utf8');
  t.match(typeLog, `serving kdbus on ${mnt}`, '-o log_file: the server logged there');
  t.match(typeLog, `${mnt} was unmounted: exiting`, 'it saw the unmount and exited');
  t.equal(got.get('fake-rc'), '0 0', 'mount -f exits 0 and mounts nothing');
  t.equal(got.get('fstab-noauto'), '0', 'mount -a skips a noauto line');
  t.equal(got.get('fstab-rc'), '0', 'mount by the fstab line exits 0');
  t.equal(got.get('fstab-control'), 'control', 'served');
  t.equal(got.get('fstab-umount-rc'), '0', 'umount exits 0');
  t.equal(got.get('fstab-after'), 'gone', 'and the server exits');
  const fstabLog = readFileSync(log, 'utf8');
  t.match(fstabLog, 'page-cache pools', '-o no_passthrough from the fstab line reached the server');
  t.notMatch(typeLog + fstabLog, /error/, 'no error logged');
});

t.test('the command line of mount.fuse3: kdbusfs SOURCE DIR -o OPTS,dev,suid', async (t) => {
  const dir = tempDir(t);
  const mnt = join(dir, 'mnt');
  const r = await run(process.execPath, [cli, 'kdbusfs', mnt, '-o', 'rw,nodev,nosuid,log_level=warning,dev,suid'], { timeout: 30_000 });
  t.equal(mountType(mnt), 'fuse.kdbusfs', 'mounted when the command returns (exit 0)');
  t.equal(r.stderr, '', 'nothing said at log level warning');
  const servers = [...processes('mount', mnt).keys()];
  t.equal(servers.length, 1, 'one server, running on');
  await run('umount', [mnt]);
  t.ok(await gone(servers), 'umount ends it');
  t.equal(mountType(mnt), null, 'nothing left mounted');
});

t.test('a detached server that cannot serve: the command says why, exits 1, leaves nothing', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'file');
  writeFileSync(file, '');
  const r = await run(process.execPath, [cli, 'kdbusfs', file, '-o', 'rw'], { timeout: 30_000 })
    .then(() => null, (e: { code: number; stderr: string }) => e);
  t.equal(r?.code, 1, 'exit 1');
  t.match(r?.stderr, `${file} is not a directory`, 'the server\'s reason, reported by the command');
  t.equal(processes('mount', file).size, 0, 'no server left running');
  t.equal(mountType(file), null, 'nothing mounted');

  const bad = await run(process.execPath, [cli, 'kdbusfs', join(dir, 'mnt'), '-o', 'frobnicate=1'], { timeout: 30_000 })
    .then(() => null, (e: { code: number; stderr: string }) => e);
  t.equal(bad?.code, 2, 'an unknown -o option is a usage error');
  t.match(bad?.stderr, "Unknown option '--frobnicate", 'named');
  t.notOk(existsSync(join(dir, 'mnt')), 'and no directory was made for it');

  const ro = await run(process.execPath, [cli, 'kdbusfs', join(dir, 'mnt'), '-o', 'ro'], { timeout: 30_000 })
    .then(() => null, (e: { code: number; stderr: string }) => e);
  t.equal(ro?.code, 2, '-o ro is refused');
  t.match(ro?.stderr, 'cannot be mounted read-only');
});
