// What the server learns about a calling thread's credentials: read when
// kdbus would look at `current` (open, BUS_MAKE, HELLO, and per ioctl when a
// policy check needs the caller's ids). One read of /proc/<tid>/status per
// such ioctl; the user namespace is read only for a capability decision.
import { nsId, procStatus, type ProcStatus } from './proc.js';

const CAP_IPC_OWNER = 15n;

/** Credentials of a thread, from one read of its status; the rest is parsed or read when asked for. */
export class TaskCreds {
  readonly uid: number; readonly euid: number; readonly suid: number; readonly fsuid: number;
  readonly gid: number; readonly egid: number; readonly sgid: number; readonly fsgid: number;
  private groupsCache: number[] | undefined;
  private userNsCache: string | null | undefined;

  constructor(private readonly tid: number, private readonly status: ProcStatus) {
    [this.uid, this.euid, this.suid, this.fsuid] = status.numbers('Uid') ?? [];
    [this.gid, this.egid, this.sgid, this.fsgid] = status.numbers('Gid') ?? [];
  }

  get tgid(): number { return this.status.number('Tgid'); }
  get groups(): number[] { return (this.groupsCache ??= this.status.numbers('Groups') ?? []); }
  get capEff(): bigint { return this.status.mask('CapEff'); }
  /** the thread's user namespace (readlink of /proc/<tid>/ns/user), read at the first look */
  get userNs(): string | null {
    if (this.userNsCache === undefined) this.userNsCache = nsId(this.tid, 'user');
    return this.userNsCache;
  }
}

/** Credentials of thread tid, or null if it is gone. */
export function taskCreds(tid: number): TaskCreds | null {
  const status = procStatus(tid);
  return status && new TaskCreds(tid, status);
}

/** The domain's user namespace: the server's own (kdbusfs mounts in it). */
let domainUserNs: string | null | undefined;

/**
 * ns_capable(domain user namespace, CAP_IPC_OWNER): CapEff counts only for a
 * thread in the domain's user namespace; the root of a container with its own
 * user namespace has no capability on the host's buses.
 */
export function hasCapIpcOwner(c: TaskCreds): boolean {
  if (((c.capEff >> CAP_IPC_OWNER) & 1n) !== 1n) return false;
  domainUserNs ??= nsId('self', 'user');
  return c.userNs !== null && c.userNs === domainUserNs;
}
