// D-Bus match rules: parsed from their text form (D-Bus specification
// quoting), tested against messages, and turned into what kdbus matches on,
// the way sd-bus's bus_add_match_internal_kernel (bus-control.c) did. The
// kernel's match is a coarse filter (bloom masks have false positives, and
// some keys are not in the bloom at all): a receiver checks each message
// against the rule itself with matchesMessage, as sd-bus did (bus-match.c).
import { ITEM, KDBUS_MATCH_ID_ANY } from '../abi/kdbus.js';
import { BloomFilter, type BloomParameters } from './bloom.js';
import { refuse } from './codec-error.js';
import { MESSAGE_TYPE_NAMES, MessageType, type DBusMessage } from './dbus-message.js';
import { isBusName, isInterfaceName, isMemberName, isObjectPath, uniqueNameId } from './dbus-names.js';

/** argN keys go up to arg63 (D-Bus specification). */
export const MAX_MATCH_ARGUMENT = 63;

export interface MatchRule {
  type?: MessageType;
  sender?: string;
  interface?: string;
  member?: string;
  path?: string;
  pathNamespace?: string;
  destination?: string;
  /** argN='value': argument N is a string equal to value */
  args: Map<number, string>;
  /** argNpath='value': argument N is a string or object path path-related to value */
  argPaths: Map<number, string>;
  /** argNnamespace='value': argument N is value or a name under it (sd-bus took any N; D-Bus defines arg0) */
  argNamespaces: Map<number, string>;
}

const TYPE_BY_NAME = new Map(Object.entries(MESSAGE_TYPE_NAMES).map(([k, v]) => [v, Number(k) as MessageType]));

/** Splits `text` into key/value pairs: values in '...' are literal; outside quotes \' is an apostrophe. */
function tokenize(text: string): [string, string][] {
  const pairs: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n') i++;
    if (i >= text.length) break;
    const eq = text.indexOf('=', i);
    if (eq < 0) refuse(`match rule ${JSON.stringify(text)}: key without '=' at ${i}`);
    const key = text.slice(i, eq);
    let value = '';
    let quoted = false;
    for (i = eq + 1; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === "'") quoted = false;
        else value += c;
      } else if (c === "'") quoted = true;
      else if (c === '\\' && text[i + 1] === "'") { value += "'"; i++; }
      else if (c === ',') break;
      else value += c;
    }
    if (quoted) refuse(`match rule ${JSON.stringify(text)}: unterminated quote in the value of ${key}`);
    pairs.push([key, value]);
    i++; // past the comma
  }
  return pairs;
}

function check(ok: boolean, key: string, value: string, what: string): void {
  if (!ok) refuse(`match rule: ${key}=${JSON.stringify(value)} is not ${what}`);
}

