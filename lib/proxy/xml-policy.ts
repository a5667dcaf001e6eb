// dbus-daemon's XML policy (busconfig <policy> sections of allow/deny
// rules), the own/send/receive part that systemd-bus-proxyd applied, checked
// in the proxy for its clients. Sections apply in dbus-daemon's order
// (context="default", group=..., user=..., at_console="true", at_console=
// "false", context="mandatory"), rules in file order; the last rule that
// matches decides. With a policy file the proxy is a system-style bus:
// owning names and sending are denied unless a rule allows them, receiving
// is allowed unless a rule denies it; calls to org.freedesktop.DBus always
// pass. Replies pass unless a deny rule with send_/receive_requested_reply=
// "true" matches: kdbus delivers a reply only to a caller waiting for it, so
// every reply here is a requested one, which dbus-daemon's deny rules skip
// unless they say requested_reply="true". No client of the proxy eavesdrops
// (kdbus gives ordinary connections only their own unicasts; monitors pass
// no policy, as in dbus-daemon), so deny rules with eavesdrop="true" never
// match. Who may connect at all is dbus-daemon's bus_policy_allow_unix_user
// (connectDenied). Without a file nothing is checked (a session-style bus).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import type { DBusMessage } from '../client/dbus-message.js';
import { MESSAGE_TYPE_NAMES, MessageType } from '../client/dbus-message.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';

export interface PolicySubject { pid: number; uid: number; gid: number }

export type RuleKind = 'own' | 'send' | 'receive' | 'connect';

export interface Rule {
  allow: boolean;
  kind: RuleKind;
  attrs: Record<string, string>;
}

export interface Section {
  kind: 'default' | 'group' | 'user' | 'console' | 'mandatory';
  /** user or group: a name, a number or '*'; console: 'true' or 'false' (at_console) */
  who?: string;
  rules: Rule[];
}

const ORDER = { default: 0, group: 1, user: 2, console: 3, mandatory: 5 } as const;
const rank = (s: Section): number => ORDER[s.kind] + (s.kind === 'console' && s.who === 'false' ? 1 : 0);

export const SEND_KEYS = ['send_destination', 'send_destination_prefix', 'send_interface', 'send_member', 'send_error', 'send_path', 'send_type'];
const RECEIVE_KEYS = ['receive_sender', 'receive_interface', 'receive_member', 'receive_error', 'receive_path', 'receive_type'];
const BOOLEAN_KEYS = ['send_requested_reply', 'receive_requested_reply', 'eavesdrop'];
const OWN_KEYS = ['own', 'own_prefix'];
/** user=/group= in a rule: who may connect (connectDenied) */
const CONNECT_KEYS = ['user', 'group'];
/** log="true" only asks dbus-daemon to log a denial */
const IGNORED_KEYS = ['log'];

/** name:id pairs of /etc/passwd or /etc/group; for groups also their members. */
function idTable(file: string): { ids: Map<string, number>; members: Map<number, string[]> } {
  const ids = new Map<string, number>();
  const members = new Map<number, string[]>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && /^\d+$/.test(f[2]!)) {
        ids.set(f[0]!, Number(f[2]));
        if (f[3]) members.set(Number(f[2]), f[3].split(',').filter(Boolean));
      }
    }
  } catch { /* no such file: only numbers and '*' match */ }
  return { ids, members };
}

function groupsOf(s: PolicySubject): number[] {
  try {
    const m = /^Groups:\s*([\d ]*)$/m.exec(readFileSync(`/proc/${s.pid}/status`, 'utf8'));
    const aux = m ? m[1]!.trim().split(/\s+/).filter(Boolean).map(Number) : [];
    return [s.gid, ...aux];
  } catch {
    return [s.gid];
  }
}

/**
 * dbus-daemon's "is this user at the console": with systemd-logind, whether
 * the user has a seat (sd_uid_get_seats: ONLINE_SEATS, SEATS in older
 * logind, of /run/systemd/users/UID); without it, pam_console's
 * /var/run/console/USER.
 */
export function userAtConsole(uid: number, userName: string | undefined): boolean {
  if (existsSync('/run/systemd/seats')) {
    try {
      return /^(ONLINE_SEATS|SEATS)=\S/m.test(readFileSync(`/run/systemd/users/${uid}`, 'utf8'));
    } catch {
      return false; // not logged in
    }
  }
  return userName !== undefined && existsSync(`/var/run/console/${userName}`);
}

function unsupported(element: string, attrs: Record<string, string>, why: string): Error {
  const shown = Object.entries(attrs).map(([k, v]) => `${k}="${v}"`).join(' ');
  return new Error(`<${element} ${shown}>: ${why}`);
}

