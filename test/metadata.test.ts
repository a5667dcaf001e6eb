// Metadata collection from /proc and export as kdbus items (lib/core/metadata.ts).
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { userInfo } from 'node:os';
import { ATTACH, ATTACH_ALL, ITEM, NAME_IN_QUEUE, NAME_ALLOW_REPLACEMENT, align8 } from '../lib/abi/kdbus.js';
import { moduleParams, DEFAULT_ATTACH_FLAGS_MASK } from '../lib/core/module.js';
import { KdbusError } from '../lib/core/errors.js';
import { waitFor } from './helpers.js';
import { ProcMeta, exportMeta, timestampNow, PROC_ATTACH, type ConnMeta } from '../lib/core/metadata.js';
import { TaskView } from '../lib/core/namespaces.js';

interface Item { type: number; size: number; off: number; data: Buffer }

/** Walks an item list; checks 8-alignment and zeroed padding on the way. */
function parseItems(t: Test, buf: Buffer): Item[] {
  const items: Item[] = [];
  let off = 0;
  while (off < buf.length) {
    t.equal(off % 8, 0, 'item starts 8-aligned');
    const size = Number(buf.readBigUInt64LE(off));
    const type = Number(buf.readBigUInt64LE(off + 8));
    t.ok(size >= 16 && off + align8(size) <= buf.length, `item ${type.toString(16)} size ${size} fits`);
    for (let i = off + size; i < off + align8(size); i++) {
      if (buf[i] !== 0) t.fail(`padding byte ${i} of item ${type.toString(16)} not zero`);
    }
    items.push({ type, size, off, data: buf.subarray(off + 16, off + size) });
    off += align8(size);
  }
  t.equal(off, buf.length, 'items fill the buffer exactly');
  return items;
}

/** A string item's payload; throws unless it is exactly one NUL-terminated string. */
const cstr = (b: Buffer): string => {
  if (b.length === 0 || b[b.length - 1] !== 0 || b.indexOf(0) !== b.length - 1) throw new Error('not a C string');
  return b.subarray(0, b.length - 1).toString('latin1');
};
const status = (pid: number | string): string => readFileSync(`/proc/${pid}/status`, 'latin1');
const field = (st: string, name: string): string => (new RegExp(`\\n${name}:[ \\t]*([^\\n]*)`).exec(st)?.[1] ?? '').trim();
const nums = (st: string, name: string): number[] => field(st, name).split(/\s+/).filter(Boolean).map(Number);
const argv0Of = (pid: number): string => readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0];
function cgroupOf(pid: number): string {
  let best = Infinity; let path = ''; let unified = '';
  for (const l of readFileSync(`/proc/${pid}/cgroup`, 'latin1').split('\n')) {
    const m = /^(\d+):[^:]*:(.*)$/.exec(l);
    if (!m) continue;
    if (m[1] === '0') unified = m[2];
    else if (Number(m[1]) < best) { best = Number(m[1]); path = m[2]; }
  }
  return best < Infinity ? path : unified;
}
let hasLsm = true;
try { readFileSync('/proc/self/attr/current'); } catch { hasLsm = false; }
const lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'latin1').trim());

const children: ChildProcess[] = [];
t.teardown(() => { for (const c of children) c.kill('SIGKILL'); });
function child(cmd: string, args: string[], opts: Parameters<typeof spawn>[2] = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: 'ignore', ...opts });
  children.push(c);
  return c;
}

/** Runs f with the module mask set to m, restoring it afterwards. */
function withMask<T>(m: bigint, f: () => T): T {
  const old = moduleParams.attachFlagsMask;
  moduleParams.attachFlagsMask = m;
  try { return f(); } finally { moduleParams.attachFlagsMask = old; }
}

const self = process.pid;

