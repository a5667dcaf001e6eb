// kdbusfs and containers, end to end: a real `kdbusfs mount DIR` in its own
// process, and "containers" made by test/clients/kdbus-peer.c (`container`:
// clone into new user, pid and mount namespaces; the container's uids and
// gids 0..65535 are host 100000..165535, written to uid_map/gid_map by the
// parent as host root). Inside, the peer becomes root of the container, makes
// every mount private and bind-mounts a piece of kdbusfs into its own mount
// namespace. More peers join a container with nsenter(1).
//
// What is asserted is what the kernel (ipc/kdbus/metadata.c
// kdbus_meta_export, util.c kdbus_verify_uid_prefix, handle.c) would do:
//   1. a bus DIRECTORY bound into a container: messages both ways; CREDS
//      translated with from_kuid_munged into the receiver's user namespace
//      (unmapped: overflowuid), PIDS with pid_vnr into the receiver's pid
//      namespace (not visible: 0), CAPS dropped across user namespaces, EXE
//      only when the fs roots are the same path (vfsmount and dentry);
//      CONN_INFO of each other's connection the same way
//   2. the kdbusfs ROOT bound into a container: control works there; a bus
//      made there carries the HOST uid as prefix (the domain's user namespace
//      is the mounter's: the host's)
//   3. a single endpoint FILE bound: it pins one inode, so a second open while
//      the first is in use is refused (EBUSY) instead of sharing its pool
//   4. a rootless kdbusfs: the server run by a container's root (no
//      capability in the initial user namespace) with a usable /dev/fuse:
//      passthrough is refused, page-cache pools work, the domain's user
//      namespace is the container's, and nobody outside it gets in
// 1-3 run twice: passthrough pools with the module's default
// attach_flags_mask (no CAPS, no EXE: main.c), then page-cache pools with
// every item allowed, so that the CAPS and EXE rules are exercised.
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync }
  from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  cli, compileClient, fails, live, mountType, needRootAndFuse, ok, Peer, peerSet, root, spawnServer, startServer,
  statOf, stopServer, until, withTimeout, type NewPeer, type Reply, type Tap,
} from './harness.js';

/** The container's id map: 0..65535 inside are 100000..165535 on the host. */
const MAP: Array<[number, number, number]> = [[0, 100000, 65536]];
const MAP_ARG = MAP.map((m) => m.join(':')).join(',');
const CROOT = 100000; // the container's root as a host uid
const ATTACH_ANY = '0xffffffffffffffff'; // _KDBUS_ATTACH_ANY: receive every item
const ATTACH_ALL = '0x3fff'; // _KDBUS_ATTACH_ALL: for CONN_INFO (flags beyond it are EINVAL)
const ATTACH_CAPS = 1n << 10n;
const ATTACH_EXE = 1n << 7n;
/** The module's default attach_flags_mask (main.c): no CAPS, no EXE. */
const DEFAULT_MASK = 0x281fn;

t.setTimeout(60_000);

needRootAndFuse();
const nsenter = ['/usr/bin/nsenter', '/bin/nsenter'].find((p) => existsSync(p));
const maxUserNs = existsSync('/proc/sys/user/max_user_namespaces')
  ? Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim()) : 0;
if (!nsenter || !existsSync('/proc/self/ns/user') || !(maxUserNs > 0)) {
  t.plan(0, 'needs nsenter (util-linux) and user namespaces');
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-ctr-'));
chmodSync(tmp, 0o755); // container uids (host 100000+) must reach what is inside
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);
const overflowUid = Number(readFileSync('/proc/sys/kernel/overflowuid', 'utf8').trim());
const overflowGid = Number(readFileSync('/proc/sys/kernel/overflowgid', 'utf8').trim());
const capLastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
const hostPidNs = readlinkSync('/proc/self/ns/pid');

// ---- helpers (the harness: test/harness.ts) ----

/**
 * The CLI as a server running under a container uid can load it: the checkout
 * may sit where only root can go (a clone under /root, mode 0700), so what
 * the server loads at run time (package.json for the module type, dist/lib,
 * the addon) is copied into the 0755 temp directory.
 */
