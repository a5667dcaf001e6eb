// The text `kdbusfs monitor` prints for each message, as busctl monitor of
// 2015 printed it (bus_message_dump with its header, bus_creds_dump terse):
// a header line, the addresses, the timestamps, the sender's credentials
// (with the unit, slice, session and owner its cgroup tells), then the body
// value by value. Messages that are no D-Bus message are shown
// as their kdbus header, items and a hex dump of the payload. Colour only
// when asked (a terminal).
import { KDBUS_SRC_ID_KERNEL } from '../abi/kdbus.js';
import { MESSAGE_TYPE_NAMES, MessageType, type DBusMessage } from '../client/dbus-message.js';
import type { Message } from '../client/message.js';
import type { Metadata } from '../client/metadata.js';
import { parseSignature, type DBusType } from '../client/signature.js';
import { Variant, type DBusValue } from '../client/variant.js';
import { capabilityNames } from './capabilities.js';
import { cgroupUnits } from './cgroup-units.js';
import { SYNTHETIC_SERIAL, type Observed } from './monitored-message.js';

interface Paint {
  highlight(s: string): string;
  red(s: string): string;
  green(s: string): string;
}

function paint(colour: boolean): Paint {
  const wrap = (code: string) => (colour ? (s: string) => `\x1b[${code}m${s}\x1b[0m` : (s: string) => s);
  return { highlight: wrap('1;39'), red: wrap('1;31'), green: wrap('1;32') };
}

const BULLET = '\u2023';
const INVALID_ID = 0xffff_ffff;

/** The whole text of one observed message, ending in an empty line. */
export function dumpObserved(o: Observed, colour = false, cgroupRoot = '/'): string {
  const p = paint(colour);
  return o.kind === 'dbus' ? dumpDBus(o.message, o.kmsg, p, cgroupRoot) : dumpKdbus(o.kmsg, o.payload, o.why, p, cgroupRoot);
}

function dumpDBus(m: DBusMessage, k: Message, p: Paint, root: string): string {
  const typeName = MESSAGE_TYPE_NAMES[m.type];
  const bullet = m.type === MessageType.ERROR ? p.red(BULLET) : m.type === MessageType.METHOD_RETURN ? p.green(BULLET)
    : m.type !== MessageType.SIGNAL ? p.highlight(BULLET) : BULLET;
  let out = `${bullet} Type=${p.highlight(typeName)}  Endian=l  Flags=${m.flags}  Version=2  Priority=${k.priority}`;
  out += m.cookie === SYNTHETIC_SERIAL ? ' Cookie=-1' : ` Cookie=${m.cookie}`;
  if (m.replyCookie) out += `  ReplyCookie=${m.replyCookie}`;
  out += '\n';
  const addresses: [string, string | undefined][] = [
    ['Sender', m.sender], ['Destination', m.destination], ['Path', m.path], ['Interface', m.interface], ['Member', m.member],
  ];
  const shown = addresses.filter(([, v]) => v !== undefined);
  for (const [key, v] of shown) out += `  ${key}=${p.highlight(v!)}`;
  if (shown.length) out += '\n';
  if (m.type === MessageType.ERROR) {
    const text = m.signature.startsWith('s') && typeof m.body[0] === 'string' ? `"${m.body[0]}"` : 'n/a';
    out += `  ErrorName=${p.red(m.errorName ?? 'n/a')}  ErrorMessage=${p.red(text)}\n`;
  }
  out += timestamps(k.metadata);
  out += creds(k.metadata, k.srcId === KDBUS_SRC_ID_KERNEL ? 'org.freedesktop.DBus' : m.sender, k.srcId === KDBUS_SRC_ID_KERNEL, root);
  out += `  MESSAGE "${m.signature}" {\n`;
  const types = parseSignature(m.signature);
  types.forEach((t, i) => { out += value(t, m.body[i]!, 1, p); });
  out += '  };\n\n';
  return out;
}

function timestamps(md: Metadata): string {
  const ts = md.timestamp;
  if (!ts) return '';
  const parts: string[] = [];
  if (ts.monotonicNs) parts.push(`Monotonic=${ts.monotonicNs / 1000n}`);
  if (ts.realtimeNs) parts.push(`Realtime=${ts.realtimeNs / 1000n}`);
  if (ts.seqnum) parts.push(`SequenceNumber=${ts.seqnum}`);
  return parts.length ? `  ${parts.join('  ')}\n` : '';
}

/**
 * bus_creds_dump, terse: groups of KEY=VALUE pairs, each group ending its
 * line where busctl ended it; what the cgroup path tells (lib/commands/cgroup-units.ts)
 * relative to root.
 */
