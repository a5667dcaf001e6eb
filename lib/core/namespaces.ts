// Translation across namespaces, as the kernel does it when metadata is
// exported at RECV time: kuids and kgids into a receiver's user namespace
// (from_kuid, make_kuid), global pid numbers into its pid namespace
// (pid_vnr, find_vpid), and the comparison of fs roots (path_equal) that
// decides whether a path means the same to the receiver. The server runs in
// the initial namespaces, so what /proc shows it is the kernel's own view.
import { readdirSync, statSync } from 'node:fs';
import { nsId, procIdMap, procLink, procNumber, procStatus, type IdMap } from './proc.js';

/** (uid_t)-1: INVALID_UID / INVALID_GID. */
export const INVALID_ID = 0xffff_ffff;

// Host constants, read once.
let overflowIds: { uid: number; gid: number } | undefined;
export function overflow(): { uid: number; gid: number } {
  return (overflowIds ??= {
    uid: procNumber('/proc/sys/kernel/overflowuid', 65534),
    gid: procNumber('/proc/sys/kernel/overflowgid', 65534),
  });
}

/**
 * An fs root's identity: its path as the server sees it, its device and
 * inode, and its mount namespace (path_equal() compares the mount too, and a
 * new mount namespace has copies of every mount).
 */
export interface RootId {
  path: Buffer;
  dev: number;
  ino: number;
  mntNs: string | null;
}

export function rootId(tid: number | 'self'): RootId | null {
  const path = procLink(`/proc/${tid}/root`);
  if (path === null) return null;
  try {
    const st = statSync(`/proc/${tid}/root`);
    return { path, dev: st.dev, ino: st.ino, mntNs: nsId(tid, 'mnt') };
  } catch {
    return null;
  }
}

export function sameRoot(a: RootId, b: RootId): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.mntNs === b.mntNs && a.path.equals(b.path);
}

/** The server's own namespaces: the initial ones. */
interface ServerNs {
  userNs: string | null;
  pidNs: string | null;
  root: RootId | null;
}
let serverNsCache: ServerNs | undefined;
export function serverNs(): ServerNs {
  return (serverNsCache ??= { userNs: nsId('self', 'user'), pidNs: nsId('self', 'pid'), root: rootId('self') });
}

// ---------------------------------------------------------------------------
// pids across pid namespaces

/**
 * A struct pid as far as userspace can see it: the pid number at each level
 * of pid namespace nesting (numbers[0] is the global pid, the server's view)
 * and the identity of the namespace at each level (null where unknown). An
 * empty `numbers` is the NULL pid (exported as 0).
 */
export interface PidRef {
  numbers: number[];
  nsIds: (string | null)[];
}

export const NULL_PID: PidRef = { numbers: [], nsIds: [] };

/**
 * The identities of the pid namespaces at levels 0..level of task tid. Level 0
 * is the initial namespace (the server's), the last one is the task's own;
 * the ones between are found by walking up the parent chain, since a parent
 * always lives in its child's pid namespace or in an ancestor of it.
 */
export function pidNsLadder(tid: number, level: number, ppid: number): (string | null)[] {
  const ids: (string | null)[] = new Array<string | null>(level + 1).fill(null);
  ids[0] = serverNs().pidNs;
  if (level === 0) return ids;
  ids[level] = nsId(tid, 'pid');
  let missing = level - 1;
  let p = ppid;
  for (let steps = 0; missing > 0 && p > 0 && steps < 256; steps++) {
    const st = procStatus(p);
    if (st === null) break;
    const lp = (st.numbers('NStgid') ?? [p]).length - 1;
    if (lp <= 0) break;
    if (lp < level && ids[lp] === null) {
      ids[lp] = nsId(p, 'pid');
      if (ids[lp] !== null) missing--;
    }
    p = st.number('PPid');
  }
  return ids;
}

/** pid_vnr(): the number of `ref` in pid namespace `ns` (0 if not visible there). */
export function pidIn(ref: PidRef, ns: string | null): number {
  if (ref.numbers.length === 0) return 0;
  const server = serverNs().pidNs;
  if (ns === null || ns === server) return ref.numbers[0];
  for (let lvl = 1; lvl < ref.numbers.length; lvl++) {
    if (ref.nsIds[lvl] === ns) return ref.numbers[lvl];
  }
  return 0;
}

/** A task by its global pid, as a PidRef (for faked PIDS), or null if there is none. */
function pidRefOfGlobal(g: number): PidRef | null {
  const st = procStatus(g);
  if (st === null) return null;
  const numbers = st.numbers('NSpid') ?? [g];
  const ppid = st.number('PPid');
  return { numbers, nsIds: pidNsLadder(g, numbers.length - 1, ppid) };
}

/**
 * find_vpid(n) in the pid namespace `ns` at nesting level `level`: the global
 * pid of the task numbered n there, or null. Walks /proc (processes, then
 * their threads): only faked PIDS from a nested pid namespace come here.
 */