t.test('collect from the test process (tid = pid)', async (t) => {
  const mp = ProcMeta.collect(self, PROC_ATTACH);
  const st = status(self);
  const expectBits = PROC_ATTACH & ~(hasLsm ? 0n : ATTACH.SECLABEL) &
    ~(existsSync('/proc/self/loginuid') ? 0n : ATTACH.AUDIT);
  t.equal(mp.collected, expectBits, 'every item present (SECLABEL only with an LSM)');

  const items = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH_ALL, null)));
  const byType = new Map(items.map((i) => [i.type, i]));

  const creds = byType.get(ITEM.CREDS)!;
  t.equal(creds.size, 48, 'CREDS item: 16 + 8 × u32');
  const c = Array.from({ length: 8 }, (_, i) => creds.data.readUInt32LE(i * 4));
  const u = userInfo();
  t.same(c, [...nums(st, 'Uid'), ...nums(st, 'Gid')], 'CREDS = /proc status Uid/Gid');
  t.equal(c[0], u.uid); t.equal(c[0], process.getuid!()); t.equal(c[1], process.geteuid!());
  t.equal(c[4], u.gid); t.equal(c[4], process.getgid!()); t.equal(c[5], process.getegid!());

  const pids = byType.get(ITEM.PIDS)!;
  t.equal(pids.size, 40, 'PIDS item: 16 + 3 × u64');
  t.same([0, 8, 16].map((o) => Number(pids.data.readBigUInt64LE(o))), [self, self, process.ppid], 'PIDS = pid, tid, ppid');

  const aux = byType.get(ITEM.AUXGROUPS)!;
  const groups = nums(st, 'Groups');
  t.equal(aux.size, 16 + 4 * groups.length, 'AUXGROUPS: u32 per group (emitted even when empty)');
  t.same(Array.from({ length: groups.length }, (_, i) => aux.data.readUInt32LE(i * 4)), groups);
  t.same([...groups].sort((a, b) => a - b), [...process.getgroups!()].filter((g) => groups.includes(g)).sort((a, b) => a - b));

  const comm = readFileSync(`/proc/${self}/comm`, 'latin1').trim();
  t.equal(cstr(byType.get(ITEM.TID_COMM)!.data), readFileSync(`/proc/${self}/task/${self}/comm`, 'latin1').trim());
  t.equal(cstr(byType.get(ITEM.PID_COMM)!.data), comm);
  t.equal(cstr(byType.get(ITEM.EXE)!.data), readlinkSync(`/proc/${self}/exe`));
  t.equal(cstr(byType.get(ITEM.EXE)!.data), realpathSync(process.execPath));
  t.equal(cstr(byType.get(ITEM.CMDLINE)!.data), argv0Of(self), 'CMDLINE is argv[0] only');
  t.equal(cstr(byType.get(ITEM.CGROUP)!.data), cgroupOf(self), 'CGROUP: lowest hierarchy id');

  const caps = byType.get(ITEM.CAPS)!;
  t.equal(caps.size, 16 + 4 + 4 * 2 * 4, 'CAPS: last_cap + 4 sets × 2 u32 (v3 layout)');
  t.equal(caps.data.readUInt32LE(0), lastCap, 'last_cap = /proc/sys/kernel/cap_last_cap');
  const validMask = (1n << BigInt(lastCap + 1)) - 1n;
  ['CapInh', 'CapPrm', 'CapEff', 'CapBnd'].forEach((name, s) => {
    const v = BigInt(caps.data.readUInt32LE(4 + s * 8)) | (BigInt(caps.data.readUInt32LE(8 + s * 8)) << 32n);
    t.equal(v, BigInt('0x' + field(st, name)) & validMask, `${name}`);
  });

  t.equal(byType.has(ITEM.SECLABEL), hasLsm, 'SECLABEL only with an LSM');
  if (hasLsm) {
    t.equal(cstr(byType.get(ITEM.SECLABEL)!.data),
      readFileSync('/proc/self/attr/current', 'latin1').replace(/\0.*$/s, '').replace(/\n$/, ''));
  }
  const audit = byType.get(ITEM.AUDIT);
  if (existsSync('/proc/self/loginuid')) {
    t.equal(audit!.size, 24, 'AUDIT: sessionid, loginuid');
    t.equal(audit!.data.readUInt32LE(0), Number(readFileSync('/proc/self/sessionid', 'latin1')), 'sessionid first');
    t.equal(audit!.data.readUInt32LE(4), Number(readFileSync('/proc/self/loginuid', 'latin1')), 'then loginuid');
  }
});

