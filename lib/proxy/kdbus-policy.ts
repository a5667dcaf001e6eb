// The part of an XML policy that kdbus can hold itself, so that kdbus-native
// clients of the bus meet the same rules as the proxy's clients: kdbus
// policy entries (a well-known name, or a wildcard "a.b.*" for the names one
// level below a.b) granting OWN or TALK to a uid, a gid or everybody, held
// by policy-holder connections of the proxy (as PID1 held its busnames'
// policies). kdbus policy only grants, per name, per user/group/world; so a
// grant is made only where the XML allows it to everyone the grant reaches:
//
//   - own="N", own_prefix="P" (P and P.* one level down), send_destination=
//     "N" / send_destination_prefix="P" with no other send_ condition, in
//     context="default"/"mandatory" or user="*"/group="*" sections (world),
//     user= (that uid) or group= (that gid) sections;
//   - a deny that may touch the name, in a section reaching only some of
//     those the grant would reach (a user, another group, at_console), keeps
//     the grant away: kdbus cannot say "everyone but";
//   - what stays in the proxy alone: own="*" and send_destination="*" (kdbus
//     has no policy for every name), send rules narrowed by interface,
//     member, path, type or error (TALK is all or nothing), receive rules
//     (kdbus has no receive policy), at_console sections (who is at the
//     console changes), names below own_prefix deeper than one level. kdbus
//     itself lets the same uid talk, and privileged connections do anything.
import { Connection } from '../client/connection.js';
import { isWellKnownName } from '../client/dbus-names.js';
import { KdbusClientError } from '../client/errors.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';
import type { Access, Grant, PolicyEntry } from '../client/policy.js';
import { SEND_KEYS, type Rule, type Section, type XmlPolicy } from './xml-policy.js';

/** A kdbus policy name: exactly `name`, or (wildcard) the names one level below it. */
interface Key { name: string; wildcard: boolean }

type Subject = { world: true } | { user: number } | { group: number };

type Relation = 'full' | 'partial' | 'none';

/** How much of the key an exact name pattern (own=, send_destination=) covers. */
function exactRelation(n: string, k: Key): Relation {
  if (n === '*') return 'full';
  if (!k.wildcard) return n === k.name ? 'full' : 'none';
  return n.startsWith(k.name + '.') ? 'partial' : 'none';
}

/** How much of the key a prefix pattern (own_prefix=, send_destination_prefix=) covers. */
function prefixRelation(p: string, k: Key): Relation {
  if (k.name === p || k.name.startsWith(p + '.')) return 'full';
  return k.wildcard && p.startsWith(k.name + '.') ? 'partial' : 'none';
}

/** How much of owning (own) or talking to (talk) the key's names a rule decides. */
function relation(r: Rule, access: 'own' | 'talk', k: Key): Relation {
  if (access === 'own') {
    if (r.kind !== 'own') return 'none';
    return r.attrs.own !== undefined ? exactRelation(r.attrs.own, k) : prefixRelation(r.attrs.own_prefix!, k);
  }
  if (r.kind !== 'send') return 'none';
  // kdbus checks TALK for calls and unicast signals, never for replies; no one eavesdrops (xml-policy.ts)
  if (r.attrs.send_type === 'method_return' || r.attrs.send_type === 'error') return 'none';
  if (!r.allow && r.attrs.eavesdrop === 'true') return 'none';
  const d = r.attrs.send_destination;
  const dp = r.attrs.send_destination_prefix;
  const dest = d !== undefined ? exactRelation(d, k) : dp !== undefined ? prefixRelation(dp, k) : 'full';
  if (dest === 'none') return 'none';
  const narrowed = SEND_KEYS.some(key => key !== 'send_destination' && key !== 'send_destination_prefix'
    && r.attrs[key] !== undefined && r.attrs[key] !== '*');
  return narrowed ? 'partial' : dest;
}

/** Which sections reach every connection a grant to `who` reaches (covering), and which only some (partial). */
function split(policy: XmlPolicy, who: Subject): { covering: Section[]; partial: Section[] } {
  const userGroups = 'user' in who ? policy.groupsOfUser(who.user) : [];
  const covers = (s: Section): boolean => {
    if (s.kind === 'default' || s.kind === 'mandatory' || s.who === '*') return true;
    if (s.kind === 'console') return false;
    const id = policy.idOf(s);
    if (id === undefined) return false;
    if ('user' in who) return s.kind === 'user' ? id === who.user : userGroups.includes(id);
    if ('group' in who) return s.kind === 'group' && id === who.group;
    return false;
  };
  const covering: Section[] = [];
  const partial: Section[] = [];
  for (const s of policy.sections) (covers(s) ? covering : partial).push(s);
  return { covering, partial };
}

