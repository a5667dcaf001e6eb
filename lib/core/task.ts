// What the server learns about a calling thread from /proc: its credentials
// and capabilities, read when kdbus would look at `current` (open, BUS_MAKE,
// HELLO), never on the message hot path.
import { readFileSync } from 'node:fs';

export interface TaskCreds {
  tgid: number;
  uid: number; euid: number; suid: number; fsuid: number;
  gid: number; egid: number; sgid: number; fsgid: number;
  groups: number[];
  capEff: bigint;
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
    capEff: BigInt('0x' + (field('CapEff') || '0')) };
}

export function hasCapIpcOwner(c: TaskCreds): boolean {
  return ((c.capEff >> CAP_IPC_OWNER) & 1n) === 1n;
}
