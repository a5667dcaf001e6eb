// Policy entries (custom endpoints, policy holders) as kdbus items: a NAME
// item followed by the POLICY_ACCESS items that apply to it.
import { ITEM, POLICY_ACCESS_GROUP, POLICY_ACCESS_USER, POLICY_ACCESS_WORLD, POLICY_OWN, POLICY_SEE, POLICY_TALK } from '../abi/kdbus.js';
import type { CommandBuilder } from './command.js';

export type Access = 'see' | 'talk' | 'own';

/** Who gets an access: a uid, a gid, or everybody. */
export type Grant =
  | { user: number; access: Access }
  | { group: number; access: Access }
  | { world: true; access: Access };

export interface PolicyEntry { name: string; grants: Grant[] }

const ACCESS: Record<Access, bigint> = { see: POLICY_SEE, talk: POLICY_TALK, own: POLICY_OWN };

/** Appends POLICY_ACCESS items (for the NAME item before them). */
export function addGrants(cmd: CommandBuilder, grants: Grant[]): void {
  for (const g of grants) {
    const [type, id] = 'user' in g ? [POLICY_ACCESS_USER, g.user]
      : 'group' in g ? [POLICY_ACCESS_GROUP, g.group] : [POLICY_ACCESS_WORLD, 0];
    cmd.u64s(ITEM.POLICY_ACCESS, [type, ACCESS[g.access], id]);
  }
}

/** Appends entries' items to cmd. */
export function addPolicy(cmd: CommandBuilder, entries: PolicyEntry[]): void {
  for (const e of entries) {
    cmd.string(ITEM.NAME, e.name);
    addGrants(cmd, e.grants);
  }
}