function allowed(policy: XmlPolicy, who: Subject, access: 'own' | 'talk', k: Key): boolean {
  const { covering, partial } = split(policy, who);
  let verdict = false;
  for (const s of covering) {
    for (const r of s.rules) {
      const rel = relation(r, access, k);
      if (r.allow ? rel === 'full' : rel !== 'none') verdict = r.allow;
    }
  }
  return verdict && !partial.some(s => s.rules.some(r => !r.allow && relation(r, access, k) !== 'none'));
}

/** The names an XML policy grants anything on, as kdbus policy keys. */
function keys(policy: XmlPolicy): Key[] {
  const out = new Map<string, Key>();
  const add = (name: string, wildcard: boolean): void => {
    // a wildcard's names are NAME.x; the bus driver's name is nobody's to grant
    if (name === DRIVER_NAME || !isWellKnownName(wildcard ? `${name}.x` : name)) return;
    out.set(`${wildcard ? '*' : '='}${name}`, { name, wildcard });
  };
  for (const s of policy.sections) {
    for (const r of s.rules) {
      if (!r.allow) continue;
      const exact = r.kind === 'own' ? r.attrs.own : r.kind === 'send' ? r.attrs.send_destination : undefined;
      const prefix = r.kind === 'own' ? r.attrs.own_prefix : r.kind === 'send' ? r.attrs.send_destination_prefix : undefined;
      if (exact !== undefined && exact !== '*') add(exact, false);
      if (prefix !== undefined) {
        add(prefix, false);
        add(prefix, true);
      }
    }
  }
  return [...out.values()];
}

/** The kdbus policy entries equivalent to what `policy` allows and kdbus can express (see the file's head). */
export function kdbusPolicyOf(policy: XmlPolicy): PolicyEntry[] {
  const subjects: Subject[] = [{ world: true }];
  for (const s of policy.sections) {
    const id = policy.idOf(s);
    if (id === undefined) continue;
    if (s.kind === 'user' && !subjects.some(x => 'user' in x && x.user === id)) subjects.push({ user: id });
    if (s.kind === 'group' && !subjects.some(x => 'group' in x && x.group === id)) subjects.push({ group: id });
  }
  const entries: PolicyEntry[] = [];
  const LEVEL: Record<Access, number> = { see: 0, talk: 1, own: 2 };
  for (const k of keys(policy)) {
    const grants: Grant[] = [];
    let worldLevel = -1;
    for (const who of subjects) {
      const access: Access | null = allowed(policy, who, 'own', k) ? 'own' : allowed(policy, who, 'talk', k) ? 'talk' : null;
      if (!access) continue;
      if ('world' in who) worldLevel = LEVEL[access];
      else if (LEVEL[access] <= worldLevel) continue;
      grants.push({ ...who, access } as Grant);
    }
    if (grants.length) entries.push({ name: k.wildcard ? `${k.name}.*` : k.name, grants });
  }
  return entries;
}

/** The policy-holder connections that keep entries on the bus, and the entries kdbus refused. */
export interface HeldPolicy { holders: Connection[]; refused: string[] }

/**
 * Holds each entry with a policy-holder connection (one name each, as kdbus
 * allows). A name whose policy someone else holds (an activator, another
 * holder: EEXIST) stays the proxy's alone; a proxy without the privilege on
 * the bus (neither its owner's uid nor CAP_IPC_OWNER: EPERM) holds nothing.
 */
export function holdKdbusPolicy(bus: string, root: string | undefined, entries: PolicyEntry[]): HeldPolicy {
  const held: HeldPolicy = { holders: [], refused: [] };
  for (const e of entries) {
    try {
      held.holders.push(Connection.open(bus, {
        ...(root !== undefined && { root }), kind: 'policy-holder', name: e.name, grants: e.grants,
        poolSize: 4096 * 16, description: 'kdbusfs-proxy-policy',
      }));
    } catch (err) {
      if (!(err instanceof KdbusClientError)) throw err;
      held.refused.push(`${e.name} (${err.code})`);
      if (err.code === 'EPERM') {
        held.refused.push(...entries.slice(entries.indexOf(e) + 1).map(x => `${x.name} (EPERM)`));
        break;
      }
    }
  }
  return held;
}