function creds(md: Metadata, uniqueName: string | undefined, driver: boolean, root: string): string {
  let out = '';
  const derived = md.cgroup === undefined ? {} : cgroupUnits(md.cgroup, root);
  const kv = (key: string, v: string | number): void => { out += `  ${key}=${v}`; };
  const line = (any: boolean): void => { if (any) out += '\n'; };
  if (md.pids) {
    if (md.pids.pid > 0) kv('PID', md.pids.pid);
    if (md.pids.tid > 0) kv('TID', md.pids.tid);
    line(md.pids.pid > 0 || md.pids.tid > 0);
  }
  let ids = false;
  if (md.creds) {
    const c = md.creds;
    for (const [key, v] of [['UID', c.uid], ['EUID', c.euid], ['SUID', c.suid], ['FSUID', c.fsuid]] as const) {
      if (v !== INVALID_ID) { kv(key, v); ids = true; }
    }
  }
  if (derived.ownerUid !== undefined) { kv('OwnerUID', derived.ownerUid); ids = true; }
  if (md.creds) {
    const c = md.creds;
    for (const [key, v] of [['GID', c.gid], ['EGID', c.egid], ['SGID', c.sgid], ['FSGID', c.fsgid]] as const) {
      if (v !== INVALID_ID) { kv(key, v); ids = true; }
    }
  }
  if (md.auxGroups) { kv('SupplementaryGIDs', md.auxGroups.join(' ')); ids = true; }
  line(ids);
  if (md.pidComm !== undefined) kv('Comm', md.pidComm);
  if (md.tidComm !== undefined) kv('TIDComm', md.tidComm);
  if (md.exe !== undefined) kv('Exe', md.exe);
  line(md.pidComm !== undefined || md.tidComm !== undefined || md.exe !== undefined);
  // busctl ended no line after the command line: what follows shares it
  if (md.cmdline) kv('CommandLine', md.cmdline.join(' '));
  if (md.seclabel !== undefined) kv('Label', md.seclabel);
  if (md.description !== undefined) kv('Description', md.description);
  line(md.seclabel !== undefined || md.description !== undefined);
  if (md.cgroup !== undefined) kv('CGroup', md.cgroup);
  if (derived.unit !== undefined) kv('Unit', derived.unit);
  if (derived.userUnit !== undefined) kv('UserUnit', derived.userUnit);
  if (derived.slice !== undefined) kv('Slice', derived.slice);
  if (derived.session !== undefined) kv('Session', derived.session);
  line(md.cgroup !== undefined);
  if (md.audit) {
    const login = md.audit.loginUid !== INVALID_ID;
    const session = md.audit.sessionId !== INVALID_ID;
    if (login) kv('AuditLoginUID', md.audit.loginUid);
    if (session) kv('AuditSessionID', md.audit.sessionId);
    line(login || session);
  }
  if (uniqueName !== undefined) kv('UniqueName', uniqueName);
  const names = driver ? ['org.freedesktop.DBus'] : uniqueName !== undefined ? md.ownedNames?.map((n) => n.name) ?? [] : undefined;
  if (names) kv('WellKnownNames', names.join(' '));
  line(uniqueName !== undefined || names !== undefined);
  if (md.caps) {
    out += capabilities('EffectiveCapabilities', md.caps.effective, md.caps.lastCap);
    out += capabilities('PermittedCapabilities', md.caps.permitted, md.caps.lastCap);
    out += capabilities('InheritableCapabilities', md.caps.inheritable, md.caps.lastCap);
    out += capabilities('BoundingCapabilities', md.caps.bounding, md.caps.lastCap);
  }
  return out;
}

function capabilities(key: string, set: bigint, lastCap: number): string {
  let out = `  ${key}=`;
  capabilityNames(set, lastCap).forEach((name, n) => {
    if (n > 0) out += ' ';
    if (n % 4 === 3) out += '\n          ';
    out += name;
  });
  return `${out}\n`;
}

function indent(level: number): string {
  return `  ${' '.repeat(level * 8)}`;
}

/** One value of type t at nesting level, as bus_message_dump printed it. */
function value(t: DBusType, v: DBusValue, level: number, p: Paint): string {
  const pre = indent(level);
  switch (t.kind) {
    case 'basic': return `${pre}${basic(t.code, v, p)};\n`;
    case 'variant': {
      const inner = v as Variant;
      return `${pre}VARIANT "${inner.signature}" {\n${value(inner.type, inner.value, level + 1, p)}${pre}};\n`;
    }
    case 'struct': {
      const fields = v as DBusValue[];
      const body = t.fields.map((f, i) => value(f, fields[i]!, level + 1, p)).join('');
      return `${pre}STRUCT "${t.signature.slice(1, -1)}" {\n${body}${pre}};\n`;
    }
    case 'dict-entry': {
      const [key, val] = v as [DBusValue, DBusValue];
      return `${pre}DICT_ENTRY "${t.signature.slice(1, -1)}" {\n${value(t.key, key, level + 1, p)}${value(t.value, val, level + 1, p)}${pre}};\n`;
    }
    case 'array': {
      const e = t.element;
      let body = '';
      if (v instanceof Map) {
        for (const entry of v) body += value(e, entry as DBusValue, level + 1, p);
      } else {
        for (const item of v as Iterable<DBusValue>) body += value(e, item, level + 1, p);
      }
      return `${pre}ARRAY "${e.signature}" {\n${body}${pre}};\n`;
    }
  }
}