t.test('collect from another thread of this process', async (t) => {
  const tids = readdirSync(`/proc/${self}/task`).map(Number).filter((x) => x !== self);
  if (tids.length === 0) {
    t.comment('no other thread in this process');
    return;
  }
  const tid = tids[0];
  const mp = ProcMeta.collect(tid, ATTACH.PIDS | ATTACH.TID_COMM | ATTACH.PID_COMM);
  const items = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH_ALL, null)));
  t.same(items.map((i) => i.type), [ITEM.PIDS, ITEM.TID_COMM, ITEM.PID_COMM]);
  t.same([0, 8, 16].map((o) => Number(items[0].data.readBigUInt64LE(o))), [self, tid, process.ppid], 'tgid, tid, parent');
  t.equal(cstr(items[1].data), readFileSync(`/proc/${self}/task/${tid}/comm`, 'latin1').trim(), 'TID_COMM: the thread');
  t.equal(cstr(items[2].data), readFileSync(`/proc/${self}/comm`, 'latin1').trim(), 'PID_COMM: the leader');
});

t.test('collect from a child process under another uid', async (t) => {
  const c = child('sleep', ['30'], { argv0: 'my-argv0-is-this', uid: 65534, gid: 65533 });
  const pid = c.pid!;
  await waitFor('exec', () => readlinkSync(`/proc/${pid}/exe`).endsWith('/sleep'));
  const mp = ProcMeta.collect(pid, PROC_ATTACH);
  const items = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH_ALL, null)));
  const byType = new Map(items.map((i) => [i.type, i]));
  const cr = byType.get(ITEM.CREDS)!.data;
  t.same(Array.from({ length: 8 }, (_, i) => cr.readUInt32LE(i * 4)), [65534, 65534, 65534, 65534, 65533, 65533, 65533, 65533]);
  const p = byType.get(ITEM.PIDS)!.data;
  t.same([0, 8, 16].map((o) => Number(p.readBigUInt64LE(o))), [pid, pid, self], 'child: ppid is us');
  t.equal(byType.get(ITEM.AUXGROUPS)!.size, 16, 'no supplementary groups: empty AUXGROUPS item');
  t.equal(cstr(byType.get(ITEM.TID_COMM)!.data), 'sleep');
  t.equal(cstr(byType.get(ITEM.PID_COMM)!.data), 'sleep');
  t.equal(cstr(byType.get(ITEM.CMDLINE)!.data), 'my-argv0-is-this', 'argv[0] only');
  t.equal(cstr(byType.get(ITEM.EXE)!.data), readlinkSync(`/proc/${pid}/exe`));
  const caps = byType.get(ITEM.CAPS)!.data;
  t.equal(caps.readUInt32LE(4 + 2 * 8), 0, 'no effective caps after setuid');
  t.equal(caps.readUInt32LE(4 + 3 * 8), Number(BigInt('0x' + field(status(pid), 'CapBnd')) & 0xffffffffn), 'bounding set kept');

  // collectMore adds only what is missing
  const mp2 = ProcMeta.collect(pid, ATTACH.CREDS);
  const credsBefore = mp2.creds;
  t.equal(mp2.collected, ATTACH.CREDS);
  mp2.collectMore(pid, ATTACH.CREDS | ATTACH.PIDS);
  t.equal(mp2.collected, ATTACH.CREDS | ATTACH.PIDS);
  t.equal(mp2.creds, credsBefore, 'CREDS not read again');

  c.kill('SIGKILL');
  await new Promise((r) => c.once('exit', r));
  await waitFor('reaped', () => !existsSync(`/proc/${pid}`));
  const gone = ProcMeta.collect(pid, PROC_ATTACH);
  t.equal(gone.collected, 0n, 'a vanished task yields nothing, without throwing');
  t.equal(exportMeta(gone, null, ATTACH_ALL, null).length, 0);
  mp2.collectMore(pid, PROC_ATTACH);
  t.equal(mp2.collected, ATTACH.CREDS | ATTACH.PIDS, 'collectMore on a vanished task keeps what it had');
});

const conn: ConnMeta = {
  timestamp: { seqnum: 42n, monotonicNs: 1_000n, realtimeNs: 2_000n },
  names: [{ name: 'foo.bar.baz', flags: NAME_ALLOW_REPLACEMENT }, { name: 'a.b', flags: NAME_IN_QUEUE }],
  description: 'this-is-my-name',
};