function findGlobalPid(ns: string, level: number, n: number): number | null {
  let procs: string[];
  try {
    procs = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  const matches = (tidPath: string, g: number): boolean => {
    const st = procStatus({ path: `${tidPath}/status` });
    if (st === null) return false;
    const nums = st.numbers('NSpid');
    return nums !== null && nums.length > level && nums[level] === n && nsId(g, 'pid') === ns;
  };
  for (const e of procs) if (matches(`/proc/${e}`, Number(e))) return Number(e);
  for (const e of procs) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${e}/task`);
    } catch {
      continue;
    }
    for (const t of tids) if (t !== e && matches(`/proc/${e}/task/${t}`, Number(t))) return Number(t);
  }
  return null;
}

// ---------------------------------------------------------------------------
// uid/gid maps

/**
 * An id through `map` (null: the initial namespace, the identity): inward
 * from a kuid to the id inside, or outward from an id inside to its kuid;
 * -1 if the map has no line for it. INVALID stays unmapped.
 */
function throughMap(map: IdMap | null, id: number, outward: boolean): number {
  if (id === INVALID_ID) return -1;
  if (map === null) return id;
  for (const [inside, outside, count] of map) {
    const from = outward ? inside : outside;
    if (id >= from && id - from < count) return (outward ? outside : inside) + (id - from);
  }
  return -1;
}

/** from_kuid(): the id of kuid k inside a namespace with `map`, or -1 if unmapped. */
export function fromKid(map: IdMap | null, k: number): number {
  return throughMap(map, k, false);
}

/** make_kuid(): the kuid of id `id` inside a namespace with `map`, or -1 if it has none. */
export function makeKid(map: IdMap | null, id: number): number {
  return throughMap(map, id, true);
}

// ---------------------------------------------------------------------------
// The view of a task: the namespaces that translation needs

/**
 * The namespaces of a task (the receiver at export time, or the HELLO caller
 * for faked metadata), read lazily and only what an export needs. A view is
 * cheap to make; one view can serve several exports to the same task.
 * `tid === null` is the server's own view (the initial namespaces).
 */
export class TaskView {
  private userNsCache: string | null | undefined;
  private pidNsCache: string | null | undefined;
  private rootCache: RootId | null | undefined;
  private uidMapCache: IdMap | null | undefined;
  private gidMapCache: IdMap | null | undefined;

  constructor(readonly tid: number | null) {}

  static of(r: { tid: number } | TaskView | null): TaskView {
    if (r instanceof TaskView) return r;
    return r === null ? SERVER_VIEW : new TaskView(r.tid);
  }

  /** The user namespace identity (the server's if unreadable). */
  get userNs(): string | null {
    if (this.userNsCache === undefined) {
      this.userNsCache = (this.tid === null ? null : nsId(this.tid, 'user')) ?? serverNs().userNs;
    }
    return this.userNsCache;
  }

  /** The (active) pid namespace identity (the server's if unreadable). */
  get pidNs(): string | null {
    if (this.pidNsCache === undefined) {
      this.pidNsCache = (this.tid === null ? null : nsId(this.tid, 'pid')) ?? serverNs().pidNs;
    }
    return this.pidNsCache;
  }

  /** The fs root (the server's if unreadable). */
  get root(): RootId | null {
    if (this.rootCache === undefined) {
      this.rootCache = (this.tid === null ? null : rootId(this.tid)) ?? serverNs().root;
    }
    return this.rootCache;
  }

  /** The uid map, or null for the initial user namespace (identity). */
  get uidMap(): IdMap | null {
    if (this.uidMapCache === undefined) {
      this.uidMapCache = this.tid === null || this.userNs === serverNs().userNs
        ? null : procIdMap(this.tid, 'uid_map') ?? [];
    }
    return this.uidMapCache;
  }

  get gidMap(): IdMap | null {
    if (this.gidMapCache === undefined) {
      this.gidMapCache = this.tid === null || this.userNs === serverNs().userNs
        ? null : procIdMap(this.tid, 'gid_map') ?? [];
    }
    return this.gidMapCache;
  }
}

export const SERVER_VIEW = new TaskView(null);
/**
 * find_vpid(n) in the pid namespace of `caller`: the task numbered n there,
 * as a PidRef, or null if there is none.
 */
export function pidRefIn(caller: TaskView, n: number): PidRef | null {
  let g: number | null = n;
  if (caller.pidNs !== serverNs().pidNs && caller.tid !== null) {
    const level = (procStatus(caller.tid)?.numbers('NSpid') ?? [0]).length - 1;
    g = caller.pidNs === null ? null : findGlobalPid(caller.pidNs, level, n);
  }
  return g === null ? null : pidRefOfGlobal(g);
}

/** EXE as d_path() would print it for a task whose root is `root`. */
export function exeRelativeToRoot(exe: Buffer, root: RootId): Buffer {
  const r = root.path;
  if (r.length === 1 && r[0] === 0x2f) return exe;
  if (exe.length > r.length && exe.subarray(0, r.length).equals(r) && exe[r.length] === 0x2f) {
    return exe.subarray(r.length);
  }
  return exe;
}