const BASIC_NAMES: Record<string, string> = {
  y: 'BYTE', b: 'BOOLEAN', n: 'INT16', q: 'UINT16', i: 'INT32', u: 'UINT32', x: 'INT64', t: 'UINT64', d: 'DOUBLE',
  s: 'STRING', o: 'OBJECT_PATH', g: 'SIGNATURE', h: 'UNIX_FD',
};

function basic(code: string, v: DBusValue, p: Paint): string {
  const name = BASIC_NAMES[code]!;
  if (code === 's' || code === 'o' || code === 'g') return `${name} "${p.highlight(String(v))}"`;
  if (code === 'd') return `${name} ${p.highlight(formatDouble(v as number))}`;
  return `${name} ${p.highlight(String(v))}`;
}

/** printf's %g: six significant digits, exponent form outside 1e-4..1e6. */
function formatDouble(d: number): string {
  if (!Number.isFinite(d)) return Number.isNaN(d) ? 'nan' : d > 0 ? 'inf' : '-inf';
  if (d === 0) return Object.is(d, -0) ? '-0' : '0';
  const exp = Math.floor(Math.log10(Math.abs(d)));
  if (exp < -4 || exp >= 6) {
    const [mant, e] = d.toExponential(5).split('e');
    const m = mant!.includes('.') ? mant!.replace(/\.?0+$/, '') : mant!;
    const n = Number(e);
    return `${m}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  const s = d.toPrecision(6);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

// ---------------------------------------------------------------- kdbus

const NOTIFICATION_NAMES: Record<string, string> = {
  'id-add': 'ID_ADD', 'id-remove': 'ID_REMOVE', 'name-add': 'NAME_ADD', 'name-remove': 'NAME_REMOVE',
  'name-change': 'NAME_CHANGE', 'reply-timeout': 'REPLY_TIMEOUT', 'reply-dead': 'REPLY_DEAD',
};

const hexId = (v: bigint): string => `0x${v.toString(16)}`;

function dumpKdbus(k: Message, payload: Buffer, why: string, p: Paint, root: string): string {
  const kernel = k.srcId === KDBUS_SRC_ID_KERNEL;
  let out = `${BULLET} Type=${p.highlight(kernel ? 'kernel' : 'kdbus')}  PayloadType=${hexId(k.payloadType)}`
    + `  Flags=${hexId(k.flags)}  Priority=${k.priority} Cookie=${k.cookie}`;
  if (k.cookieReply) out += `  ReplyCookie=${k.cookieReply}`;
  out += '\n';
  out += `  SrcId=${kernel ? 'kernel' : k.srcId}  DstId=${k.dstId === 0xffff_ffff_ffff_ffffn ? 'broadcast' : k.dstId}`;
  if (k.dstName !== undefined) out += `  DstName=${p.highlight(k.dstName)}`;
  out += `\n  Why=${why}\n`;
  out += timestamps(k.metadata);
  out += creds(k.metadata, kernel ? undefined : `:1.${k.srcId}`, false, root);
  const n = k.notification;
  if (n) {
    out += `  ITEM ${NOTIFICATION_NAMES[n.type]} {\n`;
    const fields = Object.entries(n).filter(([key]) => key !== 'type');
    for (const [key, v] of fields) out += `${indent(1)}${key}=${typeof v === 'bigint' && key.endsWith('Flags') ? hexId(v) : v};\n`;
    out += '  };\n';
  }
  if (k.fds.length) out += `  ITEM FDS ${k.fds.length};\n`;
  if (k.memfds.length) out += `  ITEM PAYLOAD_MEMFD ${k.memfds.map((m) => m.size).join(' ')};\n`;
  out += `  PAYLOAD ${payload.length} bytes {\n${hexDump(payload, indent(1))}  };\n\n`;
  return out;
}

/** 16 bytes a line: offset, hex, printable ASCII. */
export function hexDump(b: Buffer, prefix: string): string {
  let out = '';
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const text = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    out += `${prefix}${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  |${text}|\n`;
  }
  return out;
}
