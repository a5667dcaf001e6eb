// What a sender's cgroup path tells of it under systemd: its unit, user unit,
// slice, login session and the uid owning its user slice, derived as sd-bus
// of 2015 derived them (sd_bus_creds_get_unit and friends over cgroup-util)
// from a message's KDBUS_ITEM_CGROUP, for the Unit=, UserUnit=, Slice=,
// Session= and OwnerUID= lines busctl monitor printed. Pure string work on
// the path; the root the path is taken relative to is systemd's (PID 1's
// cgroup less /system.slice), read once by cgroupRoot().
import { readFileSync } from 'node:fs';

export interface CgroupUnits {
  unit?: string;
  userUnit?: string;
  slice?: string;
  session?: string;
  ownerUid?: number;
}

const UNIT_TYPES = new Set(['service', 'socket', 'busname', 'target', 'snapshot', 'device', 'mount', 'automount',
  'swap', 'timer', 'path', 'slice', 'scope']);
/** unit names shorter than this (UNIT_NAME_MAX) */
const UNIT_NAME_MAX = 256;
const UNIT_CHARS = /^[A-Za-z0-9:\-_.\\@]*$/;

/**
 * The cgroup root sd-bus took paths relative to: PID 1's path in systemd's
 * hierarchy (name=systemd; on a host with only the unified hierarchy, its
 * "0::" path), less a trailing /system.slice; "/" when none can be read.
 */
export function cgroupRoot(proc1Cgroup?: string): string {
  let text = proc1Cgroup;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/1/cgroup', 'utf8');
    } catch {
      return '/';
    }
  }
  let named: string | null = null;
  let unified: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[2]!.split(',').includes('name=systemd')) named = m[3]!;
    else if (m[1] === '0' && m[2] === '') unified = m[3]!;
  }
  const path = named ?? unified;
  if (path === null) return '/';
  return path.endsWith('/system.slice') ? path.slice(0, -'/system.slice'.length) : path;
}

/** The path's components, empty ones dropped ("//a/b/" -> a, b). */
function components(path: string): string[] {
  return path.split('/').filter((c) => c !== '');
}

/** path relative to root when it lies below it (component-wise), else path itself. */
function shift(path: string, root: string): string[] {
  if (path.startsWith('/') !== root.startsWith('/')) return components(path);
  const p = components(path);
  const r = components(root);
  if (r.length > p.length || r.some((c, i) => p[i] !== c)) return p;
  return p.slice(r.length);
}

/** A slice component: NAME.slice with NAME not empty. */
const isSlice = (c: string): boolean => c.length > 6 && c.endsWith('.slice');

/** Index of the first component after the leading slices. */
function afterSlices(c: string[], from = 0): number {
  let i = from;
  while (i < c.length && isSlice(c[i]!)) i++;
  return i;
}

/** A cgroup name escaped for systemd ("_" before a name that would clash): its plain form. */
const unescape = (c: string): string => (c.startsWith('_') ? c.slice(1) : c);

/** A valid unit name that is no template (prefix[@instance].type). */
function isUnitName(n: string): boolean {
  if (n === '' || n.length >= UNIT_NAME_MAX) return false;
  const dot = n.lastIndexOf('.');
  if (dot <= 0 || !UNIT_TYPES.has(n.slice(dot + 1))) return false;
  const stem = n.slice(0, dot);
  if (!UNIT_CHARS.test(stem)) return false;
  const at = stem.indexOf('@');
  return at !== 0 && at !== stem.length - 1;
}

function unitAt(c: string[], i: number): string | undefined {
  const name = c[i] === undefined ? '' : unescape(c[i]!);
  return isUnitName(name) ? name : undefined;
}

/** strtoull(s, 0) as parse_uid took it: decimal, 0x hex or 0 octal; no -1 and no 16-bit -1. */
function parseUid(s: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const v = Number(BigInt(m[1]!.length > 1 && m[1]![0] === '0' && !/^0[xX]/.test(m[1]!) ? `0o${m[1]!.slice(1)}` : m[1]!));
  return v > 0xffff_fffe || v === 0xffff ? undefined : v;
}

/** Unit, user unit, slice, session and owner uid of the cgroup at path (those it has). */
export function cgroupUnits(path: string, root = '/'): CgroupUnits {
  const c = shift(path, root);
  const out: CgroupUnits = {};
  const first = afterSlices(c);
  const unit = unitAt(c, first);
  if (unit) out.unit = unit;
  // below a session scope or a user manager, after more slices
  const owner = c[first];
  if (owner !== undefined && ((owner.length >= 15 && owner.startsWith('session-') && owner.endsWith('.scope'))
    || (owner.length >= 14 && owner.startsWith('user@') && owner.endsWith('.service')))) {
    const userUnit = unitAt(c, afterSlices(c, first + 1));
    if (userUnit) out.userUnit = userUnit;
  }
  if (first > 0) out.slice = c[first - 1]!;
  const s = owner === undefined ? '' : unescape(owner);
  if (s.startsWith('session-') && s.endsWith('.scope') && s.length > 'session-.scope'.length) {
    out.session = s.slice('session-'.length, -'.scope'.length);
  }
  if (out.slice?.startsWith('user-')) {
    const uid = parseUid(out.slice.slice('user-'.length, -'.slice'.length));
    if (uid !== undefined) out.ownerUid = uid;
  }
  return out;
}
