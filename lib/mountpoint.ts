// Where kdbusfs mounts. The kernel module mounted kdbusfs at /sys/fs/kdbus, and
// that stays the default. Without the module the directory does not exist, and
// sysfs refuses mkdir (EPERM), so as root we lay a tmpfs over /sys/fs
// (lib/sysfs-overlay.ts) that the server removes when it exits.
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { log } from './log.js';
import { keepSysfsMountable, makeSysfsOverlay, removeSysfsOverlay, SYS_FS, SYSFS_WITNESS, sysfsOverlaid } from './sysfs-overlay.js';

export const DEFAULT_MOUNTPOINT = '/sys/fs/kdbus';

/**
 * Returns the absolute directory to mount on, creating it if needed. Throws an
 * Error that says what to do instead when it cannot be made.
 */
export function prepareMountpoint(dir: string = DEFAULT_MOUNTPOINT): string {
  const path = resolve(dir);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory()) throw new Error(`${path} is not a directory`);
    if (path === DEFAULT_MOUNTPOINT && sysfsOverlaid(SYS_FS)) keepSysfsMountable(); // a killed server's overlay
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
    if (sysfsOverlaid(SYS_FS)) keepSysfsMountable();
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
    makeSysfsOverlay(SYS_FS, 'kdbus');
  } catch (e) {
    throw new Error(`cannot create ${DEFAULT_MOUNTPOINT} (${(e as Error).message}); ${hint}`);
  }
  log('mountpoint', `created ${DEFAULT_MOUNTPOINT} on a tmpfs over ${SYS_FS} (its old entries are bound back in place; ` +
    `a sysfs at ${SYSFS_WITNESS} keeps sysfs mountable in new user namespaces); both go when kdbusfs exits`);
}

/** Undoes what prepareMountpoint made for dir: the /sys/fs overlay of the default mount point. */
export function releaseMountpoint(dir: string): void {
  if (resolve(dir) === DEFAULT_MOUNTPOINT) removeSysfsOverlay(SYS_FS);
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
