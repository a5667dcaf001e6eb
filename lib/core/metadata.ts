// kdbus metadata (ipc/kdbus/metadata.c, kdbus.txt section 13): what a task
// and a connection looked like when a message was sent, a connection said
// HELLO or a bus was made, and its export as items into a receiver's pool.
//
// The kernel reads `current`; we read /proc/<tid>/... of the calling thread
// (proc.ts). What we collect is the kernel's own view: uids and gids are
// kuids, pids are global pid numbers, cgroup paths are absolute. Translation
// into the receiver's namespaces (namespaces.ts) happens at export time, as
// the kernel does it at RECV time (from_kuid_munged, pid_vnr, CAPS and EXE
// dropping).
import { ATTACH, ITEM, ITEM_HEADER_SIZE, SIZEOF_AUDIT, SIZEOF_CREDS, SIZEOF_PIDS,
  SIZEOF_TIMESTAMP, align8 } from '../abi/kdbus.js';
import { moduleParams } from './module.js';
import { errno, fail } from './errors.js';
import { cString, nsId, procCString, procFile, procLink, procNumber, procStatus, procText,
  type ProcStatus } from './proc.js';
import { INVALID_ID, NULL_PID, SERVER_VIEW, TaskView, exeRelativeToRoot, fromKid, makeKid, overflow,
  pidIn, pidNsLadder, pidRefIn, rootId, sameRoot, type PidRef, type RootId } from './namespaces.js';

/** The attach flags that are process metadata (kdbus_meta_proc). */
export const PROC_ATTACH = ATTACH.CREDS | ATTACH.PIDS | ATTACH.AUXGROUPS | ATTACH.TID_COMM |
  ATTACH.PID_COMM | ATTACH.EXE | ATTACH.CMDLINE | ATTACH.CGROUP | ATTACH.CAPS |
  ATTACH.SECLABEL | ATTACH.AUDIT;

/** u32 words per capability set in the CAPS item: _KERNEL_CAPABILITY_U32S of v3 (64-bit sets). */
const CAP_U32S_V3 = 2;

// Host constants, read once.
let capLastCap: number | undefined;
function lastCap(): number {
  return (capLastCap ??= procNumber('/proc/sys/kernel/cap_last_cap', 40));
}
/**
 * Whether some LSM answers /proc/<tid>/attr/current. LSMs are not loaded at
 * run time, so one EINVAL (no LSM) answers for every task; the kernel's
 * equivalent is security_secid_to_secctx() returning -EOPNOTSUPP.
 */
let seclabelSupported: boolean | undefined;

// ---------------------------------------------------------------------------
// Process metadata

/** Process metadata of a task, collected at a point in time (kdbus_meta_proc). */
export class ProcMeta {
  private valid = 0n;
  private tried = 0n;

  /** ATTACH bits whose item is present (the kernel's `valid`). */
  get collected(): bigint {
    return this.valid;
  }

  /** CREDS: kuids and kgids, uid euid suid fsuid gid egid sgid fsgid; 0xffffffff is INVALID. */
  creds: Uint32Array | null = null;
  /** PIDS: the thread group leader, the thread, the real parent's thread group. */
  pids: { tgid: PidRef; tid: PidRef; ppid: PidRef } | null = null;
  /** AUXGROUPS: kgids. */
  auxgroups: number[] | null = null;
  tidComm: Buffer | null = null;
  pidComm: Buffer | null = null;
  /** EXE: the path as the server sees it; exported relative to `exeRoot`. */
  exe: Buffer | null = null;
  exeRoot: RootId | null = null;
  /** CMDLINE: argv[0] only, as v3 copies it (strndup_user). */
  cmdline: Buffer | null = null;
  cgroup: Buffer | null = null;
  /** CAPS: inheritable, permitted, effective, bounding; each CAP_U32S_V3 u32 words, low word first. */
  caps: Uint32Array | null = null;
  capsLastCap = 0;
  seclabel: Buffer | null = null;
  /** AUDIT: loginuid as kuid (0xffffffff unset), sessionid. */
  audit: { loginuid: number; sessionid: number } | null = null;

  /**
   * The namespaces and root of the task, recorded with the items that need
   * them for translation: pidNs with PIDS, userNs with CAPS (caps_namespace),
   * root with EXE.
   */
  readonly ns: { userNs?: string | null; pidNs?: string | null; root?: RootId | null } = {};

