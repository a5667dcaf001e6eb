// /sys/fs/kdbus (and on request /sys/module/kdbus/parameters) without the kdbus
// module. sysfs refuses mkdir, so as root kdbusfs lays a tmpfs over /sys/fs
// (/sys/module) that carries everything that was there (each entry bound back
// in place) plus the new directory. Entries sysfs creates later (a filesystem
// or module loaded afterwards) stay hidden under the tmpfs until it goes.
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
export const SYS_MODULE = '/sys/module';
/** The source name of a tmpfs over a sysfs directory: how kdbusfs knows the overlay is its own. */
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

/** Whether dir (SYS_FS, SYS_MODULE) is kdbusfs's overlay (made by this server or one that was killed). */
export function sysfsOverlaid(dir: string): boolean {
  return mountSource(dir) === OVERLAY_SOURCE;
}

/** The tmpfs over dir (SYS_FS, SYS_MODULE) with its old entries and the directory add (relative), and the witness sysfs. */
export function makeSysfsOverlay(dir: string, add: string): void {
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
    run('mount', '--rbind', dir, old);
    run('mount', '--make-rprivate', old);

    run('mount', '-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev,noexec', OVERLAY_SOURCE, dir);
    overlayMounted = true;
    for (const entry of readdirSync(old, { withFileTypes: true })) {
      const from = join(old, entry.name);
      const to = join(dir, entry.name);
      if (entry.isSymbolicLink()) {
        symlinkSync(readlinkSync(from), to);
        continue;
      }
      if (entry.isDirectory()) mkdirSync(to, { mode: statSync(from).mode & 0o7777 });
      else writeFileSync(to, '', { mode: statSync(from).mode & 0o7777 });
      run('mount', '--rbind', from, to);
    }
    mkdirSync(join(dir, add), { mode: 0o755, recursive: true });
    keepSysfsMountable();
  } catch (e) {
    if (overlayMounted) cleanup(() => run('umount', '-l', dir));
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

/**
 * Detaches the overlay of dir (and whatever is mounted in it); once no overlay
 * is left, the witness too, and removes its directory.
 */
export function removeSysfsOverlay(dir: string): void {
  if (sysfsOverlaid(dir)) cleanup(() => run('umount', '-l', dir));
  if (sysfsOverlaid(SYS_FS) || sysfsOverlaid(SYS_MODULE)) return;
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
