// Where kdbusfs keeps what it builds (the selftest binary): outside the package
// directory, which a global install may not let it write.
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/** $KDBUSFS_CACHE_DIR, else $XDG_CACHE_HOME/kdbusfs, else ~/.cache/kdbusfs. */
export function cacheDir(): string {
  const own = process.env.KDBUSFS_CACHE_DIR;
  if (own) return own;
  const xdg = process.env.XDG_CACHE_HOME;
  // The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored.
  if (xdg && isAbsolute(xdg)) return join(xdg, 'kdbusfs');
  return join(homedir(), '.cache', 'kdbusfs');
}
