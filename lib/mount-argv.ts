// The command lines kdbusfs gets from mount(8), and `-o` option lists.
//
// `mount -t fuse.kdbusfs kdbusfs DIR -o OPTS` (or an fstab line of type
// fuse.kdbusfs) makes mount(8) run its helper /sbin/mount.fuse.kdbusfs as
//   mount.fuse.kdbusfs SOURCE DIR [-s] [-f] [-n] [-v] [-r|-w] [-N NS] [-o OPTS] [-t TYPE]
// and libfuse's mount.fuse3, installed as that helper instead, runs
//   kdbusfs SOURCE DIR -o OPTS,dev,suid
// through /bin/sh. Both become `kdbusfs mount --detach DIR -o OPTS`: the
// server serves in the background once the mount is live, as FUSE file
// systems started by mount do. SOURCE is a label ("kdbusfs"), not read.
//
// Each `-o` entry NAME[=VALUE] is the long option --NAME[=VALUE] ('_' and
// '-' alike), so every mount option has its `-o` form; the options mount(8)
// itself handles (and its fstab-only ones) are dropped.

/** mount(8)'s own options and fstab markers: nothing for kdbusfs to do with them. */
const MOUNT_OWN = new Set([
  'defaults', 'rw', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', '_netdev', 'nofail',
  'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'async', 'sync', 'atime', 'noatime', 'relatime',
  'strictatime', 'lazytime', 'nolazytime', 'diratime', 'nodiratime', 'silent', 'loud',
]);

export class MountArgvError extends Error {}

/** `-o` lists (as `-o LIST` or `-oLIST`) turned into long options; every other argument kept. */
export function expandMountOptions(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    let list: string | undefined;
    if (a === '-o') {
      list = args[++i];
      if (list === undefined) throw new MountArgvError('-o needs a list of options');
    } else if (a.startsWith('-o') && !a.startsWith('--')) {
      list = a.slice(2);
    } else {
      out.push(a);
      continue;
    }
    for (const entry of list.split(',')) {
      const eq = entry.indexOf('=');
      const name = eq < 0 ? entry : entry.slice(0, eq);
      if (name === '' || MOUNT_OWN.has(name) || name.startsWith('x-') || name === 'comment') continue;
      if (name === 'ro') throw new MountArgvError('kdbusfs cannot be mounted read-only (-o ro)');
      const long = `--${name.replace(/_/g, '-')}`;
      out.push(eq < 0 ? long : `${long}=${entry.slice(eq + 1)}`);
    }
  }
  return out;
}

export interface HelperCall {
  /** `kdbusfs mount` arguments */
  args: string[];
  /** mount -f: check everything, mount nothing */
  fake: boolean;
}

/**
 * A mount helper's arguments (SOURCE DIR and mount(8)'s flags, see above)
 * as `kdbusfs mount` arguments.
 */
export function fromMountHelper(argv: string[]): HelperCall {
  const positional: string[] = [];
  const rest: string[] = [];
  let fake = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      const list = argv[++i];
      if (list === undefined) throw new MountArgvError('-o needs a list of options');
      rest.push('-o', list);
    } else if (a === '-t') {
      const type = argv[++i];
      if (type !== undefined && type !== 'fuse.kdbusfs' && type !== 'kdbusfs') {
        throw new MountArgvError(`this helper mounts fuse.kdbusfs, not ${type}`);
      }
    } else if (a === '-N' || a.startsWith('--namespace')) {
      throw new MountArgvError('mount --namespace is not supported: run kdbusfs inside that namespace');
    } else if (/^-[sfnvrw]+$/.test(a)) {
      if (a.includes('f')) fake = true;
      if (a.includes('r')) throw new MountArgvError('kdbusfs cannot be mounted read-only (-r)');
      // -s (sloppy), -n (no mtab), -v (verbose), -w (read-write): nothing to do
    } else if (a.startsWith('-')) {
      throw new MountArgvError(`unknown mount helper option ${a}`);
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) {
    throw new MountArgvError(`a mount helper takes SOURCE and DIR (got ${positional.length} arguments: ${positional.join(' ')})`);
  }
  return { args: ['--detach', positional[1]!, ...rest], fake };
}
