// /sys/fs/kdbus without the kdbus module. sysfs refuses mkdir, so as root
// kdbusfs lays a tmpfs over /sys/fs that carries everything that was there
// (each entry bound back in place) plus an empty kdbus/.
//
// That mount alone breaks every user namespace created while it exists: the
// kernel lets a user namespace mount sysfs only if some sysfs mount of its
// mount namespace is fully visible, i.e. no locked mount covers a non-empty
// directory of it (fs/namespace.c, mnt_already_visible), and the tmpfs covers
// /sys/fs. Measured here: `unshare -Urmn mount -t sysfs sysfs /mnt` fails with
// EPERM under the overlay and works again once a second, uncovered sysfs is
// mounted anywhere in the namespace, read-write (a read-only one makes
// read-write mounts fail). So the overlay comes with such a witness mount at
// /run/kdbusfs/witness/sysfs (in a 0700 directory), and both go when the server exits.
import { execFileSync } from 'node:child_process';
import {
  chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, statSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logError } from './log.js';

export const SYS_FS = '/sys/fs';
/** The source name of the tmpfs over /sys/fs: how kdbusfs knows the overlay is its own. */
const OVERLAY_SOURCE = 'kdbusfs-sysfs';
/** kdbusfs's directory in /run (lib/cli.ts serves the module parameters there too). */
export const RUN_DIR = '/run/kdbusfs';
const WITNESS_PARENT = join(RUN_DIR, 'witness');
export const SYSFS_WITNESS = join(WITNESS_PARENT, 'sysfs');
const WITNESS_SOURCE = 'kdbusfs-sysfs-witness';

function run(cmd: string, ...args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${cmd} ${args.join(' ')} failed${stderr ? `: ${stderr}` : ''}`);
  }
}

/** A failed cleanup step is reported but must not hide the error that caused it. */
function cleanup(step: () => void): void {
  try {
    step();
  } catch (e) {
    logError('mountpoint', (e as Error).message);
  }
}

/** The source of the topmost mount exactly at path, or null (mountinfo: "... - fstype source super"). */
function mountSource(path: string): string | null {
  let source: string | null = null;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (left?.split(' ')[4] === path && right) source = right.split(' ')[1] ?? null;
  }
  return source;
}

/** Whether /sys/fs is kdbusfs's overlay (made by this server or one that was killed). */
export function sysFsOverlaid(): boolean {
  return mountSource(SYS_FS) === OVERLAY_SOURCE;
}

/** The tmpfs over /sys/fs with its old entries and kdbus/, and the witness sysfs. */
export function makeSysFsOverlay(): void {
  const stash = mkdtempSync(join(tmpdir(), 'kdbusfs-sysfs-'));
  let stashMounted = false;
  let overlayMounted = false;
  try {
    // The old tree is first bound to a private stash (so it stays reachable once
    // covered, and so detaching the stash later propagates nowhere).
    run('mount', '-t', 'tmpfs', '-o', 'mode=0700', 'kdbusfs-stash', stash);
    stashMounted = true;
    run('mount', '--make-private', stash);
    const old = join(stash, 'fs');
    mkdirSync(old);
    run('mount', '--rbind', SYS_FS, old);
    run('mount', '--make-rprivate', old);

    run('mount', '-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev,noexec', OVERLAY_SOURCE, SYS_FS);
    overlayMounted = true;
    for (const entry of readdirSync(old, { withFileTypes: true })) {
      const from = join(old, entry.name);
      const to = join(SYS_FS, entry.name);
      if (entry.isSymbolicLink()) {
        symlinkSync(readlinkSync(from), to);
        continue;
      }
      if (entry.isDirectory()) mkdirSync(to, { mode: statSync(from).mode & 0o7777 });
      else writeFileSync(to, '', { mode: statSync(from).mode & 0o7777 });
      run('mount', '--rbind', from, to);
    }
    mkdirSync(join(SYS_FS, 'kdbus'), { mode: 0o755 });
    keepSysfsMountable();
  } catch (e) {
    if (overlayMounted) cleanup(() => run('umount', '-l', SYS_FS));
    throw e;
  } finally {
    if (stashMounted) cleanup(() => run('umount', '-l', stash));
    cleanup(() => rmdirSync(stash));
  }
}

/** Mounts the witness sysfs unless it is there (a killed server leaves it). */
export function keepSysfsMountable(): void {
  if (mountSource(SYSFS_WITNESS) === WITNESS_SOURCE) return;
  mkdirSync(SYSFS_WITNESS, { recursive: true });
  chmodSync(WITNESS_PARENT, 0o700);
  // read-write and relatime like a fresh mount: the kernel compares those flags too
  run('mount', '-t', 'sysfs', '-o', 'rw,nosuid,nodev,noexec,relatime', WITNESS_SOURCE, SYSFS_WITNESS);
}

/** Detaches the overlay (and whatever is mounted in it) and the witness, and removes its directory. */
export function removeSysFsOverlay(): void {
  if (sysFsOverlaid()) cleanup(() => run('umount', '-l', SYS_FS));
  if (mountSource(SYSFS_WITNESS) === WITNESS_SOURCE) cleanup(() => run('umount', '-l', SYSFS_WITNESS));
  // RUN_DIR goes too once nothing else is in it.
  for (const dir of [SYSFS_WITNESS, WITNESS_PARENT, RUN_DIR]) {
    try {
      rmdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY') break;
      if (code !== 'ENOENT') logError('mountpoint', `removing ${dir}: ${(e as Error).message}`);
    }
  }
}