/** A rule's kind from its attributes, or an error naming what the proxy cannot apply. */
function ruleKind(element: string, attrs: Record<string, string>): RuleKind {
  const has = (keys: string[]): boolean => keys.some(k => attrs[k] !== undefined);
  for (const k of Object.keys(attrs)) {
    if (![...SEND_KEYS, ...RECEIVE_KEYS, ...BOOLEAN_KEYS, ...OWN_KEYS, ...CONNECT_KEYS, ...IGNORED_KEYS].includes(k)) {
      throw unsupported(element, attrs, `the attribute ${k} is not supported by kdbusfs proxy`);
    }
  }
  for (const k of BOOLEAN_KEYS) {
    if (attrs[k] !== undefined && attrs[k] !== 'true' && attrs[k] !== 'false') throw unsupported(element, attrs, `${k} must be "true" or "false"`);
  }
  if (attrs.send_destination !== undefined && attrs.send_destination_prefix !== undefined) {
    throw unsupported(element, attrs, 'send_destination and send_destination_prefix in one rule');
  }
  const send = has(SEND_KEYS) || attrs.send_requested_reply !== undefined;
  const receive = has(RECEIVE_KEYS) || attrs.receive_requested_reply !== undefined;
  const own = has(OWN_KEYS);
  const connect = has(CONNECT_KEYS);
  if ([send, receive, own, connect].filter(Boolean).length > 1) throw unsupported(element, attrs, 'send_, receive_, own and user/group attributes mixed in one rule');
  if (attrs.user !== undefined && attrs.group !== undefined) throw unsupported(element, attrs, 'user and group in one rule');
  if (send) return 'send';
  if ((own || connect) && attrs.eavesdrop !== undefined) throw unsupported(element, attrs, 'eavesdrop only goes with send_ and receive_ attributes');
  if (own) return 'own';
  if (connect) return 'connect';
  // eavesdrop alone makes a receive rule matching everything, as in dbus-daemon (session.conf's <allow eavesdrop="true"/>)
  if (receive || attrs.eavesdrop !== undefined) return 'receive';
  throw unsupported(element, attrs, 'a rule without own, send_ or receive_ attributes');
}

export interface XmlPolicyOptions {
  /** whether a uid is at the console (at_console sections); default userAtConsole */
  atConsole?: (uid: number) => boolean;
  /** where the user database's passwd and group files are; default /etc */
  etc?: string;
}

export class XmlPolicy {
  readonly sections: Section[];
  private readonly passwd: string;
  private readonly users: ReturnType<typeof idTable>;
  private readonly groups: ReturnType<typeof idTable>;
  private readonly atConsole: (uid: number) => boolean;
  /** a subject's groups and whether it is at the console, taken once per client as dbus-daemon does at connect time */
  private readonly known = new WeakMap<PolicySubject, { groups?: number[]; atConsole?: boolean }>();

  private constructor(sections: Section[], opts: XmlPolicyOptions) {
    // a stable sort: sections of one rank keep the file's order
    this.sections = sections.sort((a, b) => rank(a) - rank(b));
    this.passwd = join(opts.etc ?? '/etc', 'passwd');
    this.users = idTable(this.passwd);
    this.groups = idTable(join(opts.etc ?? '/etc', 'group'));
    this.atConsole = opts.atConsole ?? (uid => userAtConsole(uid, [...this.users.ids].find(([, id]) => id === uid)?.[0]));
  }

  /** Reads a busconfig file; throws with the reason for one it cannot read or apply. */
  static load(path: string, opts: XmlPolicyOptions = {}): XmlPolicy {
    return XmlPolicy.parse(readFileSync(path, 'utf8'), opts);
  }