function readableCli(): string {
  const copy = join(tmp, 'kdbusfs');
  if (!existsSync(copy)) {
    for (const part of ['package.json', 'dist/lib', 'build/Release/kdbusfs_native.node']) {
      cpSync(join(root, part), join(copy, part), { recursive: true });
    }
  }
  return join(copy, 'dist/lib/cli.js');
}

/** A test's peers (kdbus-peer processes), killed when the test ends. */
function peers(t: Tap): NewPeer {
  return peerSet(t, client);
}

/** HELLO with options (kdbus-peer's connect, trimmed: opts may be empty); sets p.id. */
async function connect(t: Tap, p: Peer, bus: string, opts: string, what: string): Promise<Peer> {
  const r = ok(t, await p.cmd(`connect ${bus} ${opts}`.trim()), what);
  p.id = Number(r.kv.id ?? 0);
  return p;
}

// ---- what the host's /proc says (the kernel's view: kuids, global pids) ----

interface Proc {
  uids: number[]; // uid euid suid fsuid
  gids: number[];
  groups: number[]; // supplementary groups, sorted as the kernel keeps them
  ppid: number;
  nspid: number[]; // host pid first, innermost last
  pidNs: string;
  userNs: string;
  caps: { inh: bigint; prm: bigint; eff: bigint; bnd: bigint };
}

function proc(pid: number): Proc {
  const st = readFileSync(`/proc/${pid}/status`, 'latin1');
  const f = (name: string): string => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(st);
    return m ? m[1]!.trim() : '';
  };
  const nums = (name: string): number[] => f(name).split(/\s+/).filter(Boolean).map(Number);
  return {
    uids: nums('Uid'), gids: nums('Gid'), groups: nums('Groups'), ppid: Number(f('PPid')), nspid: nums('NSpid'),
    pidNs: readlinkSync(`/proc/${pid}/ns/pid`), userNs: readlinkSync(`/proc/${pid}/ns/user`),
    caps: { inh: BigInt('0x' + f('CapInh')), prm: BigInt('0x' + f('CapPrm')),
      eff: BigInt('0x' + f('CapEff')), bnd: BigInt('0x' + f('CapBnd')) },
  };
}

/** from_kuid_munged / from_kgid_munged into a namespace with `map` (null: the initial one). */
function munge(map: typeof MAP | null, k: number, overflow: number): number {
  if (map === null) return k;
  for (const [inside, outside, count] of map) if (k >= outside && k - outside < count) return inside + k - outside;
  return overflow;
}

/** The creds= a receiver in a namespace with `map` must see for sender `p`. */
function credsIn(p: Proc, map: typeof MAP | null): string {
  return [...p.uids.map((u) => munge(map, u, overflowUid)), ...p.gids.map((g) => munge(map, g, overflowGid))].join(',');
}

/** The auxgroups= a receiver in a namespace with `map` must see for sender `p` (from_kgid_munged each). */
function groupsIn(p: Proc, map: typeof MAP | null): string {
  return p.groups.length ? p.groups.map((g) => munge(map, g, overflowGid)).join(',') : 'none';
}

/** pid_vnr(): the number of host pid `pid` in pid namespace `ns`, 0 where it is not visible. */
function vnr(pid: number, ns: string): number {
  if (pid === 0) return 0;
  if (ns === hostPidNs) return pid;
  const p = proc(pid);
  return p.pidNs === ns && p.nspid.length > 1 ? p.nspid[p.nspid.length - 1]! : 0;
}

/** The pids= a receiver in pid namespace `ns` must see for (single-threaded) sender `pid`. */
function pidsIn(pid: number, ns: string): string {
  const v = vnr(pid, ns);
  return `${v},${v},${vnr(proc(pid).ppid, ns)}`;
}

/** The caps= of a CAPS item for task `pid`: LASTCAP:INH:PRM:EFF:BND, 2 u32 words each, low first. */
function capsOf(pid: number): string {
  const c = proc(pid).caps;
  const mask = (1n << BigInt(capLastCap + 1)) - 1n;
  const set = (v: bigint): string => {
    const m = v & mask;
    return `${(m & 0xffff_ffffn).toString(16)}.${(m >> 32n).toString(16)}`;
  };
  return [String(capLastCap), set(c.inh), set(c.prm), set(c.eff), set(c.bnd)].join(':');
}

interface Ctr {
  /** the container's first peer (its pid 1) */
  init: Peer;
  hostPid: number;
  pidNs: string;
  userNs: string;
}

