// The policy file of `bus make --policy` and `endpoint make --policy`: who
// may SEE, TALK to or OWN which well-known names, as kdbus policy entries.
//
//   # comments and blank lines are ignored
//   NAME  ACCESS  WHO [WHO...]
//
// NAME    a well-known name (org.example.Service), or a wildcard ending in
//         `.*` (org.example.*) that covers every name one level below it;
//         wildcards are a bus policy's only (kdbus refuses them on endpoints)
// ACCESS  see, talk or own (each implies the ones before it, as in kdbus)
// WHO     user:UID or user:NAME, group:GID or group:NAME, or world
//
// Lines naming the same NAME add up. Example:
//   org.example.Service  own   user:1000
//   org.example.Service  talk  world
//   org.example.*        see   group:wheel
import { readFileSync } from 'node:fs';
import type { Access, Grant, PolicyEntry } from '../client/policy.js';
import { usage } from './usage-error.js';
import { lookupId } from './users.js';

const ACCESSES: readonly Access[] = ['see', 'talk', 'own'];
const NAME = /^[A-Za-z_-][\w-]*(\.[A-Za-z_-][\w-]*)+$/;

/** A policy file that cannot be read as one: its path, line and what is wrong. */
export class PolicyFileError extends Error {}

/** The entries of policy text (file: for the messages). */
export function parsePolicy(text: string, file = 'policy'): PolicyEntry[] {
  const entries = new Map<string, Grant[]>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const where = `${file}:${i + 1}`;
    const [name, access, ...who] = line.split(/\s+/) as [string, string, ...string[]];
    const plain = name.endsWith('.*') ? name.slice(0, -2) : name;
    if (!NAME.test(plain) && !(name.endsWith('.*') && /^[A-Za-z_-][\w-]*$/.test(plain))) {
      throw new PolicyFileError(`${where}: '${name}' is not a well-known name (a.b, or a wildcard a.b.*)`);
    }
    const a = access?.toLowerCase() as Access | undefined;
    if (!a || !ACCESSES.includes(a)) throw new PolicyFileError(`${where}: the access must be see, talk or own, not '${access ?? ''}'`);
    if (!who.length) throw new PolicyFileError(`${where}: say who gets ${a} (user:UID, group:GID or world)`);
    const grants = entries.get(name) ?? [];
    for (const w of who) {
      if (w === 'world') {
        grants.push({ world: true, access: a });
        continue;
      }
      const m = /^(user|group):(.+)$/.exec(w);
      if (!m) throw new PolicyFileError(`${where}: '${w}' is not user:UID, group:GID or world`);
      const id = lookupId(m[1] as 'user' | 'group', m[2]!);
      if (id === null) throw new PolicyFileError(`${where}: no ${m[1]} named '${m[2]}'`);
      grants.push(m[1] === 'user' ? { user: id, access: a } : { group: id, access: a });
    }
    entries.set(name, grants);
  });
  return [...entries].map(([name, grants]) => ({ name, grants }));
}

function readPolicyFile(path: string): PolicyEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new PolicyFileError(`cannot read the policy file ${path}: ${(e as Error).message}`);
  }
  return parsePolicy(text, path);
}

/** The entries of a --policy option (none when it is not given); a bad file is a usage error of the command. */
export function policyOption(path: string | undefined, help: string): PolicyEntry[] {
  if (path === undefined) return [];
  try {
    return readPolicyFile(path);
  } catch (e) {
    if (e instanceof PolicyFileError) throw usage(e.message, help);
    throw e;
  }
}