  static parse(xml: string, opts: XmlPolicyOptions = {}): XmlPolicy {
    const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', preserveOrder: true, processEntities: false });
    type Node = Record<string, Node[]> & { ':@'?: Record<string, string> };
    const doc = parser.parse(xml) as Node[];
    const root = doc.find(n => 'busconfig' in n);
    if (!root) throw new Error('not a busconfig file (no <busconfig> element)');
    const sections: Section[] = [];
    for (const node of root.busconfig!) {
      if (!('policy' in node)) continue;
      const a = node[':@'] ?? {};
      let section: Section;
      if (a.context === 'default' || a.context === 'mandatory') section = { kind: a.context, rules: [] };
      else if (a.user !== undefined) section = { kind: 'user', who: a.user, rules: [] };
      else if (a.group !== undefined) section = { kind: 'group', who: a.group, rules: [] };
      else if (a.at_console === 'true' || a.at_console === 'false') section = { kind: 'console', who: a.at_console, rules: [] };
      else throw unsupported('policy', a, 'a policy needs context="default|mandatory", user=, group= or at_console="true|false"');
      for (const r of node.policy!) {
        const allow = 'allow' in r;
        if (!allow && !('deny' in r)) continue;
        const attrs = { ...(r[':@'] ?? {}) };
        const kind = ruleKind(allow ? 'allow' : 'deny', attrs);
        // as dbus-daemon's config parser: connecting is bus-global, not a per-user or per-group matter
        // (in at_console sections it takes them and never looks at them again: they are kept and unused here too)
        if (kind === 'connect' && (section.kind === 'user' || section.kind === 'group')) {
          throw unsupported(allow ? 'allow' : 'deny', attrs, `a connection rule cannot be per-${section.kind} (it has bus-global semantics)`);
        }
        section.rules.push({ allow, kind, attrs });
      }
      sections.push(section);
    }
    return new XmlPolicy(sections, opts);
  }

  /** A user or group section's id, undefined for '*' or an unknown name. */
  idOf(s: Section): number | undefined {
    if (s.who === undefined || s.who === '*') return undefined;
    if (/^\d+$/.test(s.who)) return Number(s.who);
    return (s.kind === 'user' ? this.users : this.groups).ids.get(s.who);
  }

  /** The gids /etc gives a uid: its primary group and those listing it as a member. */
  groupsOfUser(uid: number): number[] {
    const name = [...this.users.ids].find(([, id]) => id === uid)?.[0];
    const out: number[] = [];
    try {
      for (const line of readFileSync(this.passwd, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f[2] === String(uid) && /^\d+$/.test(f[3] ?? '')) out.push(Number(f[3]));
      }
    } catch { /* no passwd */ }
    if (name !== undefined) for (const [gid, members] of this.groups.members) if (members.includes(name)) out.push(gid);
    return out;
  }

  /**
   * null when uid may connect, else why not: dbus-daemon's
   * bus_policy_allow_unix_user. A uid the user database does not know is
   * refused (its groups cannot be had); otherwise the bus's owner may
   * connect and nobody else, then every user=/group= rule of the default
   * sections and then of the mandatory ones, in file order, sets the
   * verdict when it matches: user="*" and group="*" match everyone, a user
   * the uid, a group one of the uid's groups in the user database (as
   * dbus-daemon's getgrouplist, not the process's groups); a name or number
   * the database does not know matches nobody (dbus-daemon drops the rule).
   */
  connectDenied(uid: number, busOwner: number): string | null {
    if (![...this.users.ids.values()].includes(uid)) return `uid ${uid} is not in the user database`;
    const groups = this.groupsOfUser(uid);
    let allowed = uid === busOwner;
    for (const kind of ['default', 'mandatory'] as const) {
      for (const s of this.sections) {
        if (s.kind !== kind) continue;
        for (const r of s.rules) if (r.kind === 'connect' && this.connectMatches(r, uid, groups)) allowed = r.allow;
      }
    }
    return allowed ? null : `uid ${uid} may not connect (the policy's user/group rules; the bus's owner is uid ${busOwner})`;
  }

  private connectMatches(r: Rule, uid: number, groups: number[]): boolean {
    const user = r.attrs.user;
    const who = user ?? r.attrs.group!;
    if (who === '*') return true;
    const table = user !== undefined ? this.users : this.groups;
    const id = /^\d+$/.test(who) ? Number(who) : table.ids.get(who);
    if (id === undefined || ![...table.ids.values()].includes(id)) return false;
    return user !== undefined ? id === uid : groups.includes(id);
  }

  private factsOf(subject: PolicySubject): { groups?: number[]; atConsole?: boolean } {
    let f = this.known.get(subject);
    if (!f) this.known.set(subject, f = {});
    return f;
  }

  private consoleOf(subject: PolicySubject): boolean {
    const f = this.factsOf(subject);
    return (f.atConsole ??= this.atConsole(subject.uid));
  }

  private applies(s: Section, subject: PolicySubject, groups: () => number[]): boolean {
    if (s.kind === 'default' || s.kind === 'mandatory') return true;
    if (s.kind === 'console') return this.consoleOf(subject) === (s.who === 'true');
    if (s.who === '*') return true;
    const id = this.idOf(s);
    if (id === undefined) return false;
    return s.kind === 'user' ? id === subject.uid : groups().includes(id);
  }

  /** The last matching rule's verdict, or `fallback` when none matches. */
  private decide(subject: PolicySubject, matches: (r: Rule) => boolean, fallback: boolean): boolean {
    let verdict = fallback;
    const lazyGroups = (): number[] => (this.factsOf(subject).groups ??= groupsOf(subject));
    for (const s of this.sections) {
      if (!this.applies(s, subject, lazyGroups)) continue;
      for (const r of s.rules) if (matches(r)) verdict = r.allow;
    }
    return verdict;
  }

