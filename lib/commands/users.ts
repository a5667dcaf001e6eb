// uid and gid as names, as busctl shows them: /etc/passwd and /etc/group
// read once; an id without an entry is shown as its number.
import { readFileSync } from 'node:fs';

function table(file: string): Map<number, string> {
  const out = new Map<number, string>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2]!) && !out.has(Number(f[2]))) out.set(Number(f[2]), f[0]!);
  }
  return out;
}

let users: Map<number, string> | undefined;
let groups: Map<number, string> | undefined;

export function userName(uid: number): string {
  users ??= table('/etc/passwd');
  return users.get(uid) ?? String(uid);
}

export function groupName(gid: number): string {
  groups ??= table('/etc/group');
  return groups.get(gid) ?? String(gid);
}

/** A user or group name (or number) as its id; null when unknown. */
export function lookupId(kind: 'user' | 'group', name: string): number | null {
  if (/^\d+$/.test(name)) return Number(name);
  const t = kind === 'user' ? (users ??= table('/etc/passwd')) : (groups ??= table('/etc/group'));
  for (const [id, n] of t) if (n === name) return id;
  return null;
}
