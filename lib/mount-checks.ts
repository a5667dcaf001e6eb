// What `kdbusfs mount` checks before it mounts, so that a user gets a reason
// and what to do instead of a bare errno: root, /dev/fuse, a mount point that
// is a real directory and not already some other file system's. And what it
// undoes when mounting fails: directories it created.
import { existsSync, rmdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { mountedType } from './mountpoint.js';

const FUSE_DEVICE = '/dev/fuse';
const DEVICE_HINT = 'load the fuse module (`modprobe fuse`); in a container, pass the device in ' +
  '(podman/docker --device /dev/fuse, systemd-nspawn --bind=/dev/fuse, or DeviceAllow=/dev/fuse rw in a unit)';

/** Root (euid 0, in its user namespace) and a /dev/fuse to open; throws why not. */
export function checkCanMount(euid = process.geteuid?.() ?? 0, device = FUSE_DEVICE): void {
  if (euid !== 0) {
    throw new Error('kdbusfs mount needs root (it opens /dev/fuse, calls mount(2) and reads every ' +
      "client's memory): run it as root, e.g. `sudo kdbusfs mount DIR`");
  }
  if (!existsSync(device)) throw new Error(`there is no ${device}: ${DEVICE_HINT}`);
}

/** The absolute mount point for DIR as given; an empty DIR is refused (it is not the current directory). */
export function mountDir(arg: string | undefined, fallback: string): string {
  if (arg === undefined) return fallback;
  if (arg.trim() === '') throw new Error('the mount point is empty: give a directory (kdbusfs mount DIR)');
  return resolve(arg);
}

/** Refuses a directory on which another file system is mounted: kdbusfs would hide it. */
export function checkNotOtherMount(dir: string, ours: string): void {
  const type = mountedType(dir);
  if (type !== null && type !== ours) {
    throw new Error(`${dir} is a mount point (${type}): kdbusfs would hide what is mounted there; ` +
      'give another directory, or unmount it first');
  }
}

/** The directories of path that do not exist yet, deepest first (what mkdir -p would make). */
export function missingDirs(path: string): string[] {
  const out: string[] = [];
  for (let p = resolve(path); !existsSync(p) && p !== dirname(p); p = dirname(p)) out.push(p);
  return out;
}

/** Removes the directories missingDirs named (deepest first), as far as they are empty. */
export function removeDirs(dirs: string[]): void {
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty, or already gone: leave it and what is above it
    }
  }
}

/**
 * The message of a failed mount as the user should read it: without the
 * native layer's "kdbusfs: " (the log line names kdbusfs already), and with
 * what to do when /dev/fuse cannot be opened.
 */
export function explainMountError(message: string): string {
  const m = message.replace(/^kdbusfs: /, '');
  // EPERM, ENOENT, ENXIO, EACCES, ENODEV: a device cgroup, no node, no driver
  if (/cannot open \/dev\/fuse: .*\(errno (1|2|6|13|19)\)/.test(m)) return `${m}: ${DEVICE_HINT}`;
  return m;
}
