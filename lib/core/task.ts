// What the server learns about a calling thread from /proc: its credentials
// and capabilities, read when kdbus would look at `current` (open, BUS_MAKE,
// HELLO), never on the message hot path.
import { readFileSync, readlinkSync } from 'node:fs';

export interface TaskCreds {
  tgid: number;
  uid: number; euid: number; suid: number; fsuid: number;
  gid: number; egid: number; sgid: number; fsgid: number;
  groups: number[];
  capEff: bigint;
  /** the thread's user namespace (readlink of /proc/<tid>/ns/user) */
  userNs: string | null;
}

const CAP_IPC_OWNER = 15n;

/** Credentials of thread tid, or null if it is gone. */
export function taskCreds(tid: number): TaskCreds | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${tid}/status`, 'latin1');
  } catch {
    return null;
  }
  const field = (name: string): string => {
    const at = status.indexOf(`\n${name}:`);
    if (at < 0) return '';
    const end = status.indexOf('\n', at + 1);
    return status.slice(at + name.length + 2, end < 0 ? undefined : end).trim();
  };
  const ids = (name: string): number[] => field(name).split(/\s+/).map(Number);
  const [uid, euid, suid, fsuid] = ids('Uid');
  const [gid, egid, sgid, fsgid] = ids('Gid');
  const groups = field('Groups');
  return { tgid: Number(field('Tgid')), uid, euid, suid, fsuid, gid, egid, sgid, fsgid,
    groups: groups ? groups.split(/\s+/).map(Number) : [],
    capEff: BigInt('0x' + (field('CapEff') || '0')), userNs: userNsOf(tid) };
}

function userNsOf(tid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${tid}/ns/user`);
  } catch {
    return null;
  }
}

/** The domain's user namespace: the server's own (kdbusfs mounts in it). */
let domainUserNs: string | null | undefined;

/**
 * ns_capable(domain user namespace, CAP_IPC_OWNER): CapEff counts only for a
 * thread in the domain's user namespace; the root of a container with its own
 * user namespace has no capability on the host's buses.
 */
export function hasCapIpcOwner(c: TaskCreds): boolean {
  domainUserNs ??= userNsOf('self');
  return c.userNs !== null && c.userNs === domainUserNs && ((c.capEff >> CAP_IPC_OWNER) & 1n) === 1n;
}