  /**
   * Collect the items selected by `which` (process bits of ATTACH.*) from
   * thread tid, synchronously from /proc. Only what is asked for is read. A
   * vanished task yields what could be read; it never throws.
   */
  static collect(tid: number, which: bigint, status?: ProcStatus): ProcMeta {
    const mp = new ProcMeta();
    mp.collectMore(tid, which, status);
    return mp;
  }

  /**
   * kdbus_meta_proc_collect(): adds the items of `which` not tried before.
   * `read`: the task's status, if the caller read it for this same command.
   */
  collectMore(tid: number, which: bigint, read?: ProcStatus): void {
    const want = which & PROC_ATTACH & ~this.tried;
    if (want === 0n) return;
    this.tried |= want;

    // /proc/<tid>/status serves CREDS, PIDS, AUXGROUPS, CAPS (and the tgid for PID_COMM).
    let status: ProcStatus | null | undefined = read;
    const getStatus = (): ProcStatus | null => {
      if (status === undefined) status = procStatus(tid);
      return status;
    };

    if (want & ATTACH.CREDS) {
      const st = getStatus();
      const u = st?.numbers('Uid');
      const g = st?.numbers('Gid');
      if (u && g && u.length >= 4 && g.length >= 4) {
        this.creds = Uint32Array.of(u[0], u[1], u[2], u[3], g[0], g[1], g[2], g[3]);
        this.valid |= ATTACH.CREDS;
      }
    }

    if (want & ATTACH.PIDS) {
      const st = getStatus();
      if (st) {
        const tgid = st.number('Tgid');
        const ttid = st.number('Pid');
        const ppid = st.number('PPid');
        const nsPid = st.numbers('NSpid') ?? [ttid];
        const nsTgid = st.numbers('NStgid') ?? [tgid];
        const level = nsPid.length - 1;
        const nsIds = pidNsLadder(tid, level, ppid);
        this.ns.pidNs = nsIds[level];
        let parent: PidRef;
        if (ppid <= 0) {
          parent = NULL_PID;
        } else if (level === 0) {
          parent = { numbers: [ppid], nsIds };
        } else {
          // The parent may sit in an ancestor namespace: take its own chain.
          const pnums = procStatus(ppid)?.numbers('NStgid') ?? [ppid];
          parent = { numbers: pnums.slice(0, level + 1), nsIds };
        }
        this.pids = { tgid: { numbers: nsTgid, nsIds }, tid: { numbers: nsPid, nsIds }, ppid: parent };
        this.valid |= ATTACH.PIDS;
      }
    }

    if (want & ATTACH.AUXGROUPS) {
      const st = getStatus();
      const groups = st?.numbers('Groups');
      if (groups) {
        this.auxgroups = groups;
        this.valid |= ATTACH.AUXGROUPS;
      }
    }

    if (want & ATTACH.TID_COMM) {
      // /proc/<tid>/comm is the thread's comm (the same file as /proc/<pid>/task/<tid>/comm).
      const c = procCString(`/proc/${tid}/comm`);
      if (c) {
        this.tidComm = c;
        this.valid |= ATTACH.TID_COMM;
      }
    }

    if (want & ATTACH.PID_COMM) {
      const st = getStatus();
      const tgid = st ? st.number('Tgid') : 0;
      // The thread group leader's comm is the file just read when tid is the leader.
      const same = tgid === tid && (want & ATTACH.TID_COMM) !== 0n;
      const c = same ? this.tidComm : tgid > 0 ? procCString(`/proc/${tgid}/comm`) : null;
      if (c) {
        this.pidComm = c;
        this.valid |= ATTACH.PID_COMM;
      }
    }

    if (want & ATTACH.EXE) {
      // No mm (kernel thread, zombie): no item, as get_task_mm() failing.
      const exe = procLink(`/proc/${tid}/exe`);
      const root = exe ? rootId(tid) : null;
      if (exe && root) {
        this.exe = exe;
        this.exeRoot = root;
        this.ns.root = root;
        this.valid |= ATTACH.EXE;
      }
    }

    if (want & ATTACH.CMDLINE) {
      // argv[0] only; an empty cmdline is a task without mm or arguments: no item.
      const b = procFile(`/proc/${tid}/cmdline`, true);
      if (typeof b !== 'number' && b.length > 0) {
        this.cmdline = cString(b, true);
        this.valid |= ATTACH.CMDLINE;
      }
    }

    if (want & ATTACH.CGROUP) {
      const t = procText(`/proc/${tid}/cgroup`);
      const path = t === null ? null : cgroupPath(t);
      if (path !== null) {
        this.cgroup = Buffer.from(path, 'latin1');
        this.valid |= ATTACH.CGROUP;
      }
    }

    if (want & ATTACH.CAPS) {
      const st = getStatus();
      const userNs = nsId(tid, 'user');
      if (st && userNs) {
        const last = lastCap();
        const words = Math.max(CAP_U32S_V3, (last >> 5) + 1);
        const caps = new Uint32Array(4 * words);
        const sets = ['CapInh', 'CapPrm', 'CapEff', 'CapBnd'];
        const topWord = last >> 5;
        const topMask = (last & 31) === 31 ? 0xffff_ffff : (2 ** ((last & 31) + 1)) - 1;
        for (let s = 0; s < 4; s++) {
          let v = st.mask(sets[s]);
          for (let w = 0; w < words; w++) {
            caps[s * words + w] = Number(v & 0xffff_ffffn);
            v >>= 32n;
          }
          caps[s * words + topWord] &= topMask; // clear bits above last_cap
          for (let w = topWord + 1; w < words; w++) caps[s * words + w] = 0;
        }
        this.caps = caps;
        this.capsLastCap = last;
        this.ns.userNs = userNs;
        this.valid |= ATTACH.CAPS;
      }
    }

    if (want & ATTACH.SECLABEL) {
      if (seclabelSupported !== false) {
        const b = procFile(`/proc/${tid}/attr/current`);
        if (b === -errno.EINVAL) {
          seclabelSupported = false; // no LSM: the item is dropped, for every task
        } else if (typeof b !== 'number' && b.length > 0) {
          seclabelSupported = true;
          this.seclabel = cString(b);
          this.valid |= ATTACH.SECLABEL;
        }
      }
    }

    if (want & ATTACH.AUDIT) {
      // No audit support in the kernel (no loginuid file): no item, as !CONFIG_AUDITSYSCALL.
      const l = procText(`/proc/${tid}/loginuid`);
      const s = l === null ? null : procText(`/proc/${tid}/sessionid`);
      if (l !== null && s !== null) {
        const loginuid = Number(l.trim());
        const sessionid = Number(s.trim());
        if (Number.isFinite(loginuid) && Number.isFinite(sessionid)) {
          this.audit = { loginuid: loginuid >>> 0, sessionid: sessionid >>> 0 };
          this.valid |= ATTACH.AUDIT;
        }
      }
    }
  }