t.test('export: kernel order, sizes, alignment', async (t) => {
  const mp = ProcMeta.collect(self, PROC_ATTACH);
  const buf = withMask(ATTACH_ALL, () => exportMeta(mp, conn, ATTACH_ALL, null));
  const items = parseItems(t, buf);
  const order = [ITEM.CREDS, ITEM.PIDS, ITEM.AUXGROUPS, ITEM.TID_COMM, ITEM.PID_COMM, ITEM.EXE, ITEM.CMDLINE,
    ITEM.CGROUP, ITEM.CAPS, ...(hasLsm ? [ITEM.SECLABEL] : []), ...(mp.collected & ATTACH.AUDIT ? [ITEM.AUDIT] : []),
    ITEM.OWNED_NAME, ITEM.OWNED_NAME, ITEM.CONN_DESCRIPTION, ITEM.TIMESTAMP];
  t.same(items.map((i) => i.type), order, 'process items, then names, description, timestamp last');
  const names = items.filter((i) => i.type === ITEM.OWNED_NAME);
  t.equal(names[0].size, 16 + 8 + 'foo.bar.baz'.length + 1, 'OWNED_NAME: flags + name + NUL');
  t.equal(names[0].data.readBigUInt64LE(0), NAME_ALLOW_REPLACEMENT);
  t.equal(cstr(names[0].data.subarray(8)), 'foo.bar.baz');
  t.equal(names[1].data.readBigUInt64LE(0), NAME_IN_QUEUE);
  t.equal(cstr(names[1].data.subarray(8)), 'a.b');
  const desc = items.find((i) => i.type === ITEM.CONN_DESCRIPTION)!;
  t.equal(desc.size, 16 + 16);
  t.equal(cstr(desc.data), 'this-is-my-name');
  const ts = items[items.length - 1];
  t.equal(ts.size, 40);
  t.same([0, 8, 16].map((o) => ts.data.readBigUInt64LE(o)), [42n, 1_000n, 2_000n], 'seqnum, monotonic, realtime');

  // only what the mask asks for, and only what was collected
  const some = parseItems(t, withMask(ATTACH_ALL, () =>
    exportMeta(mp, conn, ATTACH.PIDS | ATTACH.CAPS | ATTACH.TIMESTAMP, null)));
  t.same(some.map((i) => i.type), [ITEM.PIDS, ITEM.CAPS, ITEM.TIMESTAMP]);
  const credsOnly = ProcMeta.collect(self, ATTACH.CREDS);
  t.same(parseItems(t, withMask(ATTACH_ALL, () => exportMeta(credsOnly, null, ATTACH_ALL, null))).map((i) => i.type),
    [ITEM.CREDS], 'items not collected are not exported');
  t.equal(withMask(ATTACH_ALL, () => exportMeta(null, { names: [] }, ATTACH_ALL, null)).length, 0,
    'no names: no OWNED_NAME item');
  t.same(parseItems(t, withMask(ATTACH_ALL, () => exportMeta(null, { description: '' }, ATTACH_ALL, null)))
    .map((i) => i.size), [17], 'empty description: just the NUL');
  t.equal(exportMeta(mp, conn, 0n, null).length, 0, 'empty mask: nothing');
});

t.test('the module mask removes items live', async (t) => {
  const mp = ProcMeta.collect(self, PROC_ATTACH);
  const types = (m: bigint): number[] => withMask(m, () => parseItems(t, exportMeta(mp, conn, ATTACH_ALL, null)).map((i) => i.type));
  t.same(types(DEFAULT_ATTACH_FLAGS_MASK), [ITEM.CREDS, ITEM.PIDS, ITEM.AUXGROUPS, ...(hasLsm ? [ITEM.SECLABEL] : []),
    ITEM.OWNED_NAME, ITEM.OWNED_NAME, ITEM.CONN_DESCRIPTION, ITEM.TIMESTAMP], 'default mask 0x281f');
  t.same(types(0n), [], 'mask 0: nothing');
  t.same(types(ATTACH.CGROUP | ATTACH.TIMESTAMP), [ITEM.CGROUP, ITEM.TIMESTAMP]);
  t.same(types(0xffff_ffff_ffff_ffffn).length, types(ATTACH_ALL).length, '_ANY mask = _ALL');
  // the same ProcMeta, the parameter changed between two exports
  const old = moduleParams.attachFlagsMask;
  try {
    moduleParams.attachFlagsMask = ATTACH.CREDS;
    const a = parseItems(t, exportMeta(mp, conn, ATTACH_ALL, null)).map((i) => i.type);
    moduleParams.attachFlagsMask = ATTACH.PIDS;
    const b = parseItems(t, exportMeta(mp, conn, ATTACH_ALL, null)).map((i) => i.type);
    t.same([a, b], [[ITEM.CREDS], [ITEM.PIDS]], 'read at every call');
  } finally {
    moduleParams.attachFlagsMask = old;
  }
});

