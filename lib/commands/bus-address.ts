// Where a bus is, as busctl finds it: a root (the kdbus domain directory)
// from --root, else $KDBUSFS_ROOT, else /sys/fs/kdbus; a bus given by name
// (`0-system`, looked up as ROOT/NAME/bus) or by path (a bus directory, its
// `bus` file or a custom endpoint file).
import { statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export const DEFAULT_ROOT = '/sys/fs/kdbus';
export const ROOT_ENV = 'KDBUSFS_ROOT';

export const ROOT_OPTION = { root: { type: 'string' } } as const;

/** The domain root: the --root argument, then $KDBUSFS_ROOT, then /sys/fs/kdbus. */
export function findRoot(argument: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = argument ?? (env[ROOT_ENV] || undefined) ?? DEFAULT_ROOT;
  return resolve(chosen);
}

export interface BusAddress {
  /** the bus's name (its directory's name) */
  name: string;
  /** the bus's directory */
  dir: string;
  /** the endpoint file to connect to: the bus's `bus` file or a custom endpoint */
  endpoint: string;
}

/** A bus named or given by path: its name, directory and endpoint file. */
export function busAddress(bus: string, root: string): BusAddress {
  if (!bus.includes('/')) {
    const dir = join(root, bus);
    return { name: bus, dir, endpoint: join(dir, 'bus') };
  }
  const path = resolve(bus);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    // not there: the connect that follows says so
  }
  if (isDir) return { name: basename(path), dir: path, endpoint: join(path, 'bus') };
  return { name: basename(dirname(path)), dir: dirname(path), endpoint: path };
}