/** A container: a kdbus-peer cloned into new user, pid and mount namespaces, root there. */
async function container(t: Tap, newPeer: NewPeer, name: string): Promise<Ctr> {
  const init = await newPeer(name);
  const r = ok(t, await init.cmd(`container ${MAP_ARG} ${MAP_ARG}`),
    `${name}: new user, pid and mount namespaces; uid/gid map 0 ${CROOT} 65536; root inside`);
  const hostPid = Number(r.kv.hostpid);
  t.same([r.kv.pid, r.kv.ppid, r.kv.uid, r.kv.gid], ['1', '0', '0', '0'],
    `${name}: inside it is pid 1 (parent not visible: 0), uid 0, gid 0`, { answer: r.line });
  const p = proc(hostPid);
  t.same([p.uids, p.gids, p.ppid], [[CROOT, CROOT, CROOT, CROOT], [CROOT, CROOT, CROOT, CROOT], init.pid],
    `${name}: the host sees uid/gid ${CROOT} and pid ${hostPid}, child of the peer the test started`);
  return { init, hostPid, pidNs: p.pidNs, userNs: p.userNs };
}

/** Another peer in a container (nsenter: its user, pid and mount namespaces; uid/gid 0 there). */
async function join_(t: Tap, newPeer: NewPeer, c: Ctr, name: string): Promise<{ peer: Peer; hostPid: number; pid: number }> {
  const peer = await newPeer(name, [nsenter!, '-t', String(c.hostPid), '-U', '-p', '-m', '--', client]);
  const w = ok(t, await peer.cmd('whoami'), `${name}: joins the container with nsenter`);
  const hostPid = Number(w.kv.procself); // /proc is the host's: /proc/self is the host pid
  t.same([w.kv.uid, proc(hostPid).pidNs, proc(hostPid).uids[0]], ['0,0,0', c.pidNs, CROOT],
    `${name}: root inside, in the container's pid namespace, uid ${CROOT} on the host`, { answer: w.line });
  return { peer, hostPid, pid: Number(w.kv.pid) };
}

/** Receive one message (waiting up to 2 s) and return its metadata answer. */
async function recvMeta(t: Tap, p: Peer, what: string): Promise<Reply> {
  return ok(t, await p.cmd('recvmeta wait:2000', 5000), `${what}: received`);
}

/** The metadata fields of an answer that a test compares. */
function meta(r: Reply, keys: string[]): Record<string, string | undefined> {
  return Object.fromEntries(keys.map((k) => [k, r.kv[k]]));
}

// ---- 1. a bus directory bound into a container ----