  /** null when `subject` may own `name`, else why not. */
  ownDenied(subject: PolicySubject, name: string): string | null {
    const ok = this.decide(subject, r => r.kind === 'own' && ownMatches(r, name), false);
    return ok ? null : `Connection (uid ${subject.uid}) is not allowed to own the service "${name}" due to security policies in the configuration file`;
  }

  /** null when `subject` may send `m` (its destination as the client named it). */
  sendDenied(subject: PolicySubject, m: DBusMessage): string | null {
    if (m.destination === DRIVER_NAME) return null;
    const ok = this.decide(subject, r => r.kind === 'send' && appliesTo(r, m, 'send_requested_reply')
      && ruleMatches(r, SEND_KEYS, k => sendField(m, k)), isReply(m));
    if (ok) return null;
    return `Rejected send message, uid ${subject.uid}: type="${MESSAGE_TYPE_NAMES[m.type]}", interface="${m.interface ?? '(unset)'}", `
      + `member="${m.member ?? '(unset)'}", destination="${m.destination ?? '(unset)'}" (denied by the policy)`;
  }

  /** null when `subject` may receive `m` from a sender owning `senderNames`. */
  receiveDenied(subject: PolicySubject, m: DBusMessage, senderNames: string[]): string | null {
    const ok = this.decide(subject, r => r.kind === 'receive' && appliesTo(r, m, 'receive_requested_reply')
      && ruleMatches(r, RECEIVE_KEYS, k => receiveField(m, k, senderNames)), true);
    return ok ? null : 'denied by the receive policy';
  }
}

function isReply(m: DBusMessage): boolean {
  return m.type === MessageType.METHOD_RETURN || m.type === MessageType.ERROR;
}

/**
 * Whether a send or receive rule takes part for `m` at all, by dbus-daemon's
 * eavesdrop and requested_reply semantics, for a message that is never
 * eavesdropped and a reply that is always requested (see the file's head):
 * a deny with eavesdrop="true" matches only eavesdropping; a deny of a reply
 * matches a requested one only with requested_reply="true". Allow rules
 * take part whatever their attributes say.
 */
function appliesTo(r: Rule, m: DBusMessage, requestedKey: string): boolean {
  if (r.allow) return true;
  if (r.attrs.eavesdrop === 'true') return false;
  return !isReply(m) || r.attrs[requestedKey] === 'true';
}

/** Does an own rule name `name` (own="*", own="name", or own_prefix of it)? */
export function ownMatches(r: Rule, name: string): boolean {
  const own = r.attrs.own;
  const prefix = r.attrs.own_prefix;
  if (own !== undefined) return own === '*' || own === name;
  if (prefix !== undefined) return name === prefix || name.startsWith(prefix + '.');
  return false;
}

/** Every key of its kind the rule names must match (a rule naming none matches everything). */
function ruleMatches(r: Rule, keys: string[], field: (key: string) => (value: string) => boolean): boolean {
  for (const k of keys) {
    const v = r.attrs[k];
    if (v === undefined) continue;
    if (v !== '*' && !field(k)(v)) return false;
  }
  return true;
}

/** What a send_X or receive_X attribute compares, for the X both kinds of rule have. */
const MESSAGE_FIELDS = new Map<string, (m: DBusMessage, v: string) => boolean>([
  ['interface', (m, v) => m.interface === v],
  ['member', (m, v) => m.member === v],
  ['error', (m, v) => m.errorName === v],
  ['path', (m, v) => m.path === v],
  ['type', (m, v) => MESSAGE_TYPE_NAMES[m.type] === v],
]);

function messageField(m: DBusMessage, k: string, kind: 'send_' | 'receive_'): (v: string) => boolean {
  const test = k.startsWith(kind) ? MESSAGE_FIELDS.get(k.slice(kind.length)) : undefined;
  return test ? v => test(m, v) : () => false;
}

function sendField(m: DBusMessage, k: string): (v: string) => boolean {
  if (k === 'send_destination') return v => m.destination === v;
  if (k === 'send_destination_prefix') return v => m.destination !== undefined && (m.destination === v || m.destination.startsWith(v + '.'));
  return messageField(m, k, 'send_');
}

function receiveField(m: DBusMessage, k: string, senderNames: string[]): (v: string) => boolean {
  if (k === 'receive_sender') return v => m.sender === v || senderNames.includes(v);
  return messageField(m, k, 'receive_');
}