  /**
   * kdbus_meta_proc_fake(): the metadata a privileged HELLO supplies instead
   * of its own. creds is a struct kdbus_creds (32 bytes of u32), pids a
   * struct kdbus_pids (3 × u64), both in the namespaces of the caller `tid`
   * (the server's when omitted). Throws KdbusError(EINVAL) for ids or pids
   * that do not exist there, as the kernel does; (u32)-1 ids are kept as
   * INVALID, pid 0 is no pid.
   */
  static fake(creds: Buffer | null, pids: Buffer | null, seclabel: string | Buffer | null,
    tid?: number): ProcMeta {
    const mp = new ProcMeta();
    const caller = tid === undefined ? SERVER_VIEW : new TaskView(tid);
    if (creds) {
      if (creds.length < SIZEOF_CREDS) fail(errno.EINVAL, 'short kdbus_creds');
      const out = new Uint32Array(8);
      for (let i = 0; i < 8; i++) {
        const id = creds.readUInt32LE(i * 4);
        const k = makeKid(i < 4 ? caller.uidMap : caller.gidMap, id);
        if (k < 0 && id !== INVALID_ID) fail(errno.EINVAL, `unmapped id ${id}`);
        out[i] = k < 0 ? INVALID_ID : k;
      }
      mp.creds = out;
      mp.valid |= ATTACH.CREDS;
      mp.tried |= ATTACH.CREDS;
    }
    if (pids) {
      if (pids.length < SIZEOF_PIDS) fail(errno.EINVAL, 'short kdbus_pids');
      // struct kdbus_pids { pid (tgid), tid, ppid }
      const resolve = (v: bigint): PidRef => {
        if (v === 0n) return NULL_PID;
        if (v > 0x7fff_ffffn) fail(errno.EINVAL, `no pid ${v}`);
        const n = Number(v);
        const ref = pidRefIn(caller, n);
        if (ref === null) fail(errno.EINVAL, `no pid ${n}`);
        return ref;
      };
      const tgid = resolve(pids.readBigUInt64LE(0));
      const ttid = resolve(pids.readBigUInt64LE(8));
      const ppid = resolve(pids.readBigUInt64LE(16));
      mp.pids = { tgid, tid: ttid, ppid };
      mp.ns.pidNs = caller.pidNs;
      mp.valid |= ATTACH.PIDS;
      mp.tried |= ATTACH.PIDS;
    }
    if (seclabel !== null) {
      mp.seclabel = typeof seclabel === 'string' ? Buffer.from(seclabel, 'utf8') : Buffer.from(seclabel);
      const nul = mp.seclabel.indexOf(0);
      if (nul >= 0) mp.seclabel = mp.seclabel.subarray(0, nul);
      mp.valid |= ATTACH.SECLABEL;
      mp.tried |= ATTACH.SECLABEL;
    }
    return mp;
  }
}