async function busDir(t: Tap, dir: string, mask: bigint): Promise<void> {
  const newPeer = peers(t);
  // What the module's attach_flags_mask lets through at all.
  const caps = (mask & ATTACH_CAPS) !== 0n;
  const exe = (mask & ATTACH_EXE) !== 0n;
  const maker = await newPeer('maker');
  ok(t, await maker.cmd(`make ${dir}/control 0-ctr world 64 1`), 'host root: BUS_MAKE 0-ctr with MAKE_ACCESS_WORLD');
  const bus = `${dir}/0-ctr/bus`;
  await connect(t, await newPeer('holder host.svc'), bus, 'holder name:host.svc policy:world:talk',
    'host root: policy holder granting WORLD TALK on host.svc');
  await connect(t, await newPeer('holder ctr.svc'), bus, 'holder name:ctr.svc policy:world:own',
    'host root: policy holder granting WORLD OWN on ctr.svc');

  const h = await connect(t, await newPeer('H'), bus, `recv:${ATTACH_ANY}`, 'H (host root): HELLO receiving every item');
  t.equal((await h.cmd('acquire host.svc')).kv.flags, '0', 'H owns host.svc');
  const h2 = await newPeer('H2');
  const u5 = CROOT + 5;
  ok(t, await h2.cmd(`creds ${u5} ${u5} ${u5} ${u5} ${u5} ${u5} ${CROOT + 7} 7`),
    `H2 becomes host uid/gid ${u5} (container 5), groups ${CROOT + 7} (container 7) and 7 (not mapped)`);
  await connect(t, h2, bus, `recv:${ATTACH_ANY}`, 'H2: HELLO');

  const c = await container(t, newPeer, 'C');
  const cbus = join(tmp, 'c-bus');
  mkdirSync(cbus, { recursive: true });
  ok(t, await c.init.cmd(`bind ${dir}/0-ctr ${cbus}`), 'C: bind-mounts the bus directory into its mount namespace');
  const cp = c.init;
  await connect(t, cp, `${cbus}/bus`, `recv:${ATTACH_ANY}`, 'C: HELLO on the bound bus file');
  t.equal((await cp.cmd('acquire ctr.svc')).kv.flags, '0', 'C owns ctr.svc (WORLD OWN)');
  const c2 = await join_(t, newPeer, c, 'C2');
  await connect(t, c2.peer, `${cbus}/bus`, `recv:${ATTACH_ANY}`, 'C2: HELLO on the bound bus file');
  t.equal(mountType(cbus), null, 'the bind mount is not visible on the host');

  const H = proc(h.pid);
  const H2 = proc(h2.pid);
  const C = proc(c.hostPid);
  const C2 = proc(c2.hostPid);
  t.same([H.userNs === C.userNs, H.pidNs === C.pidNs], [false, false], 'H and C really are in different namespaces');

  // host -> container
  ok(t, await h.cmd(`send ${cp.id} cookie:11 vec:16`), 'H sends to C');
  let r = await recvMeta(t, cp, 'C <- H');
  t.same(meta(r, ['src', 'cookie']), { src: String(h.id), cookie: '11' }, 'C <- H: src and cookie');
  t.equal(r.kv.creds, credsIn(H, MAP),
    `C <- H: CREDS of host root are the overflow ids (${overflowUid}/${overflowGid}): uid 0 is not mapped`, { answer: r.line });
  t.equal(r.kv.pids, '0,0,0', 'C <- H: PIDS are 0: H and its parent are outside C\'s pid namespace', { answer: r.line });
  t.equal(r.kv.caps, '-', 'C <- H: no CAPS item across user namespaces', { answer: r.line });
  t.equal(r.kv.exe, '-', 'C <- H: no EXE item: the fs roots differ (other mount namespace)', { answer: r.line });

  ok(t, await h2.cmd(`send ${cp.id} cookie:12 vec:16`), `H2 (host uid ${u5}) sends to C (TALK via ctr.svc)`);
  r = await recvMeta(t, cp, 'C <- H2');
  t.equal(r.kv.creds, '5,5,5,5,5,5,5,5', `C <- H2: host uid/gid ${u5} is mapped: C sees 5`, { answer: r.line });
  t.equal(r.kv.creds, credsIn(H2, MAP), 'C <- H2: CREDS as from_kuid_munged computes them');
  t.equal(r.kv.auxgroups, `${overflowGid},7`,
    `C <- H2: AUXGROUPS in the kernel's (sorted) order: 7 is not mapped (${overflowGid}), ${CROOT + 7} is 7`, { answer: r.line });
  t.equal(r.kv.auxgroups, groupsIn(H2, MAP), 'C <- H2: AUXGROUPS as from_kgid_munged computes them');
  t.equal(r.kv.pids, '0,0,0', 'C <- H2: PIDS 0 (outside C\'s pid namespace)', { answer: r.line });
  t.equal(r.kv.caps, '-', 'C <- H2: no CAPS item across user namespaces', { answer: r.line });

  // container -> host
  ok(t, await cp.cmd(`send ${h.id} cookie:13 vec:16`), 'C sends to H (TALK via host.svc)');
  r = await recvMeta(t, h, 'H <- C');
  t.same(meta(r, ['src', 'cookie']), { src: String(cp.id), cookie: '13' }, 'H <- C: src and cookie');
  t.equal(r.kv.creds, Array(8).fill(CROOT).join(','), `H <- C: CREDS are the host ids of the container's root (${CROOT})`,
    { answer: r.line });
  t.equal(r.kv.creds, credsIn(C, null), 'H <- C: CREDS as the host\'s /proc shows them');
  t.equal(r.kv.pids, `${c.hostPid},${c.hostPid},${cp.pid}`,
    'H <- C: PIDS are host pids; ppid is the container\'s parent, which C itself cannot see', { answer: r.line });
  t.equal(r.kv.caps, '-', 'H <- C: no CAPS item across user namespaces', { answer: r.line });
  t.equal(r.kv.exe, '-', 'H <- C: no EXE item: the fs roots differ', { answer: r.line });

  ok(t, await c2.peer.cmd(`send ${h.id} cookie:15 vec:16`), 'C2 sends to H');
  r = await recvMeta(t, h, 'H <- C2');
  t.equal(r.kv.creds, credsIn(C2, null), `H <- C2: CREDS are host ids (${CROOT})`, { answer: r.line });
  t.equal(r.kv.pids, `${c2.hostPid},${c2.hostPid},${C2.ppid}`, 'H <- C2: host pids; ppid is nsenter, outside the container',
    { answer: r.line });
  t.equal(C2.ppid, c2.peer.pid, 'C2\'s parent on the host is the nsenter the test started');

  // container -> container
  ok(t, await c2.peer.cmd(`send ${cp.id} cookie:14 vec:16`), 'C2 sends to C (same uid: TALK)');
  r = await recvMeta(t, cp, 'C <- C2');
  t.equal(r.kv.creds, '0,0,0,0,0,0,0,0', 'C <- C2: CREDS are container root (0)', { answer: r.line });
  t.equal(r.kv.pids, `${c2.pid},${c2.pid},0`, `C <- C2: PIDS in the container's numbering (${c2.pid}); nsenter is outside: 0`,
    { answer: r.line });
  t.equal(r.kv.pids, pidsIn(c2.hostPid, c.pidNs), 'C <- C2: PIDS as pid_vnr computes them');
  t.equal(r.kv.caps, caps ? capsOf(c2.hostPid) : '-',
    caps ? 'C <- C2: CAPS within one user namespace: the sender\'s sets' : 'C <- C2: no CAPS (not in attach_flags_mask)',
    { answer: r.line });
  t.equal(r.kv.exe, exe ? client : '-',
    exe ? 'C <- C2: EXE: same mount namespace, same root' : 'C <- C2: no EXE (not in attach_flags_mask)', { answer: r.line });

  // CONN_INFO both ways
  r = ok(t, await h.cmd(`infometa ${cp.id} ${ATTACH_ALL}`), 'H: CONN_INFO of C');
  t.same(meta(r, ['creds', 'pids', 'caps', 'names']), {
    creds: credsIn(C, null), pids: `${c.hostPid},${c.hostPid},${cp.pid}`, caps: '-', names: 'ctr.svc',
  }, 'H: CONN_INFO of C: host ids, host pids, no CAPS, its name', { answer: r.line });
  t.equal(r.kv.exe, '-', 'H: CONN_INFO of C: no EXE (roots differ)', { answer: r.line });
  r = ok(t, await h2.cmd(`infometa ${c2.peer.id} ${ATTACH_ALL}`), 'H2: CONN_INFO of C2');
  t.same(meta(r, ['creds', 'pids', 'caps']), {
    creds: credsIn(C2, null), pids: `${c2.hostPid},${c2.hostPid},${C2.ppid}`, caps: '-',
  }, 'H2: CONN_INFO of C2: host ids and pids, no CAPS', { answer: r.line });
  r = ok(t, await cp.cmd(`infometa ${h.id} ${ATTACH_ALL}`), 'C: CONN_INFO of H');
  t.same(meta(r, ['creds', 'pids', 'caps', 'names']), {
    creds: credsIn(H, MAP), pids: '0,0,0', caps: '-', names: 'host.svc',
  }, 'C: CONN_INFO of H: overflow ids, pids 0, no CAPS, its name', { answer: r.line });
  r = ok(t, await cp.cmd(`infometa host.svc ${ATTACH_ALL}`), 'C: CONN_INFO of host.svc (by name)');
  t.same(meta(r, ['id', 'creds', 'pids']), { id: String(h.id), creds: credsIn(H, MAP), pids: '0,0,0' },
    'C: CONN_INFO by name: the same', { answer: r.line });
  r = ok(t, await cp.cmd(`infometa ${h2.id} ${ATTACH_ALL}`), 'C: CONN_INFO of H2');
  t.same(meta(r, ['creds', 'pids', 'auxgroups']), { creds: '5,5,5,5,5,5,5,5', pids: '0,0,0', auxgroups: groupsIn(H2, MAP) },
    'C: CONN_INFO of H2: mapped ids, pids 0', { answer: r.line });
  r = ok(t, await cp.cmd(`infometa ${c2.peer.id} ${ATTACH_ALL}`), 'C: CONN_INFO of C2');
  t.same(meta(r, ['creds', 'pids', 'caps']), {
    creds: '0,0,0,0,0,0,0,0', pids: `${c2.pid},${c2.pid},0`, caps: caps ? capsOf(c2.hostPid) : '-',
  }, `C: CONN_INFO of C2: container ids and pids${caps ? ', CAPS (same user namespace)' : ''}`, { answer: r.line });

  // privilege: the container's root has CAP_IPC_OWNER in its own user namespace only
  const h3 = await connect(t, await newPeer('H3'), bus, '', 'H3 (host root, no name): HELLO');
  fails(t, await cp.cmd(`send ${h3.id} cookie:16 vec:8`), 'EPERM',
    'C -> H3: EPERM: no TALK policy, other uid, and C is not privileged on a host bus');
  fails(t, await cp.cmd('acquire no.policy.for.this'), 'EPERM',
    'C: NAME_ACQUIRE of a name without OWN policy is EPERM');
  const ep = await cp.cmd(`epmake ${cbus}/bus ${CROOT}-ep world`);
  fails(t, ep, 'EPERM', 'C: ENDPOINT_MAKE is EPERM (privileged operation)');
  if (ep.ok) await cp.cmd('epclose');
}

