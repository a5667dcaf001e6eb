// Where kdbusfs mounts. The kernel module mounted kdbusfs at /sys/fs/kdbus, and
// that stays the default. Without the module the directory does not exist, and
// sysfs refuses mkdir (EPERM), so as root we lay a tmpfs over /sys/fs that
// carries everything that was there (each entry bound back in place), plus an
// empty kdbus/. The tmpfs stays after kdbusfs exits, so later mounts reuse it.
import { execFileSync } from 'node:child_process';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync,
  rmdirSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { log, logError } from './log.js';

export const DEFAULT_MOUNTPOINT = '/sys/fs/kdbus';
const SYS_FS = '/sys/fs';

function run(cmd: string, ...args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${cmd} ${args.join(' ')} failed${stderr ? `: ${stderr}` : ''}`);
  }
}

/**
 * Returns the absolute directory to mount on, creating it if needed. Throws an
 * Error that says what to do instead when it cannot be made.
 */
export function prepareMountpoint(dir: string = DEFAULT_MOUNTPOINT): string {
  const path = resolve(dir);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory()) throw new Error(`${path} is not a directory`);
    return path;
  }
  if (path === DEFAULT_MOUNTPOINT) {
    makeSysFsKdbus();
  } else {
    mkdirSync(path, { recursive: true });
  }
  return path;
}

function makeSysFsKdbus(): void {
  try {
    mkdirSync(DEFAULT_MOUNTPOINT, { mode: 0o755 });
    return; // /sys/fs is already something writable (an earlier overlay)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'EROFS') throw e;
  }
  const hint = 'or give kdbusfs another directory (kdbusfs mount DIR)';
  if (process.geteuid?.() !== 0) {
    throw new Error(`${DEFAULT_MOUNTPOINT} does not exist and sysfs refuses to create it; ` +
      `making it needs root (a tmpfs over ${SYS_FS}): run as root, ${hint}`);
  }
  try {
    overlaySysFs();
    mkdirSync(DEFAULT_MOUNTPOINT, { mode: 0o755 });
  } catch (e) {
    throw new Error(`cannot create ${DEFAULT_MOUNTPOINT} (${(e as Error).message}); ${hint}`);
  }
  log('mountpoint', `created ${DEFAULT_MOUNTPOINT} on a tmpfs over ${SYS_FS} (its old entries are bound back in place)`);
}

/**
 * tmpfs over /sys/fs keeping its entries. The old tree is first bound to a
 * private stash (so it stays reachable once covered, and so detaching the stash
 * later propagates nowhere), then each entry is bound back onto the tmpfs.
 */
function overlaySysFs(): void {
  const stash = mkdtempSync(join(tmpdir(), 'kdbusfs-sysfs-'));
  let stashMounted = false;
  let overlayMounted = false;
  try {
    run('mount', '-t', 'tmpfs', '-o', 'mode=0700', 'kdbusfs-stash', stash);
    stashMounted = true;
    run('mount', '--make-private', stash);
    const old = join(stash, 'fs');
    mkdirSync(old);
    run('mount', '--rbind', SYS_FS, old);
    run('mount', '--make-rprivate', old);

    run('mount', '-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev,noexec', 'tmpfs', SYS_FS);
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
  } catch (e) {
    if (overlayMounted) cleanup(() => run('umount', '-l', SYS_FS));
    throw e;
  } finally {
    if (stashMounted) cleanup(() => run('umount', '-l', stash));
    cleanup(() => rmdirSync(stash));
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

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The filesystem type of the topmost mount at path ("fuse.kdbusfs"...), or null
 * if nothing is mounted there. Reads only /proc, never the path itself (which
 * may be a dead FUSE mount).
 */
export function mountedType(path: string): string | null {
  const full = resolve(path);
  let abs = full;
  if (full !== '/') {
    if (!existsSync(dirname(full))) return null; // nothing can be mounted below a missing directory
    abs = join(realpathSync(dirname(full)), basename(full));
  }
  let type: string | null = null;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    if (unescapeMountinfo(left.split(' ')[4] ?? '') === abs) type = right.split(' ')[0] ?? null;
  }
  return type; // later lines are mounted on top of earlier ones
}