/**
 * task_cgroup_path() of v3: the path in the hierarchy with the lowest
 * non-zero id; on a host with only the unified hierarchy, its ("0::") path.
 */
function cgroupPath(text: string): string | null {
  let best = Infinity;
  let bestPath: string | null = null;
  let unified: string | null = null;
  for (const line of text.split('\n')) {
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) continue;
    const id = Number(line.slice(0, a));
    const path = line.slice(b + 1);
    if (id === 0) unified = path;
    else if (id < best) {
      best = id;
      bestPath = path;
    }
  }
  return bestPath ?? unified;
}

// ---------------------------------------------------------------------------
// Connection metadata

/** Connection metadata at send time (kdbus_meta_conn): TIMESTAMP, NAMES, CONN_DESCRIPTION. */
export interface ConnMeta {
  timestamp?: { seqnum: bigint; monotonicNs: bigint; realtimeNs: bigint };
  /** byte strings (itemSysname), as the name registry keeps them */
  names?: Array<{ name: string; flags: bigint }>;
  /** a byte string (itemSysname) */
  description?: string;
}

let realtimeOffset: bigint | null = null;

/**
 * Current time as kdbus stamps it: CLOCK_MONOTONIC (process.hrtime) and
 * CLOCK_REALTIME in ns. Node has no ns realtime clock, so realtime is the
 * monotonic clock plus an offset, re-anchored to Date.now() whenever the wall
 * clock moves by more than 2 ms against it.
 */
export function timestampNow(seqnum: bigint): { seqnum: bigint; monotonicNs: bigint; realtimeNs: bigint } {
  const mono = process.hrtime.bigint();
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  if (realtimeOffset === null) {
    realtimeOffset = nowNs - mono;
  } else {
    const drift = mono + realtimeOffset - nowNs;
    if (drift > 2_000_000n || drift < -2_000_000n) realtimeOffset = nowNs - mono;
  }
  return { seqnum, monotonicNs: mono, realtimeNs: mono + realtimeOffset };
}

// ---------------------------------------------------------------------------
// Export

const EMPTY = Buffer.alloc(0);

/**
 * One item to write: `len` payload bytes (for strings, including the NUL),
 * written by `write` at the payload offset of a zeroed buffer.
 */
interface Part {
  type: number;
  len: number;
  write: (out: Buffer, off: number) => void;
}

/** A C-string item: bytes + NUL (the NUL is already there: the buffer is zeroed). */
function strPart(type: number, data: Buffer): Part {
  return { type, len: data.length + 1, write: (out, off) => { data.copy(out, off); } };
}

/** strlen() semantics: a string ends at its first NUL. */
function cut(str: string): string {
  const nul = str.indexOf('\0');
  return nul < 0 ? str : str.slice(0, nul);
}