// ---- 2. the kdbusfs root bound into a container ----

async function rootDir(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const d = await container(t, newPeer, 'D');
  const croot = join(tmp, 'd-root');
  mkdirSync(croot, { recursive: true });
  ok(t, await d.init.cmd(`bind ${dir} ${croot} rec`), 'D: bind-mounts (MS_REC) the kdbusfs root into its mount namespace');
  ok(t, await d.init.cmd(`open ${croot}/control`), 'D: control is there and opens');
  // kdbus_verify_uid_prefix(name, domain->user_namespace, current_euid()):
  // the domain's user namespace is the one of whoever mounted kdbusfs (the
  // host's), so the prefix is the HOST uid, not the container-visible euid 0.
  fails(t, await d.init.cmd(`make ${croot}/control 0-inside world 64 1`), 'EINVAL',
    'D: BUS_MAKE "0-inside" (its own euid 0) is EINVAL: the prefix is taken in the domain\'s (host) user namespace');
  ok(t, await d.init.cmd(`make ${croot}/control ${CROOT}-inside world 64 1`),
    `D: BUS_MAKE "${CROOT}-inside" (its host uid) works`);
  const s = await statOf(join(dir, `${CROOT}-inside`));
  t.same(s, { mode: 0o555, uid: CROOT, gid: CROOT, dir: true }, `the host sees ${CROOT}-inside, owned by ${CROOT}`);
  const b = await statOf(join(dir, `${CROOT}-inside`, 'bus'));
  t.same(b && [b.uid, b.mode], [CROOT, 0o666], 'its bus file: owner the container root\'s host uid, world access');

  const d2 = await join_(t, newPeer, d, 'D2');
  await connect(t, d2.peer, `${croot}/${CROOT}-inside/bus`, `recv:${ATTACH_ANY}`, 'D2: HELLO on the bus made inside');
  const h = await connect(t, await newPeer('H'), `${dir}/${CROOT}-inside/bus`, `recv:${ATTACH_ANY}`,
    'H (host root): HELLO on the same bus from the host');
  ok(t, await h.cmd(`send ${d2.peer.id} cookie:21 vec:32`), 'H sends to D2');
  let r = await recvMeta(t, d2.peer, 'D2 <- H');
  t.same(meta(r, ['src', 'creds', 'pids', 'caps']), {
    src: String(h.id), creds: credsIn(proc(h.pid), MAP), pids: '0,0,0', caps: '-',
  }, 'D2 <- H: overflow ids, pids 0, no CAPS', { answer: r.line });
  ok(t, await d2.peer.cmd(`send ${h.id} cookie:22 vec:32`), 'D2 sends to H (D2 is the bus creator\'s uid: privileged)');
  r = await recvMeta(t, h, 'H <- D2');
  t.same(meta(r, ['src', 'creds', 'pids', 'caps']), {
    src: String(d2.peer.id), creds: credsIn(proc(d2.hostPid), null),
    pids: `${d2.hostPid},${d2.hostPid},${proc(d2.hostPid).ppid}`, caps: '-',
  }, 'H <- D2: host ids and pids, no CAPS', { answer: r.line });

  ok(t, await d.init.cmd('unmake'), 'D: closes its control fd');
  t.ok(await until(async () => (await statOf(join(dir, `${CROOT}-inside`))) === null, 3000),
    'the bus is gone on the host too');
}