t.test('fake (privileged HELLO)', async (t) => {
  const creds = Buffer.alloc(32);
  [1000, 1001, 1002, 1003, 2000, 0xffffffff, 2002, 2003].forEach((v, i) => creds.writeUInt32LE(v, i * 4));
  const pids = Buffer.alloc(24);
  pids.writeBigUInt64LE(BigInt(self), 0);
  pids.writeBigUInt64LE(BigInt(self), 8);
  pids.writeBigUInt64LE(0n, 16);
  const mp = ProcMeta.fake(creds, pids, 'system_u:system_r:foo_t:s0');
  t.equal(mp.collected, ATTACH.CREDS | ATTACH.PIDS | ATTACH.SECLABEL);
  const items = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH_ALL, { tid: self })));
  t.same(items.map((i) => i.type), [ITEM.CREDS, ITEM.PIDS, ITEM.SECLABEL]);
  t.same(Array.from({ length: 8 }, (_, i) => items[0].data.readUInt32LE(i * 4)),
    [1000, 1001, 1002, 1003, 2000, 0xffffffff, 2002, 2003], '(u32)-1 kept');
  t.same([0, 8, 16].map((o) => Number(items[1].data.readBigUInt64LE(o))), [self, self, 0], 'pid 0 is no pid');
  t.equal(cstr(items[2].data), 'system_u:system_r:foo_t:s0');
  // a faked connection gets nothing more from /proc
  t.equal(ProcMeta.fake(null, null, null).collected, 0n);
  // a pid that does not exist
  const bad = Buffer.alloc(24);
  bad.writeBigUInt64LE(0x7ffffffen, 0);
  let err: unknown = null;
  try { ProcMeta.fake(null, bad, null); } catch (e) { err = e; }
  t.ok(err instanceof KdbusError && err.errno === 22, 'a pid that does not exist: EINVAL');
});

t.test('translation into the receiver namespaces', async (t) => {
  const mp = ProcMeta.collect(self, PROC_ATTACH);
  const all = (r: { tid: number } | null): Buffer => withMask(ATTACH_ALL, () => exportMeta(mp, conn, ATTACH_ALL, r));
  t.same(all({ tid: self }), all(null), 'receiver in the same namespaces: identical');

  // a receiver in a new user namespace with no mapping at all
  const u = child('unshare', ['--user', 'sleep', '30']);
  await waitFor('userns', () => readlinkSync(`/proc/${u.pid}/ns/user`) !== readlinkSync('/proc/self/ns/user') &&
    readlinkSync(`/proc/${u.pid}/exe`).endsWith('/sleep'));
  const items = parseItems(t, all({ tid: u.pid! }));
  const byType = new Map(items.map((i) => [i.type, i]));
  t.notOk(byType.has(ITEM.CAPS), 'CAPS dropped across user namespaces');
  const cr = byType.get(ITEM.CREDS)!.data;
  t.same(Array.from({ length: 8 }, (_, i) => cr.readUInt32LE(i * 4)), Array(8).fill(65534), 'unmapped ids: overflow');
  const aux = byType.get(ITEM.AUXGROUPS)!;
  t.ok(Array.from({ length: (aux.size - 16) / 4 }, (_, i) => aux.data.readUInt32LE(i * 4)).every((g) => g === 65534));
  if (byType.has(ITEM.AUDIT)) t.equal(byType.get(ITEM.AUDIT)!.data.readUInt32LE(4), 0xffffffff, 'loginuid unmapped: -1');
  t.ok(byType.has(ITEM.EXE), 'same root: EXE kept');

  // a receiver in a child pid namespace sees none of our pids
  const p = child('unshare', ['--pid', '--fork', 'sleep', '30']);
  let inner = 0;
  await waitFor('pidns child', () => {
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const st = status(e);
      if (Number(field(st, 'PPid')) === p.pid && readlinkSync(`/proc/${e}/exe`).endsWith('/sleep')) { inner = Number(e); return true; }
    }
    return false;
  });
  const pi = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH.PIDS, { tid: inner })));
  t.same([0, 8, 16].map((o) => Number(pi[0].data.readBigUInt64LE(o))), [0, 0, 0], 'invisible pids: 0');
  // ... and from inside it, to itself and to us
  const nested = ProcMeta.collect(inner, ATTACH.PIDS);
  const toSelf = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(nested, null, ATTACH.PIDS, { tid: inner })));
  t.same([0, 8, 16].map((o) => Number(toSelf[0].data.readBigUInt64LE(o))), [1, 1, 0], 'inside: pid 1, parent invisible');
  const toUs = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(nested, null, ATTACH.PIDS, null)));
  t.same([0, 8, 16].map((o) => Number(toUs[0].data.readBigUInt64LE(o))), [inner, inner, p.pid], 'outside: global pids');

  // a receiver with another root loses EXE; a sender in it has its EXE relative to that root
  const r = child('chroot', ['/usr', '/bin/sleep', '30']);
  await waitFor('chroot', () => readlinkSync(`/proc/${r.pid}/root`) === '/usr' && readlinkSync(`/proc/${r.pid}/exe`).endsWith('/sleep'));
  const toChroot = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH.EXE | ATTACH.CREDS, { tid: r.pid! })));
  t.same(toChroot.map((i) => i.type), [ITEM.CREDS], 'EXE dropped when the roots differ');
  const chrooted = ProcMeta.collect(r.pid!, ATTACH.EXE);
  const own = parseItems(t, withMask(ATTACH_ALL, () => exportMeta(chrooted, null, ATTACH.EXE, { tid: r.pid! })));
  t.equal(cstr(own[0].data), readlinkSync(`/proc/${r.pid}/exe`).replace(/^\/usr/, ''), 'EXE as seen from its own root');
  t.same(parseItems(t, withMask(ATTACH_ALL, () => exportMeta(chrooted, null, ATTACH.EXE, null))), [], 'and not to us');

  // one view for several exports
  const view = new TaskView(u.pid!);
  t.same(withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH.CREDS, view)),
    withMask(ATTACH_ALL, () => exportMeta(mp, null, ATTACH.CREDS, { tid: u.pid! })));
});

