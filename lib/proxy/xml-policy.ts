// dbus-daemon's XML policy (busconfig <policy> sections of allow/deny
// rules), the own/send/receive part that systemd-bus-proxyd applied, checked
// in the proxy for its clients. Sections apply in dbus-daemon's order
// (context="default", group=..., user=..., context="mandatory"), rules in file
// order; the last rule that matches decides. With a policy file the proxy is
// a system-style bus: owning names and sending are denied unless a rule
// allows them, receiving is allowed unless a rule denies it; replies to calls
// always pass (kdbus itself lets a reply through only to a waiting caller),
// and so do calls to org.freedesktop.DBus. Without a file nothing is checked
// (a session-style bus).
import { readFileSync } from 'node:fs';
import { XMLParser } from 'fast-xml-parser';
import type { DBusMessage } from '../client/dbus-message.js';
import { MESSAGE_TYPE_NAMES, MessageType } from '../client/dbus-message.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';

export interface PolicySubject { pid: number; uid: number; gid: number }

interface Rule {
  allow: boolean;
  attrs: Record<string, string>;
}

interface Section {
  kind: 'default' | 'mandatory' | 'user' | 'group';
  /** user or group: a name, a number or '*' */
  who?: string;
  rules: Rule[];
}

const ORDER = { default: 0, group: 1, user: 2, mandatory: 3 } as const;

const SEND_KEYS = ['send_destination', 'send_destination_prefix', 'send_interface', 'send_member', 'send_error', 'send_path', 'send_type'];
const RECEIVE_KEYS = ['receive_sender', 'receive_interface', 'receive_member', 'receive_error', 'receive_path', 'receive_type'];

function idsByName(file: string): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && /^\d+$/.test(f[2]!)) out.set(f[0]!, Number(f[2]));
    }
  } catch { /* no such file: only numbers and '*' match */ }
  return out;
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

export class XmlPolicy {
  private readonly sections: Section[];
  private readonly users = idsByName('/etc/passwd');
  private readonly groups = idsByName('/etc/group');

  private constructor(sections: Section[]) {
    this.sections = sections.sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
  }

  /** Reads a busconfig file; throws with the reason for one it cannot read. */
  static load(path: string): XmlPolicy {
    return XmlPolicy.parse(readFileSync(path, 'utf8'));
  }

  static parse(xml: string): XmlPolicy {
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
      else continue; // at_console and unknown contexts apply to nobody here
      for (const r of node.policy!) {
        const allow = 'allow' in r;
        if (!allow && !('deny' in r)) continue;
        section.rules.push({ allow, attrs: { ...(r[':@'] ?? {}) } });
      }
      sections.push(section);
    }
    return new XmlPolicy(sections);
  }

  private applies(s: Section, subject: PolicySubject, groups: () => number[]): boolean {
    if (s.kind === 'default' || s.kind === 'mandatory') return true;
    if (s.who === '*') return true;
    const id = /^\d+$/.test(s.who!) ? Number(s.who) : (s.kind === 'user' ? this.users : this.groups).get(s.who!);
    if (id === undefined) return false;
    return s.kind === 'user' ? id === subject.uid : groups().includes(id);
  }

  /** The last matching rule's verdict, or `fallback` when none matches. */
  private decide(subject: PolicySubject, matches: (r: Rule) => boolean, fallback: boolean): boolean {
    let verdict = fallback;
    let groups: number[] | undefined;
    const lazyGroups = (): number[] => (groups ??= groupsOf(subject));
    for (const s of this.sections) {
      if (!this.applies(s, subject, lazyGroups)) continue;
      for (const r of s.rules) if (matches(r)) verdict = r.allow;
    }
    return verdict;
  }

  /** null when `subject` may own `name`, else why not. */
  ownDenied(subject: PolicySubject, name: string): string | null {
    const ok = this.decide(subject, r => {
      const own = r.attrs.own;
      const prefix = r.attrs.own_prefix;
      if (own !== undefined) return own === '*' || own === name;
      if (prefix !== undefined) return name === prefix || name.startsWith(prefix + '.');
      return false;
    }, false);
    return ok ? null : `Connection (uid ${subject.uid}) is not allowed to own the service "${name}" due to security policies in the configuration file`;
  }

  /** null when `subject` may send `m` (its destination as the client named it). */
  sendDenied(subject: PolicySubject, m: DBusMessage): string | null {
    if (m.type === MessageType.METHOD_RETURN || m.type === MessageType.ERROR) return null;
    if (m.destination === DRIVER_NAME) return null;
    const ok = this.decide(subject, r => ruleMatches(r, SEND_KEYS, k => sendField(m, k)), false);
    if (ok) return null;
    return `Rejected send message, uid ${subject.uid}: type="${MESSAGE_TYPE_NAMES[m.type]}", interface="${m.interface ?? '(unset)'}", `
      + `member="${m.member ?? '(unset)'}", destination="${m.destination ?? '(unset)'}" (denied by the policy)`;
  }

  /** null when `subject` may receive `m` from a sender owning `senderNames`. */
  receiveDenied(subject: PolicySubject, m: DBusMessage, senderNames: string[]): string | null {
    if (m.type === MessageType.METHOD_RETURN || m.type === MessageType.ERROR) return null;
    const ok = this.decide(subject, r => ruleMatches(r, RECEIVE_KEYS, k => receiveField(m, k, senderNames)), true);
    return ok ? null : 'denied by the receive policy';
  }
}

/** A rule matches when it names at least one key of its kind and every such key matches. */
function ruleMatches(r: Rule, keys: string[], field: (key: string) => (value: string) => boolean): boolean {
  let any = false;
  for (const k of keys) {
    const v = r.attrs[k];
    if (v === undefined) continue;
    any = true;
    if (v !== '*' && !field(k)(v)) return false;
  }
  return any;
}

function sendField(m: DBusMessage, k: string): (v: string) => boolean {
  switch (k) {
    case 'send_destination': return v => m.destination === v;
    case 'send_destination_prefix': return v => m.destination !== undefined && (m.destination === v || m.destination.startsWith(v + '.'));
    case 'send_interface': return v => m.interface === v;
    case 'send_member': return v => m.member === v;
    case 'send_error': return v => m.errorName === v;
    case 'send_path': return v => m.path === v;
    case 'send_type': return v => MESSAGE_TYPE_NAMES[m.type] === v;
    default: return () => false;
  }
}

function receiveField(m: DBusMessage, k: string, senderNames: string[]): (v: string) => boolean {
  switch (k) {
    case 'receive_sender': return v => m.sender === v || senderNames.includes(v);
    case 'receive_interface': return v => m.interface === v;
    case 'receive_member': return v => m.member === v;
    case 'receive_error': return v => m.errorName === v;
    case 'receive_path': return v => m.path === v;
    case 'receive_type': return v => MESSAGE_TYPE_NAMES[m.type] === v;
    default: return () => false;
  }
}