/** Parses a match rule; throws CodecError for unknown or repeated keys and invalid values. */
export function parseMatchRule(text: string): MatchRule {
  const rule: MatchRule = { args: new Map(), argPaths: new Map(), argNamespaces: new Map() };
  const seen = new Set<string>();
  for (const [key, value] of tokenize(text)) {
    if (seen.has(key)) refuse(`match rule: key ${key} given twice`);
    seen.add(key);
    switch (key) {
      case 'type': {
        const type = TYPE_BY_NAME.get(value);
        if (type === undefined) return refuse(`match rule: unknown message type ${JSON.stringify(value)}`);
        rule.type = type;
        continue;
      }
      case 'sender': check(isBusName(value), key, value, 'a bus name'); rule.sender = value; continue;
      case 'destination': check(isBusName(value), key, value, 'a bus name'); rule.destination = value; continue;
      case 'interface': check(isInterfaceName(value), key, value, 'an interface name'); rule.interface = value; continue;
      case 'member': check(isMemberName(value), key, value, 'a member name'); rule.member = value; continue;
      case 'path': check(isObjectPath(value), key, value, 'an object path'); rule.path = value; continue;
      case 'path_namespace':
        check(isObjectPath(value), key, value, 'an object path');
        rule.pathNamespace = value;
        continue;
      case 'eavesdrop':
        return refuse('match rule: eavesdrop does not exist on kdbus (a monitor connection sees all traffic)');
    }
    // sd-bus's spelling: one digit, or two without a leading zero
    const arg = /^arg([0-9]|[1-9][0-9])(path|namespace)?$/.exec(key);
    const n = arg ? Number(arg[1]) : NaN;
    if (!arg || n > MAX_MATCH_ARGUMENT) return refuse(`match rule: unknown key ${JSON.stringify(key)}`);
    const kind = arg[2];
    (kind === 'path' ? rule.argPaths : kind === 'namespace' ? rule.argNamespaces : rule.args).set(n, value);
  }
  if (rule.path !== undefined && rule.pathNamespace !== undefined) {
    refuse('match rule: path and path_namespace exclude each other');
  }
  return rule;
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The text form of a rule (parseMatchRule reads it back to the same rule). */
export function formatMatchRule(rule: MatchRule): string {
  const parts: string[] = [];
  if (rule.type !== undefined) parts.push(`type=${quote(MESSAGE_TYPE_NAMES[rule.type])}`);
  const keyed: [string, string | undefined][] = [
    ['sender', rule.sender], ['interface', rule.interface], ['member', rule.member], ['path', rule.path],
    ['path_namespace', rule.pathNamespace], ['destination', rule.destination],
  ];
  for (const [key, value] of keyed) if (value !== undefined) parts.push(`${key}=${quote(value)}`);
  for (const [n, v] of rule.args) parts.push(`arg${n}=${quote(v)}`);
  for (const [n, v] of rule.argPaths) parts.push(`arg${n}path=${quote(v)}`);
  for (const [n, v] of rule.argNamespaces) parts.push(`arg${n}namespace=${quote(v)}`);
  return parts.join(',');
}

// ---------------------------------------------------------------- matching

function underNamespace(value: string, namespace: string, separator: string): boolean {
  return value === namespace || (value.startsWith(namespace) && value[namespace.length] === separator);
}

/** argNpath: equal, or one is a prefix of the other that ends in '/'. */
function pathRelated(value: string, pattern: string): boolean {
  return value === pattern
    || (pattern.endsWith('/') && value.startsWith(pattern))
    || (value.endsWith('/') && pattern.startsWith(value));
}

/**
 * Whether `m` satisfies every key of `rule` (D-Bus specification semantics).
 * `sender` and `destination` compare with the message's fields as given: the
 * receiver resolves well-known names to owners where it needs to.
 */
export function matchesMessage(rule: MatchRule, m: DBusMessage): boolean {
  if (rule.type !== undefined && rule.type !== m.type) return false;
  if (rule.sender !== undefined && rule.sender !== m.sender) return false;
  if (rule.destination !== undefined && rule.destination !== m.destination) return false;
  if (rule.interface !== undefined && rule.interface !== m.interface) return false;
  if (rule.member !== undefined && rule.member !== m.member) return false;
  if (rule.path !== undefined && rule.path !== m.path) return false;
  if (rule.pathNamespace !== undefined
      && (m.path === undefined || !(rule.pathNamespace === '/' || underNamespace(m.path, rule.pathNamespace, '/')))) {
    return false;
  }
  const sig = m.signature;
  // argument N's value when it is a string (and, for argNpath, an object path)
  const argument = (n: number, codes: string): string | undefined => {
    const value = m.body[n];
    return typeof value === 'string' && codes.includes(argumentCode(sig, n)) ? value : undefined;
  };
  for (const [n, v] of rule.args) if (argument(n, 's') !== v) return false;
  for (const [n, v] of rule.argPaths) {
    const value = argument(n, 'so');
    if (value === undefined || !pathRelated(value, v)) return false;
  }
  for (const [n, v] of rule.argNamespaces) {
    const value = argument(n, 's');
    if (value === undefined || !underNamespace(value, v, '.')) return false;
  }
  return true;
}

/** The type code of complete type n of a signature (only basic ones matter here). */
function argumentCode(signature: string, n: number): string {
  let i = 0;
  for (let k = 0; k < n; k++) i = skipType(signature, i);
  return signature[i] ?? '';
}

function skipType(s: string, i: number): number {
  const c = s[i];
  if (c === 'a') return skipType(s, i + 1);
  if (c !== '(' && c !== '{') return i + 1;
  const close = c === '(' ? ')' : '}';
  i++;
  while (s[i] !== close && i < s.length) i = skipType(s, i);
  return i + 1;
}

// ---------------------------------------------------------------- kdbus

/** A kernel notification a match must also ask for (KDBUS_ITEM_NAME_* / KDBUS_ITEM_ID_*). */
export type NotificationMatch =
  | {
    /** ITEM.NAME_ADD, ITEM.NAME_REMOVE or ITEM.NAME_CHANGE; payload struct kdbus_notify_name_change */
    itemType: typeof ITEM.NAME_ADD | typeof ITEM.NAME_REMOVE | typeof ITEM.NAME_CHANGE;
    /** old_id.id and new_id.id; KDBUS_MATCH_ID_ANY matches any */
    oldId: bigint;
    newId: bigint;
    /** the name, absent to match any name */
    name?: string;
  }
  | {
    /** ITEM.ID_ADD or ITEM.ID_REMOVE; payload struct kdbus_notify_id_change */
    itemType: typeof ITEM.ID_ADD | typeof ITEM.ID_REMOVE;
    /** id; KDBUS_MATCH_ID_ANY matches any */
    id: bigint;
  };

/**
 * What one D-Bus match rule becomes on kdbus. `rule` is one KDBUS_CMD_MATCH_ADD
 * whose items are, in sd-bus's order: KDBUS_ITEM_ID (senderId), then
 * KDBUS_ITEM_BLOOM_MASK (bloomMask), then KDBUS_ITEM_NAME (senderName), each
 * only when present; a rule with none of them matches every broadcast.
 * `notifications` are further MATCH_ADD commands under the same cookie, one
 * item each, for the kernel's name and id notifications, which stand for
 * org.freedesktop.DBus's NameOwnerChanged on kdbus.
 */
export interface KdbusMatch {
  rule: {
    /** KDBUS_ITEM_ID: the unique sender's id, from ":1.<id>" */
    senderId?: bigint;
    /** KDBUS_ITEM_BLOOM_MASK payload: bloom-size bytes */
    bloomMask?: Buffer;
    /** KDBUS_ITEM_NAME: a well-known sender name, NUL-terminated when encoded */
    senderName?: string;
  };
  notifications: NotificationMatch[];
}

const DBUS_SERVICE = 'org.freedesktop.DBus';

/** The kdbus matches sd-bus installed for `rule` on a bus with `bloom` parameters. */
export function kdbusMatch(rule: MatchRule, bloom: BloomParameters): KdbusMatch {
  const mask = new BloomFilter(bloom);
  let usesBloom = false;
  const add = (a: string, b: string): void => {
    mask.addPair(a, b);
    usesBloom = true;
  };
  const out: KdbusMatch = { rule: {}, notifications: [] };
  if (rule.sender !== undefined) {
    const id = uniqueNameId(rule.sender);
    if (id !== null) out.rule.senderId = id;
    else out.rule.senderName = rule.sender;
  }
  if (rule.type !== undefined) add('message-type', MESSAGE_TYPE_NAMES[rule.type]);
  if (rule.interface !== undefined) add('interface', rule.interface);
  if (rule.member !== undefined) add('member', rule.member);
  if (rule.path !== undefined) add('path', rule.path);
  if (rule.pathNamespace !== undefined && rule.pathNamespace !== '/') add('path-slash-prefix', rule.pathNamespace);
  for (const [n, v] of rule.args) add(`arg${n}`, v);
  for (const [n, v] of rule.argPaths) add(`arg${n}-slash-prefix`, v);
  for (const [n, v] of rule.argNamespaces) add(`arg${n}-dot-prefix`, v);
  // destination is not in the bloom: broadcasts carry none
  if (usesBloom) out.rule.bloomMask = mask.bytes;

  const mayMatchNameOwnerChanged = (rule.sender === undefined || rule.sender === DBUS_SERVICE)
    && (rule.type === undefined || rule.type === MessageType.SIGNAL)
    && (rule.interface === undefined || rule.interface === DBUS_SERVICE)
    && (rule.member === undefined || rule.member === 'NameOwnerChanged')
    && (rule.path === undefined || rule.path === '/org/freedesktop/DBus');
  if (mayMatchNameOwnerChanged) {
    out.notifications = nameOwnerChangedMatches(rule.args.get(0), rule.args.get(1), rule.args.get(2));
  }
  return out;
}

/**
 * add_name_change_match: NameOwnerChanged(name, old owner, new owner) comes as
 *   well-known, "", unique      NAME_ADD        unique, "", unique    ID_ADD
 *   well-known, unique, ""      NAME_REMOVE     unique, unique, ""    ID_REMOVE
 *   well-known, unique, unique  NAME_CHANGE
 * and a rule asks for those of its arguments' forms that can exist.
 */
function nameOwnerChangedMatches(name?: string, oldOwner?: string, newOwner?: string): NotificationMatch[] {
  let nameId = KDBUS_MATCH_ID_ANY;
  let nameIsUnique: boolean | undefined;
  if (name !== undefined) {
    const id = parseOrNull(name);
    if (id === undefined) return [];
    nameIsUnique = id !== null;
    if (id !== null) nameId = id;
  }
  // sd-bus skipped the notifications for an old owner it could not parse but
  // failed the whole match for such a new owner
  const owner = (value: string | undefined, strict: boolean): bigint | undefined => {
    if (value === undefined || value === '') return KDBUS_MATCH_ID_ANY;
    const id = strict ? uniqueNameId(value) : parseOrNull(value);
    // only a unique name can own a name, and it must be the name itself when that is unique
    if (id === undefined || id === null || (nameIsUnique && id !== nameId)) return undefined;
    return id;
  };
  const oldId = owner(oldOwner, false);
  if (oldId === undefined) return [];
  const newId = owner(newOwner, true);
  if (newId === undefined) return [];
  const added = oldOwner === undefined || oldOwner === '';
  const removed = newOwner === undefined || newOwner === '';
  const out: NotificationMatch[] = [];
  if (nameIsUnique !== true) {
    const base = { oldId, newId, ...(name !== undefined && { name }) };
    if (added) out.push({ itemType: ITEM.NAME_ADD, ...base });
    if (removed) out.push({ itemType: ITEM.NAME_REMOVE, ...base });
    out.push({ itemType: ITEM.NAME_CHANGE, ...base });
  }
  if (nameIsUnique !== false) {
    if (added) out.push({ itemType: ITEM.ID_ADD, id: nameId });
    if (removed) out.push({ itemType: ITEM.ID_REMOVE, id: nameId });
  }
  return out;
}

/** uniqueNameId, with undefined where sd-bus's parse failed (an argument no notification can carry). */
function parseOrNull(name: string): bigint | null | undefined {
  try {
    return uniqueNameId(name);
  } catch {
    return undefined;
  }
}