t.test('timestampNow', async (t) => {
  const a = timestampNow(7n);
  const b = timestampNow(8n);
  t.equal(a.seqnum, 7n);
  t.ok(b.monotonicNs >= a.monotonicNs && b.realtimeNs >= a.realtimeNs, 'monotonic');
  const wall = BigInt(Date.now()) * 1_000_000n;
  t.ok(b.realtimeNs > wall - 5_000_000n && b.realtimeNs < wall + 5_000_000n, 'realtime near Date.now()');
  const uptime = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
  t.ok(Math.abs(Number(b.monotonicNs) / 1e9 - uptime) < 1, 'monotonic near /proc/uptime (CLOCK_MONOTONIC)');
});

t.test('cost of collect for the default mask', async (t) => {
  const mask = DEFAULT_ATTACH_FLAGS_MASK; // TIMESTAMP|CREDS|PIDS|AUXGROUPS|NAMES|SECLABEL|CONN_DESCRIPTION
  const c = child('sleep', ['30']);
  await waitFor('exec', () => readlinkSync(`/proc/${c.pid}/exe`).endsWith('/sleep'));
  const per = (n: number, f: () => void): number => {
    for (let i = 0; i < 200; i++) f();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    return Number(process.hrtime.bigint() - t0) / n / 1000;
  };
  const n = 5000;
  const collectSelf = per(n, () => ProcMeta.collect(self, mask));
  const collectChild = per(n, () => ProcMeta.collect(c.pid!, mask));
  const mp = ProcMeta.collect(c.pid!, mask);
  const exportNull = per(n, () => exportMeta(mp, conn, mask, null));
  const exportRecv = per(n, () => exportMeta(mp, conn, mask, { tid: self }));
  const conn1 = per(n, () => ({ timestamp: timestampNow(1n), names: conn.names, description: conn.description }));
  t.comment(`collect(0x281f): self ${collectSelf.toFixed(1)} µs, child ${collectChild.toFixed(1)} µs; ` +
    `export: ${exportNull.toFixed(1)} µs (server view), ${exportRecv.toFixed(1)} µs (receiver {tid}); ` +
    `timestampNow+ConnMeta ${conn1.toFixed(2)} µs`);
  t.ok(collectChild < 1000, 'collect is well under a millisecond');
});