// ---- 3. a single endpoint file bound ----

async function singleFile(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const maker = await newPeer('maker');
  ok(t, await maker.cmd(`make ${dir}/control 0-file world 64 1`), 'host root: BUS_MAKE 0-file');
  const e = await container(t, newPeer, 'E');
  const file = join(tmp, 'e-bus');
  writeFileSync(file, '');
  ok(t, await e.init.cmd(`bind ${dir}/0-file/bus ${file}`), 'E: bind-mounts the single endpoint file (unsupported)');
  await connect(t, e.init, file, '', 'E: HELLO through the bound file (the first open of its inode)');
  fails(t, await e.init.cmd(`open ${file}`), 'EBUSY',
    'E: a second open of the bound file is EBUSY: one inode cannot hold two pools');
  const e2 = await join_(t, newPeer, e, 'E2');
  fails(t, await e2.peer.cmd(`open ${file}`), 'EBUSY', 'E2: the same from another process of the container');
  const h = await connect(t, await newPeer('H'), `${dir}/0-file/bus`, '', 'H: HELLO through the mount itself (a fresh inode)');
  ok(t, await e.init.cmd('bye'), 'E: closes its connection');
  await connect(t, e.init, file, '', 'E: HELLO through the bound file again: one open at a time works');
  ok(t, await h.cmd(`send ${e.init.id} cookie:31 vec:4096 vec:100`), 'H sends to E');
  const r = ok(t, await e.init.cmd('recv wait:2000'), 'E receives');
  t.same(meta(r, ['src', 'cookie', 'pattern', 'stream']), { src: String(h.id), cookie: '31', pattern: 'ok', stream: r.kv.stream },
    'E: the message arrives intact in the new connection\'s pool', { answer: r.line });
  t.equal(r.kv.stream?.split(':')[0], '4196', 'E: all 4196 payload bytes');
}