/** A C-string item from a byte string (one char per byte: a sysname, see itemSysname). */
function byteStrPart(type: number, str: string): Part {
  str = cut(str);
  return { type, len: str.length + 1, write: (out, off) => { out.write(str, off, 'latin1'); } };
}

function u32sPart(type: number, values: ArrayLike<number>): Part {
  return {
    type, len: values.length * 4,
    write: (out, off) => { for (let i = 0; i < values.length; i++) out.writeUInt32LE(values[i] >>> 0, off + i * 4); },
  };
}

/** A u64 that may be a bigint: two u32 writes (little-endian). */
function writeU64(out: Buffer, v: bigint, off: number): void {
  const x = BigInt.asUintN(64, v);
  out.writeUInt32LE(Number(x & 0xffff_ffffn), off);
  out.writeUInt32LE(Number(x >> 32n), off + 4);
}

/**
 * kdbus_meta_export(): the metadata items for `mask` (already the
 * sender∩receiver or request∩owner flags), in the kernel's order: CREDS,
 * PIDS, AUXGROUPS, TID_COMM, PID_COMM, EXE, CMDLINE, CGROUP, CAPS, SECLABEL,
 * AUDIT, OWNED_NAME..., CONN_DESCRIPTION, TIMESTAMP. Each item is 8-aligned,
 * padding zeroed; item.size excludes the padding. Applies the module mask
 * (read now) and drops what is not collected. Ids and pids are translated
 * into the namespaces of `receiver` (null: the server's, the initial ones):
 * unmapped uids/gids become the overflow ids (loginuid: -1), invisible pids 0,
 * CAPS are dropped across user namespaces and EXE when the roots differ.
 */
