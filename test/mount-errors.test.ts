// `kdbusfs mount` failing in ways a user can act on: each says why and what
// to do, exits 1, prints no doubled "error: kdbusfs:" prefix, and leaves
// nothing behind (no mount, no directory it created). Not root; no /dev/fuse
// (a private mount namespace with a /dev of its own); a /dev/fuse that is not
// FUSE's (mount(2) then fails after the directories were made); an empty
// mount point (which must not become the current directory); a directory
// another file system is mounted on. The hint for an unopenable /dev/fuse is
// checked in process.
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { explainMountError } from '../lib/mount-checks.js';
import { cli, mountType, needRootAndFuse, root, type Tap } from './harness.js';

needRootAndFuse();

const execAsync = promisify(execFile);

interface Ran { code: number; stdout: string; stderr: string }

async function ran(command: string, args: string[], cwd?: string): Promise<Ran> {
  const env = { ...process.env, KDBUSFS_QUIET: '1' };
  return execAsync(command, args, { timeout: 30_000, env, cwd }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }));
}

function tempDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-err-'));
  t.teardown(() => { if (!mountType(dir)) rmSync(dir, { recursive: true, force: true }); });
  return dir;
}

function plainError(t: Tap, r: Ran, what: RegExp | string): void {
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, what, 'says why', { stderr: r.stderr });
  t.notMatch(r.stderr, /error: kdbusfs:/, 'no doubled prefix');
  // (tap's process-info hook, which it injects into every child node, may add its own complaints as another uid)
  t.equal(r.stderr.split('\n').filter((l) => l.includes('kdbusfs')).length, 1, 'in one line', { stderr: r.stderr });
}

t.test('not root: says it needs root, makes no directory', async (t) => {
  const dir = tempDir(t);
  const target = join(dir, 'a', 'mnt');
  // a copy of the CLI that uid can read, run without tap's NODE_OPTIONS (both may be out of its reach in a 0700 clone)
  const pkg = join(dir, 'pkg');
  cpSync(join(root, 'dist', 'lib'), join(pkg, 'dist', 'lib'), { recursive: true });
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  chmodSync(dir, 0o755);
  const r = await ran('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-u', 'NODE_OPTIONS',
    process.execPath, join(pkg, 'dist', 'lib', 'cli.js'), 'mount', target]);
  plainError(t, r, /kdbusfs mount needs root .*run it as root/);
  t.notOk(existsSync(join(dir, 'a')), 'nothing created');
});

t.test('no /dev/fuse: says to load the module or pass the device into the container', async (t) => {
  const dir = tempDir(t);
  const script = `
    mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/urandom c 1 9 || exit 9
    KDBUSFS_QUIET=1 "$1" "$2" mount "$3"; echo "rc $?" >&2
    [ -e "$3" ] && echo "left $3" >&2; true`;
  const r = await ran('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh',
    process.execPath, cli, join(dir, 'mnt')]);
  const lines = r.stderr.trim().split('\n');
  t.match(lines[0], /there is no \/dev\/fuse: load the fuse module .*in a container, pass the device in/, 'says why and what to do',
    { stderr: r.stderr });
  t.equal(lines[1], 'rc 1', 'exit 1');
  t.equal(lines.length, 2, 'no directory left');
});

t.test('mounting fails after directories were made: they are removed again', async (t) => {
  const dir = tempDir(t);
  // /dev/fuse is /dev/null here: it opens, and mount(2) refuses it (EINVAL).
  const script = `
    mount --bind /dev/null /dev/fuse || exit 9
    KDBUSFS_QUIET=1 "$1" "$2" mount "$3"; echo "rc $?" >&2
    ls -A "$4" | sed 's/^/left /' >&2`;
  const r = await ran('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh',
    process.execPath, cli, join(dir, 'a', 'b', 'mnt'), dir]);
  const lines = r.stderr.trim().split('\n');
  t.match(lines[0], /kdbusfs\[cli\] error: mounting fuse\.kdbusfs on .*\/a\/b\/mnt failed: Invalid argument/, 'says why',
    { stderr: r.stderr });
  t.notMatch(r.stderr, /error: kdbusfs:/, 'no doubled prefix');
  t.equal(lines[1], 'rc 1', 'exit 1');
  t.equal(lines.length, 2, 'a/b/mnt, made for the mount, removed (nothing left in the parent)');
});

t.test("an empty mount point is refused, not taken for the current directory", async (t) => {
  const dir = tempDir(t);
  const r = await ran(process.execPath, [cli, 'mount', ''], dir);
  plainError(t, r, 'the mount point is empty');
  t.equal(mountType(dir), null, 'nothing mounted on the current directory');
});

t.test('a directory another file system is mounted on is refused', async (t) => {
  const dir = tempDir(t);
  await execAsync('mount', ['-t', 'tmpfs', 'kdbusfs-test', dir]);
  t.teardown(() => execAsync('umount', [dir]).catch(() => undefined));
  const r = await ran(process.execPath, [cli, 'mount', dir]);
  plainError(t, r, `${dir} is a mount point (tmpfs): kdbusfs would hide what is mounted there`);
  t.equal(mountType(dir), 'tmpfs', 'the tmpfs is still on top');
});

t.test('an unopenable /dev/fuse gets the hint, without the native prefix', async (t) => {
  for (const [e, text] of [[1, 'Operation not permitted'], [13, 'Permission denied'], [19, 'No such device']] as const) {
    const m = explainMountError(`kdbusfs: cannot open /dev/fuse: ${text} (errno ${e})`);
    t.match(m, new RegExp(`^cannot open /dev/fuse: ${text} \\(errno ${e}\\): load the fuse module`), `errno ${e}`);
  }
  t.equal(explainMountError('kdbusfs: mounting fuse.kdbusfs on /x failed: Invalid argument (errno 22)'),
    'mounting fuse.kdbusfs on /x failed: Invalid argument (errno 22)', 'other errors: only the prefix goes');
});