// ---- 4. a rootless kdbusfs: served by a container's root ----

async function rootless(t: Tap): Promise<void> {
  const newPeer = peers(t);
  const f = await container(t, newPeer, 'F');
  // A rootless container engine hands its containers a usable /dev/fuse; the
  // host's is 0600 root. Make a 0666 node with the same device number and let
  // F bind it over /dev/fuse in its own mount namespace.
  const rdev = statSync('/dev/fuse').rdev;
  const node = join(tmp, 'fuse');
  const hostRoot = await newPeer('host root');
  ok(t, await hostRoot.cmd(`mknod ${node} ${(rdev >> 8) & 0xfff} ${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)} 666`),
    'host root: a 0666 node for the FUSE device');
  ok(t, await f.init.cmd(`bind ${node} /dev/fuse`), 'F: binds it over /dev/fuse in its mount namespace');
  const mnt = join(tmp, 'f-mnt');
  mkdirSync(mnt);

  // The server: F's root (host uid 100000, no capability in the initial user
  // namespace), in F's user and mount namespaces; no --no-passthrough.
  // (a working directory and a NODE_OPTIONS from tap pointing into the checkout would fail it the same way)
  const server = spawnServer(t, nsenter!, ['-t', String(f.hostPid), '-U', '-m', '--wd=/', '--',
    'env', '-u', 'NODE_OPTIONS', process.execPath, readableCli(), 'mount', mnt],
    { dies: 'rootless server dies' });

  const f2 = await join_(t, newPeer, f, 'F2');
  const up = await until(async () => server.exited || (await f2.peer.cmd(`open ${mnt}/control`)).ok, 10_000);
  if (!t.ok(up && !server.exited, 'the rootless kdbusfs comes up: F2 opens control', { stderr: server.stderr })) return;
  t.equal(mountType(mnt), null, 'the mount exists only in F\'s mount namespace');
  ok(t, await f2.peer.cmd(`make ${mnt}/control 0-rootless world 64 1`),
    'F2: BUS_MAKE "0-rootless": this domain\'s user namespace is the container\'s, where F2 is uid 0');
  fails(t, await f2.peer.cmd(`make ${mnt}/control ${CROOT}-rootless world 64 1`), 'EINVAL',
    `F2: "${CROOT}-rootless" (its host uid) is EINVAL here`);
  const bus = `${mnt}/0-rootless/bus`;
  await connect(t, f2.peer, bus, `recv:${ATTACH_ANY}`, 'F2 (container root): HELLO, without --no-passthrough');
  t.comment(`server stderr: ${server.stderr.trim() || '(nothing)'}`);
  const f3 = await join_(t, newPeer, f, 'F3');
  ok(t, await f3.peer.cmd('setuid 1000 1000'), 'F3 drops to container uid 1000 (host 101000)');
  await connect(t, f3.peer, bus, `recv:${ATTACH_ANY}`, 'F3 (container uid 1000): HELLO');

  ok(t, await f2.peer.cmd(`send ${f3.peer.id} cookie:41 vec:8192`), 'F2 sends to F3 (F2 made the bus: privileged)');
  const r = await recvMeta(t, f3.peer, 'F3 <- F2');
  t.same(meta(r, ['src', 'cookie', 'creds', 'pids']), {
    src: String(f2.peer.id), cookie: '41', creds: '0,0,0,0,0,0,0,0', pids: `${f2.pid},${f2.pid},0`,
  }, 'F3 <- F2: container ids and container pids (nsenter, F2\'s parent, is outside: 0)', { answer: r.line });
  fails(t, await f3.peer.cmd(`send ${f2.peer.id} cookie:42 vec:8`), 'EPERM',
    'F3 -> F2: EPERM (no policy, other uid, not privileged), as on any kdbus bus');
  fails(t, await hostRoot.cmd(`open /proc/${f.hostPid}/root${mnt}/control`), 'EACCES',
    'host root, outside the container\'s user namespace, gets EACCES (FUSE allow_other stops at the mounter\'s user namespace)');

  server.child.kill('SIGTERM');
  const end = await withTimeout(server.ended, 10_000, 'rootless kdbusfs exits on SIGTERM').catch(() => null);
  t.equal(end?.code, 0, 'the rootless kdbusfs exits 0 on SIGTERM', { stderr: server.stderr });
  fails(t, await f2.peer.cmd(`open ${mnt}/control`), 'ENOENT', 'and its mount is gone from F\'s namespace');
}