export function exportMeta(proc: ProcMeta | null, conn: ConnMeta | null, mask: bigint,
  receiver: { tid: number } | TaskView | null): Buffer {
  let valid = 0n;
  if (proc) valid |= proc.collected;
  if (conn) {
    if (conn.timestamp) valid |= ATTACH.TIMESTAMP;
    if (conn.names && conn.names.length > 0) valid |= ATTACH.NAMES;
    if (conn.description !== undefined) valid |= ATTACH.CONN_DESCRIPTION;
  }
  mask &= valid;
  mask &= BigInt.asUintN(64, moduleParams.attachFlagsMask);
  if (mask === 0n) return EMPTY;

  const view = TaskView.of(receiver);
  const parts: Part[] = [];

  if (proc) {
    // caps_namespace != current_user_ns(): no sane translation, drop.
    if ((mask & ATTACH.CAPS) && proc.ns.userNs !== view.userNs) mask &= ~ATTACH.CAPS;
    // EXE: d_path relative to the receiver's root only works when the roots match.
    if (mask & ATTACH.EXE) {
      const vr = view.root;
      if (!proc.exeRoot || !vr || !sameRoot(proc.exeRoot, vr)) mask &= ~ATTACH.EXE;
    }

    if ((mask & ATTACH.CREDS) && proc.creds) {
      const c = proc.creds;
      const out = new Array<number>(8);
      const uidMap = view.uidMap;
      const gidMap = view.gidMap;
      const ov = overflow();
      for (let i = 0; i < 8; i++) {
        // kdbus_from_k[ug]id_keep: INVALID stays -1, unmapped becomes the overflow id
        if (c[i] === INVALID_ID) out[i] = INVALID_ID;
        else {
          const v = fromKid(i < 4 ? uidMap : gidMap, c[i]);
          out[i] = v < 0 ? (i < 4 ? ov.uid : ov.gid) : v;
        }
      }
      parts.push(u32sPart(ITEM.CREDS, out));
    }

    if ((mask & ATTACH.PIDS) && proc.pids) {
      const ns = view.pidNs;
      // struct kdbus_pids { u64 pid (tgid); u64 tid; u64 ppid; }; pid numbers fit in 32 bits
      const v = [pidIn(proc.pids.tgid, ns), pidIn(proc.pids.tid, ns), pidIn(proc.pids.ppid, ns)];
      parts.push({
        type: ITEM.PIDS, len: SIZEOF_PIDS,
        write: (out, off) => { for (let i = 0; i < 3; i++) out.writeUInt32LE(v[i], off + i * 8); },
      });
    }

    if ((mask & ATTACH.AUXGROUPS) && proc.auxgroups) {
      let out: number[] = proc.auxgroups;
      const map = out.length ? view.gidMap : null;
      if (map !== null) {
        const ovg = overflow().gid;
        out = out.map((g) => {
          const v = fromKid(map, g);
          return v < 0 ? ovg : v; // from_kgid_munged
        });
      }
      parts.push(u32sPart(ITEM.AUXGROUPS, out));
    }

    if ((mask & ATTACH.TID_COMM) && proc.tidComm) parts.push(strPart(ITEM.TID_COMM, proc.tidComm));
    if ((mask & ATTACH.PID_COMM) && proc.pidComm) parts.push(strPart(ITEM.PID_COMM, proc.pidComm));
    if ((mask & ATTACH.EXE) && proc.exe && proc.exeRoot) {
      parts.push(strPart(ITEM.EXE, exeRelativeToRoot(proc.exe, proc.exeRoot)));
    }
    if ((mask & ATTACH.CMDLINE) && proc.cmdline) parts.push(strPart(ITEM.CMDLINE, proc.cmdline));
    if ((mask & ATTACH.CGROUP) && proc.cgroup) parts.push(strPart(ITEM.CGROUP, proc.cgroup));

    if ((mask & ATTACH.CAPS) && proc.caps) {
      // struct { u32 last_cap; struct { u32 caps[N]; } set[4]; }
      const caps = proc.caps;
      const last = proc.capsLastCap;
      parts.push({
        type: ITEM.CAPS, len: 4 + caps.length * 4,
        write: (out, off) => {
          out.writeUInt32LE(last, off);
          for (let i = 0; i < caps.length; i++) out.writeUInt32LE(caps[i], off + 4 + i * 4);
        },
      });
    }

    if ((mask & ATTACH.SECLABEL) && proc.seclabel) parts.push(strPart(ITEM.SECLABEL, proc.seclabel));

    if ((mask & ATTACH.AUDIT) && proc.audit) {
      // struct kdbus_audit { u32 sessionid; u32 loginuid; }; loginuid via from_kuid (unmapped: -1)
      const sessionid = proc.audit.sessionid >>> 0;
      const loginuid = fromKid(view.uidMap, proc.audit.loginuid) >>> 0;
      parts.push({
        type: ITEM.AUDIT, len: SIZEOF_AUDIT,
        write: (out, off) => { out.writeUInt32LE(sessionid, off); out.writeUInt32LE(loginuid, off + 4); },
      });
    }
  }

  if (conn) {
    if ((mask & ATTACH.NAMES) && conn.names) {
      for (const n of conn.names) {
        // struct kdbus_name { u64 flags; char name[]; }, the name a byte string (itemSysname)
        const name = cut(n.name);
        const flags = n.flags;
        parts.push({
          type: ITEM.OWNED_NAME, len: 8 + name.length + 1,
          write: (out, off) => { writeU64(out, flags, off); out.write(name, off + 8, 'latin1'); },
        });
      }
    }
    if ((mask & ATTACH.CONN_DESCRIPTION) && conn.description !== undefined) {
      parts.push(byteStrPart(ITEM.CONN_DESCRIPTION, conn.description));
    }
    if ((mask & ATTACH.TIMESTAMP) && conn.timestamp) {
      const ts = conn.timestamp;
      parts.push({
        type: ITEM.TIMESTAMP, len: SIZEOF_TIMESTAMP,
        write: (out, off) => {
          writeU64(out, ts.seqnum, off);
          writeU64(out, ts.monotonicNs, off + 8);
          writeU64(out, ts.realtimeNs, off + 16);
        },
      });
    }
  }

  let total = 0;
  for (const p of parts) total += align8(ITEM_HEADER_SIZE + p.len);
  if (total === 0) return EMPTY;
  const out = Buffer.alloc(total); // zeroed: padding, string NULs, upper halves
  let off = 0;
  for (const p of parts) {
    const size = ITEM_HEADER_SIZE + p.len;
    out.writeUInt32LE(size, off); // struct kdbus_item { u64 size; u64 type; ... }
    out.writeUInt32LE(p.type, off + 8);
    p.write(out, off + ITEM_HEADER_SIZE);
    off += align8(size);
  }
  return out;
}
