// Where the kdbus v3 kernel tree is: only `kdbusfs selftest` needs it (the
// upstream selftests and the uapi header they include); kdbusfs itself and its
// own test clients build from include/kdbus-abi.h.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const KDBUS_TREE_ENV = 'KDBUSFS_KDBUS_TREE';
const SELFTESTS = 'tools/testing/selftests/kdbus';
const UAPI = 'include/uapi';

/** How to get a tree, for every message that misses one. */
export const KDBUS_TREE_HINT = `a kdbus v3 kernel tree (the January 2015 patch series applied, holding ` +
  `${SELFTESTS} and ${UAPI}/linux/kdbus.h): pass --kdbus-tree DIR, set ${KDBUS_TREE_ENV}=DIR, ` +
  `or put it at ../shared/kdbus beside the kdbusfs checkout`;

export interface KdbusTree {
  root: string;
  /** tools/testing/selftests/kdbus */
  selftests: string;
  /** include/uapi (holding linux/kdbus.h) */
  uapi: string;
}

/** The package directory: lib/ when run from source, dist/lib/ when compiled. */
function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    const dir = resolve(here, up);
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  return resolve(here, '..');
}

/** The tree named (option, then environment) or the default, whether or not it exists. */
export function kdbusTreePath(option?: string): { path: string; from: string } {
  if (option) return { path: resolve(option), from: '--kdbus-tree' };
  const env = process.env[KDBUS_TREE_ENV];
  if (env) return { path: resolve(env), from: KDBUS_TREE_ENV };
  return { path: resolve(packageRoot(), '../shared/kdbus'), from: 'the default, ../shared/kdbus beside the checkout' };
}

/** The tree if it holds the selftests and the uapi header, else why not (a sentence). */
export function findKdbusTree(option?: string): KdbusTree | string {
  const { path, from } = kdbusTreePath(option);
  const tree = { root: path, selftests: join(path, SELFTESTS), uapi: join(path, UAPI) };
  if (!existsSync(join(tree.selftests, 'kdbus-test.c'))) {
    return `no kdbus selftests at ${tree.selftests} (tree from ${from}); they need ${KDBUS_TREE_HINT}`;
  }
  if (!existsSync(join(tree.uapi, 'linux/kdbus.h'))) {
    return `no ${UAPI}/linux/kdbus.h in ${path} (tree from ${from}); the selftests need ${KDBUS_TREE_HINT}`;
  }
  return tree;
}