// ---- the mount ----

// Passthrough pools with the module's default attach_flags_mask (`kdbusfs
// mount` as it is), then page-cache pools with every item let through
// (--attach-flags-mask), so that the CAPS and EXE rules are exercised too.
const modes = [
  { name: 'passthrough pools, default attach_flags_mask', args: [], mask: DEFAULT_MASK },
  { name: 'page-cache pools, attach_flags_mask = _KDBUS_ATTACH_ALL', args: ['--no-passthrough', '--attach-flags-mask', '0x3fff'], mask: 0x3fffn },
];
for (const [i, mode] of modes.entries()) {
  await t.test(`kdbusfs mount (${mode.name})`, async (t) => {
    const dir = join(tmp, `mnt-${i}`);
    mkdirSync(dir);
    const server = await startServer(t, dir, { args: mode.args });
    if (!server) return;

    await t.test('1. a bus directory bound into a container: metadata both ways', (t) => busDir(t, dir, mode.mask));
    await t.test('2. the kdbusfs root bound into a container: control, bus names', (t) => rootDir(t, dir));
    await t.test('3. a single endpoint file bound: one open at a time', (t) => singleFile(t, dir));

    t.equal(live.size, 0, 'no peer process is left');
    await stopServer(t, server, dir);
  });
}

await t.test('4. a rootless kdbusfs: served by a container\'s root, page-cache pools', (t) => rootless(t));

t.teardown(() => {
  for (const p of live) p.kill();
  const mounted = modes.some((_, i) => mountType(join(tmp, `mnt-${i}`)));
  if (!mounted) rmSync(tmp, { recursive: true, force: true });
});
