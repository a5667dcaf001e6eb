// An abstract kdbus match rule (what MATCH_ADD takes) as items. The D-Bus
// match-rule codec produces these; each present field is one item, and a
// message must satisfy all of them.
import { ITEM, KDBUS_MATCH_ID_ANY } from '../abi/kdbus.js';
import type { CommandBuilder, U64 } from './command.js';

/** A name notification rule; an absent field matches anything. */
export interface NameChangeRule { name?: string; oldId?: U64; newId?: U64 }
/** An id notification rule; an absent id matches any. */
export interface IdChangeRule { id?: U64 }

export interface MatchRule {
  /** BLOOM_MASK: the bits a signal's bloom filter must have (the bus's bloom size) */
  bloomMask?: Buffer;
  /** the sender owns this well-known name */
  name?: string;
  /** the sender's connection id */
  id?: U64;
  nameAdd?: NameChangeRule;
  nameRemove?: NameChangeRule;
  nameChange?: NameChangeRule;
  idAdd?: IdChangeRule;
  idRemove?: IdChangeRule;
}

function nameChange(cmd: CommandBuilder, type: number, r: NameChangeRule): void {
  const ids = [r.oldId ?? KDBUS_MATCH_ID_ANY, 0n, r.newId ?? KDBUS_MATCH_ID_ANY, 0n];
  if (r.name === undefined) cmd.u64s(type, ids);
  else cmd.string(type, r.name, ids);
}

/** Appends the rule's items to cmd. */
export function addMatchRule(cmd: CommandBuilder, rule: MatchRule): void {
  if (rule.bloomMask) cmd.bytes(ITEM.BLOOM_MASK, rule.bloomMask);
  if (rule.name !== undefined) cmd.string(ITEM.NAME, rule.name);
  if (rule.id !== undefined) cmd.u64s(ITEM.ID, [rule.id]);
  if (rule.nameAdd) nameChange(cmd, ITEM.NAME_ADD, rule.nameAdd);
  if (rule.nameRemove) nameChange(cmd, ITEM.NAME_REMOVE, rule.nameRemove);
  if (rule.nameChange) nameChange(cmd, ITEM.NAME_CHANGE, rule.nameChange);
  if (rule.idAdd) cmd.u64s(ITEM.ID_ADD, [rule.idAdd.id ?? KDBUS_MATCH_ID_ANY, 0n]);
  if (rule.idRemove) cmd.u64s(ITEM.ID_REMOVE, [rule.idRemove.id ?? KDBUS_MATCH_ID_ANY, 0n]);
}
