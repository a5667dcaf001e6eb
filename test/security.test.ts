// Security (issue #7): a catalogue of what unprivileged users try against a
// real `kdbusfs mount DIR` (default passthrough pools) and the kernel's
// refusal of each, with its errno from ipc/kdbus/*.c and a check that the
// attempt left nothing behind. Every client is a real kdbus-peer process
// (test/clients/kdbus-peer.c) that dropped to uid 65534 ("nobody") or 65533
// ("other", who owns buses of its own) before opening anything.
//
// Related refusals checked in depth elsewhere, referenced here:
//   test/names-policy.test.ts 4a-4f: OWN/TALK by user, group and world
//     policy, wildcards, SEE and TALK on custom endpoints, both databases on
//     a custom endpoint, special connections (EOPNOTSUPP), root's endpoint
//     modes;
//   test/integration.test.ts 1, 6, 7: the tree's modes and owners, a root
//     bus seen by uid 65534, msg_address on an unmapped page;
//   test/calls-quotas.test.ts 5: floods held by the quotas;
//   test/selftest.test.ts: the upstream policy, policy-priv and
//     writable-pool tests.
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { ITEM } from '../lib/abi/kdbus.js';
import {
  compileClient, connect, fails, hello, live, mountType, needRootAndFuse, ok, Peer, peerSet, startServer, statOf,
  stopServer, type NewPeer, type Reply, type Tap,
} from './harness.js';

const NOBODY = 65534;
const OTHER = 65533;
/** Why the writable mappings of a pool are not refused (README "Status", writable-pool). */
const WRITABLE_MAP = 'FUSE cannot refuse a writable shared mmap of a pool (README "Status", selftest writable-pool)';
const PASSTHROUGH_WRITE = 'a passthrough pool takes write(2) into the client\'s own pool, as its writable mapping does: ' +
  'FUSE passes it to the memfd, which the server writes with pwrite (README "Status")';

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-security-'));
chmodSync(tmp, 0o755); // unprivileged peers must reach the mount inside
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);

// ---- helpers (the harness: test/harness.ts) ----

/** A peer that dropped to uid and gid `uid` (and no supplementary groups) before opening anything. */
async function as(t: Tap, newPeer: NewPeer, uid: number, name: string): Promise<Peer> {
  const p = await newPeer(name);
  ok(t, await p.cmd(`setuid ${uid} ${uid}`), `${name}: drops to uid ${uid}`);
  return p;
}

/** A bus made by `maker` (who keeps its control fd: the bus lives as long). */
async function makeBus(t: Tap, maker: Peer, dir: string, name: string, access: 'world' | 'group' | 'none'): Promise<string> {
  ok(t, await maker.cmd(`make ${dir}/control ${name} ${access} 64 1`), `${maker.name}: BUS_MAKE ${name} (${access})`);
  return `${dir}/${name}/bus`;
}

async function nothingQueued(t: Tap, p: Peer, what: string, ms = 150): Promise<void> {
  fails(t, await p.cmd(`recv wait:${ms}`, ms + 3000), 'EAGAIN', what);
}

/** The message with this cookie among p's next few (ID_ADD notifications come first), each freed. */
async function receive(p: Peer, cookie: number): Promise<Reply | null> {
  for (let i = 0; i < 8; i++) {
    const r = await p.cmd('recv wait:1000', 4000);
    if (!r.ok) return null;
    await p.cmd(`free ${r.kv.off}`);
    if (r.kv.cookie === String(cookie)) return r;
  }
  return null;
}

/** The records of a NAME_LIST answer (OWNER:CONNFLAGS:NAME:NAMEFLAGS), sorted. */
function records(r: Reply): string[] {
  return r.ok && r.kv.recs && r.kv.recs !== '-' ? r.kv.recs.split(',').sort() : [];
}

/** The names in a NAME_LIST answer. */
function names(r: Reply): string[] {
  return records(r).map((rec) => rec.split(':')[2]!).filter((n) => n !== '-');
}

// ---- 1. monitors ----

async function monitors(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_new: "only privileged connections can activate
  // and monitor" (EPERM); handle.c handle_ep_open: privileged is decided at
  // open, CAP_IPC_OWNER or the opener's euid equal to the bus owner's uid.
  const newPeer = peerSet(t, client);
  const rootBus = await makeBus(t, await newPeer('root maker'), dir, '0-mon', 'world');
  const otherBus = await makeBus(t, await as(t, newPeer, OTHER, 'other maker'), dir, `${OTHER}-mon`, 'world');
  const watcher = await hello(t, await newPeer('watcher (root)'), rootBus);
  ok(t, await watcher.cmd('match 1 id-add'), 'watcher: ID_ADD on the root bus');

  fails(t, await (await as(t, newPeer, NOBODY, 'nobody')).cmd(`connect ${rootBus} monitor`), 'EPERM',
    'uid 65534: HELLO with KDBUS_HELLO_MONITOR on a bus of root: EPERM');
  fails(t, await (await as(t, newPeer, NOBODY, 'nobody')).cmd(`connect ${otherBus} monitor`), 'EPERM',
    'uid 65534: a monitor on the bus of uid 65533: EPERM');
  const mixed = await newPeer('ruid 65533, euid 65534');
  ok(t, await mixed.cmd(`creds ${OTHER} ${NOBODY} ${OTHER} ${NOBODY} ${NOBODY} ${NOBODY}`), 'a peer with the bus owner\'s real uid, euid 65534');
  fails(t, await mixed.cmd(`connect ${otherBus} monitor`), 'EPERM',
    'the bus owner\'s uid as real uid only: EPERM (privilege goes by the euid at open)');
  await nothingQueued(t, watcher, 'no refused HELLO became a connection (no ID_ADD)');

  // the refusal is about privilege: the bus owner itself may
  const mon = await connect(t, await as(t, newPeer, OTHER, 'other monitor'), otherBus, 'monitor',
    'uid 65533: a monitor on its own bus is allowed');
  const a = await hello(t, await as(t, newPeer, NOBODY, 'A'), otherBus);
  const b = await hello(t, await as(t, newPeer, NOBODY, 'B'), otherBus);
  ok(t, await a.cmd(`send ${b.id} cookie:7 vec:16`), 'A → B');
  const seen = await receive(mon, 7);
  t.equal(seen?.kv.src, String(a.id), 'the owner\'s monitor sees it', { answer: seen?.line });
}

// ---- 2. policy ----

async function policy(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_policy_talk / _own_name: EPERM without TALK /
  // OWN; kdbus_conn_policy_see_name: on a custom endpoint a name is visible
  // only with SEE, and handle.c kdbus_cmd_conn_info answers ESRCH for an
  // invisible name, ENXIO for an id without a visible name; names.c
  // kdbus_name_list_write leaves invisible names out.
  const newPeer = peerSet(t, client);
  const bus = await makeBus(t, await newPeer('root maker'), dir, '0-pol', 'world');
  const r = await hello(t, await newPeer('R (root)'), bus);
  ok(t, await r.cmd('acquire sec.private'), 'root owns sec.private (privileged: no policy needed)');
  const n = await hello(t, await as(t, newPeer, NOBODY, 'N'), bus);

  fails(t, await n.cmd('send name cookie:1 name:sec.private vec:8'), 'EPERM', 'N → sec.private without TALK: EPERM');
  fails(t, await n.cmd(`send ${r.id} cookie:2 vec:8`), 'EPERM', 'N → its owner by id: EPERM');
  fails(t, await n.cmd(`call ${r.id} cookie:3 vec:8`), 'EPERM', 'N: a synchronous call to it: EPERM');
  await nothingQueued(t, r, 'nothing reached root');
  fails(t, await n.cmd('acquire sec.mine'), 'EPERM', 'N acquires sec.mine without OWN: EPERM');
  fails(t, await n.cmd('acquire sec.private queue'), 'EPERM', 'N queues for sec.private without OWN: EPERM');
  t.same(names(await r.cmd('list names,queued')), ['sec.private'], 'sec.mine has no owner and nobody waits for sec.private');

  // special connections and the bus database are privileged
  fails(t, await (await as(t, newPeer, NOBODY, 'N activator')).cmd(`connect ${bus} activator name:sec.mine policy:world:own`),
    'EPERM', 'N: HELLO as activator (bringing policy for sec.mine): EPERM');
  fails(t, await (await as(t, newPeer, NOBODY, 'N holder')).cmd(`connect ${bus} holder name:sec.mine policy:world:own`),
    'EPERM', 'N: HELLO as policy holder: EPERM');
  fails(t, await n.cmd('update name:sec.mine policy:world:own'), 'EOPNOTSUPP',
    'N: CONN_UPDATE with policy items (not a policy holder): EOPNOTSUPP');
  fails(t, await n.cmd('acquire sec.mine'), 'EPERM', 'and no policy came of it: still EPERM');

  // SEE on a custom endpoint
  ok(t, await (await newPeer('endpoint maker')).cmd(`epmake ${bus} 0-see world name:sec.public policy:world:talk`),
    'root: custom endpoint 0-see granting TALK (and so SEE) on sec.public only');
  const p = await hello(t, await newPeer('P (root)'), bus);
  ok(t, await p.cmd('acquire sec.public'), 'P owns sec.public');
  const e = await hello(t, await as(t, newPeer, NOBODY, 'E (on 0-see)'), `${dirname(bus)}/0-see`);
  t.same(names(await e.cmd('list names')), ['sec.public'], 'E: NAME_LIST shows sec.public, not sec.private');
  fails(t, await e.cmd('info sec.private'), 'ESRCH', 'E: CONN_INFO by the invisible name: ESRCH');
  fails(t, await e.cmd(`info ${r.id}`), 'ENXIO', 'E: CONN_INFO by the id of its owner: ENXIO');
  t.equal((await e.cmd('info sec.public')).kv.id, String(p.id), 'E: CONN_INFO by the visible name works');
  fails(t, await e.cmd('send name cookie:4 name:sec.private vec:8'), 'EPERM', 'E → sec.private: EPERM');
  await nothingQueued(t, r, 'nothing reached root');
}

// ---- 3. bus and endpoint files ----

async function files(t: Tap, dir: string): Promise<void> {
  // bus.c kdbus_bus_new: the bus directory is 0500 plus r-x for group/world
  // as MAKE_ACCESS_* say, owned by the creator's euid/egid; endpoint.c
  // kdbus_ep_new: an endpoint file is 0600 plus rw for group/world, owned by
  // its creator (the bus's for "bus"); the VFS refuses an open the mode
  // forbids (EACCES). util.c kdbus_verify_uid_prefix: bus and endpoint
  // names start with the creator's uid (EINVAL). handle.c
  // handle_ep_ioctl_endpoint_make: only a privileged handle makes
  // endpoints (EPERM).
  const newPeer = peerSet(t, client);
  t.same(await statOf(`${dir}/control`), { mode: 0o666, uid: 0, gid: 0, dir: false }, 'control: 0666 root:root');
  const closed = await makeBus(t, await as(t, newPeer, OTHER, 'other maker (none)'), dir, `${OTHER}-closed`, 'none');
  const group = await makeBus(t, await as(t, newPeer, OTHER, 'other maker (group)'), dir, `${OTHER}-group`, 'group');
  const world = await makeBus(t, await as(t, newPeer, OTHER, 'other maker (world)'), dir, `${OTHER}-world`, 'world');
  const modes: [string, number, number][] = [[closed, 0o500, 0o600], [group, 0o550, 0o660], [world, 0o555, 0o666]];
  for (const [bus, d, f] of modes) {
    t.same(await statOf(dirname(bus)), { mode: d, uid: OTHER, gid: OTHER, dir: true },
      `${dirname(bus)}/: ${d.toString(8)}, owned by its maker`);
    t.same(await statOf(bus), { mode: f, uid: OTHER, gid: OTHER, dir: false }, `its bus file: ${f.toString(8)}, owned by its maker`);
  }
  const n = await as(t, newPeer, NOBODY, 'N');
  fails(t, await n.cmd(`hello ${closed}`), 'EACCES', 'N opens the bus file of a bus without access flags: EACCES');
  fails(t, await n.cmd(`hello ${group}`), 'EACCES', 'N (not in group 65533) opens a group bus: EACCES');
  const member = await newPeer('N in group 65533');
  ok(t, await member.cmd(`creds ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} ${OTHER}`),
    'a peer becomes uid 65534 with supplementary group 65533');
  await hello(t, member, group);

  // BUS_MAKE and ENDPOINT_MAKE by the wrong user
  fails(t, await n.cmd(`make ${dir}/control ${OTHER}-stolen world 64 1`), 'EINVAL', 'N: BUS_MAKE named after uid 65533: EINVAL');
  fails(t, await n.cmd(`make ${dir}/control 0-stolen world 64 1`), 'EINVAL', 'N: BUS_MAKE named after root: EINVAL');
  for (const b of ['65533-stolen', '0-stolen']) t.equal(await statOf(`${dir}/${b}`), null, `no ${b}/ appeared`);
  fails(t, await n.cmd(`epmake ${world} ${NOBODY}-ep world`), 'EPERM', 'N: ENDPOINT_MAKE on the bus of uid 65533: EPERM');
  t.equal(await statOf(`${dirname(world)}/${NOBODY}-ep`), null, 'no endpoint appeared');
  const owner = await as(t, newPeer, OTHER, 'other endpoint maker');
  fails(t, await owner.cmd(`epmake ${world} ${NOBODY}-ep world`), 'EINVAL',
    'uid 65533 on its own bus: an endpoint named after another uid: EINVAL');
  ok(t, await owner.cmd(`epmake ${world} ${OTHER}-ep none`), 'uid 65533: ENDPOINT_MAKE 65533-ep on its own bus, no access flags');
  t.same(await statOf(`${dirname(world)}/${OTHER}-ep`), { mode: 0o600, uid: OTHER, gid: OTHER, dir: false },
    '65533-ep: 0600, owned by its maker');
  fails(t, await n.cmd(`hello ${dirname(world)}/${OTHER}-ep`), 'EACCES', 'N opens that endpoint: EACCES');
  ok(t, await n.cmd(`hello ${world}`), 'N says HELLO on the world bus file itself');
}

// ---- 4. pools: written by nobody else, read by nobody else ----

async function pools(t: Tap, dir: string): Promise<void> {
  // pool.c kdbus_pool_mmap: a writable mapping is EPERM and VM_MAYWRITE is
  // cleared (mprotect: EACCES); handle.c: the endpoint file has no write
  // operation (write(2): EINVAL), and mmap before HELLO is EPERM. The pool
  // belongs to the open file: a second open is a second connection.
  const newPeer = peerSet(t, client);
  const bus = await makeBus(t, await newPeer('root maker'), dir, '0-pool', 'world');
  const n = await as(t, newPeer, NOBODY, 'N');
  const hn = ok(t, await n.cmd(`hello ${bus}`), 'N: HELLO');
  n.id = Number(hn.kv.id);
  const o = await hello(t, await as(t, newPeer, OTHER, 'O'), bus);
  const r = await hello(t, await newPeer('R (root)'), bus);

  const mapped = await n.cmd('mapw');
  t.equal(mapped.kv.mmap, 'EPERM', 'N: mmap(PROT_WRITE, MAP_SHARED) of its pool: EPERM', { todo: WRITABLE_MAP, answer: mapped.line });
  t.equal(mapped.kv.mprotect, 'EACCES', 'N: mprotect of its read-only pool mapping to writable: EACCES', { todo: WRITABLE_MAP });
  const all = await n.cmd('scribble mmap all');
  t.equal(all.err, 'EPERM', 'N: a writable mapping to fill its whole pool with 0x5a: EPERM', { todo: WRITABLE_MAP, answer: all.line });
  fails(t, await n.cmd(`send ${o.id} cookie:9 vec:3000`), 'EPERM', 'N → O (another uid, no policy): still EPERM');
  ok(t, await r.cmd(`send ${o.id} cookie:9 vec:3000`), 'root → O');
  const oFirst = await o.cmd('recv');
  t.equal(oFirst.kv.pattern, 'ok', 'O\'s messages are untouched', { answer: oFirst.line });
  if (oFirst.ok) await o.cmd(`free ${oFirst.kv.off}`);

  // N's pool holds a message it has not freed: nobody else may see it
  ok(t, await r.cmd(`send ${n.id} cookie:10 vec:65536`), 'root → N: 64 KiB, which N receives and keeps');
  const got = ok(t, await n.cmd('recv'), 'N: RECV (the slice stays allocated)');
  t.equal(got.kv.cookie, '10', 'N gets it, whatever it wrote into its pool before');
  t.equal(got.kv.pattern, 'ok', 'intact: the server writes what it delivers, and reads nothing back');
  const proc = `/proc/${n.pid}`;
  fails(t, await o.cmd(`open ${proc}/fd/${hn.kv.fd}`), 'EACCES', 'O (uid 65533) opens N\'s connection through /proc/PID/fd: EACCES');
  fails(t, await o.cmd(`open ${proc}/map_files/${hn.kv.map}`), 'EACCES', 'O opens N\'s pool mapping through /proc/PID/map_files: EACCES');
  fails(t, await o.cmd(`open ${proc}/mem`), 'EACCES', 'O opens /proc/PID/mem of N: EACCES');
  // kdbus makes a second connection of a reopened file; kdbusfs opens each
  // file (FUSE inode) once at a time (README "Containers"), so a reopen
  // through /proc reaches no pool at all
  fails(t, await n.cmd(`reopen /proc/self/fd/${hn.kv.fd}`), 'EBUSY',
    'N reopens its own connection through /proc/self/fd: EBUSY (kdbus: a new connection)');
  const again = ok(t, await n.cmd(`reopen ${bus}`), 'N opens the bus file again');
  t.equal(again.kv.premap, 'EPERM', 'mmap of the new handle before HELLO: EPERM',
    { todo: 'FUSE cannot refuse an mmap; the new handle maps its own pool, empty until HELLO', answer: again.line });
  t.not(again.kv.id, String(n.id), 'the new handle is a new connection');
  t.equal(again.kv.nonzero, '0', 'whose fresh pool holds none of N\'s bytes', { answer: again.line });
  const fresh = ok(t, await o.cmd(`reopen ${bus}`), 'O opens the bus file once more');
  t.equal(fresh.kv.nonzero, '0', 'its new pool holds nothing either', { answer: fresh.line });

  // offsets: FREE takes only slices of one's own pool; the offsets RECV and
  // CONN_INFO carry in are outputs (handle.c zeroes RECV's before
  // kdbus_cmd_msg_recv looks), never read
  fails(t, await o.cmd(`free ${got.kv.off}`), 'ENXIO', 'O: FREE of the offset of N\'s slice: ENXIO (pool.c kdbus_pool_release_offset)');
  fails(t, await o.cmd(`free ${Number(got.kv.off) + 8}`), 'ENXIO', 'O: FREE of an offset inside a slice: ENXIO');
  fails(t, await o.cmd(`free ${2 ** 40}`), 'ENXIO', 'O: FREE beyond its pool: ENXIO');
  ok(t, await r.cmd(`send ${o.id} cookie:11 vec:100`), 'root → O');
  const oGot = await o.cmd(`recv off:${got.kv.off}`);
  t.ok(oGot.ok, 'O: RECV with msg.offset preset to N\'s slice: the input is ignored', { answer: oGot.line });
  t.equal(oGot.kv.cookie, '11', 'O receives its own message');
  t.equal(oGot.kv.inpool, 'yes', 'in its own pool');
  t.equal(oGot.kv.pattern, 'ok', 'intact');
  const info = ok(t, await o.cmd(`info ${r.id} off:${got.kv.off}`), 'O: CONN_INFO with its offset preset to N\'s slice: the input is ignored');
  t.equal(info.kv.id, String(r.id), 'O gets the info it asked for');
  t.equal(info.kv.free, '0', 'in a slice of its own pool (FREE works)');
  ok(t, await n.cmd(`free ${got.kv.off}`), 'N still frees its slice');
  fails(t, await n.cmd(`free ${got.kv.off}`), 'ENXIO', 'once: a second FREE is ENXIO');

  // addresses: only the caller's own memory is read (message.c, EFAULT on
  // a failed copy_from_user); PAYLOAD_OFF is the kernel's item (EINVAL)
  fails(t, await o.cmd(`send ${n.id} cookie:12 badaddr`), 'EFAULT', 'O: SEND with msg_address on an unmapped page: EFAULT');
  fails(t, await o.cmd(`send ${n.id} cookie:13 kaddr`), 'EFAULT', 'O: SEND with msg_address in kernel space: EFAULT');
  fails(t, await o.cmd(`send ${o.id} cookie:14 badvec:64`), 'EFAULT', 'O: a PAYLOAD_VEC on an unmapped page: EFAULT');
  fails(t, await o.cmd(`send ${o.id} cookie:15 pooloff:64:${got.kv.off}`), 'EINVAL', 'O: a PAYLOAD_OFF item pointing at a pool: EINVAL');
  await nothingQueued(t, n, 'nothing reached N');
  await nothingQueued(t, o, 'nothing reached O');
}

/** write(2) on a connection fd: kdbus says EINVAL (the file has no write operation); a passthrough pool cannot. */
async function moved(t: Tap, dir: string, passthrough: boolean): Promise<void> {
  // A message sent to an activatable name moves between pools:
  // implementer → activator when the implementer goes, activator → the next
  // implementer (names.c kdbus_name_entry_release, kdbus_name_acquire;
  // connection.c kdbus_conn_move_messages copies the slice pool to pool).
  // What an implementer wrote into its own pool must not travel with it.
  const newPeer = peerSet(t, client);
  const bus = await makeBus(t, await newPeer('root maker'), dir, '0-move', 'world');
  await connect(t, await newPeer('activator'), bus, 'activator name:sec.svc policy:world:own',
    'root: activator for sec.svc, granting OWN to everyone');
  const s = await hello(t, await newPeer('S (root)'), bus);
  const i1 = await hello(t, await as(t, newPeer, NOBODY, 'I1'), bus);
  ok(t, await i1.cmd('acquire sec.svc'), 'I1 (uid 65534) implements sec.svc');
  const sent = ok(t, await s.cmd('send name cookie:20 name:sec.svc vec:5000 vec:3'), 'S → sec.svc: 5003 bytes');
  const viaWrite = await i1.cmd('scribble write');
  fails(t, viaWrite, 'EINVAL', 'I1: pwrite(2) over the queued payload in its pool: EINVAL',
    passthrough ? { todo: PASSTHROUGH_WRITE } : {});
  const viaMap = await i1.cmd('scribble mmap');
  t.equal(viaMap.err, 'EPERM', 'I1: a writable mapping to overwrite it: EPERM', { todo: WRITABLE_MAP, answer: viaMap.line });
  ok(t, await i1.cmd('bye'), 'I1 goes away: the message goes back to the activator');
  const i2 = await hello(t, await newPeer('I2 (root)'), bus);
  ok(t, await i2.cmd('acquire sec.svc'), 'I2 takes sec.svc over: the message moves to it');
  const got = await i2.cmd('recv wait:1000');
  t.equal(got.kv.cookie, '20', 'I2 receives S\'s message', { answer: got.line });
  t.equal(got.kv.src, String(s.id), 'from S');
  t.equal(got.kv.stream, sent.kv.stream, 'with the payload S sent, not what I1 wrote', { answer: got.line });
  t.equal(got.kv.pattern, 'ok', 'every byte');
}

// ---- 5. privileged HELLO items ----

async function impersonation(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_new: "privileged processes can impersonate
  // somebody else": KDBUS_ITEM_CREDS, PIDS and SECLABEL in HELLO are EPERM
  // for everyone else, before their contents are looked at.
  const newPeer = peerSet(t, client);
  const bus = await makeBus(t, await as(t, newPeer, OTHER, 'other maker'), dir, `${OTHER}-fake`, 'world');
  const w = await hello(t, await newPeer('watcher (root)'), bus);
  ok(t, await w.cmd('match 1 id-add'), 'watcher: ID_ADD');
  for (const item of ['fake-creds:0', `fake-creds:${OTHER}`, 'fake-pids:1', 'fake-seclabel:unconfined']) {
    fails(t, await (await as(t, newPeer, NOBODY, `N ${item}`)).cmd(`connect ${bus} ${item}`), 'EPERM',
      `uid 65534: HELLO with ${item}: EPERM`);
  }
  const mixed = await newPeer('ruid 65533, euid 65534');
  ok(t, await mixed.cmd(`creds ${OTHER} ${NOBODY} ${OTHER} ${NOBODY} ${NOBODY} ${NOBODY}`), 'a peer with the bus owner\'s real uid, euid 65534');
  fails(t, await mixed.cmd(`connect ${bus} fake-creds:0`), 'EPERM', 'it fakes credentials: EPERM');
  await nothingQueued(t, w, 'no refused HELLO became a connection');

  // the bus owner may; CONN_INFO shows what it claimed, its messages carry
  // no process metadata at all (connection.c kdbus_conn_unicast and bus.c
  // broadcasts collect it only if !conn_src->faked_meta), only connection
  // metadata (TIMESTAMP, NAMES, CONN_DESCRIPTION)
  const f = await connect(t, await as(t, newPeer, OTHER, 'F (bus owner)'), bus, 'fake-creds:4242 fake-pids:1 desc:faker',
    'uid 65533 on its own bus: HELLO with faked CREDS and PIDS');
  const rcv = await connect(t, await as(t, newPeer, OTHER, 'receiver'), bus, 'recv:0x2007',
    'receiver: attach TIMESTAMP|CREDS|PIDS|CONN_DESCRIPTION');
  const info = await rcv.cmd(`infometa ${f.id} 0x6`);
  t.equal(info.kv.creds, '4242,4242,4242,4242,4242,4242,4242,4242', 'CONN_INFO shows the faked credentials', { answer: info.line });
  t.equal(info.kv.pids, '1,1,1', 'and the faked pids (of a process that exists: kdbus_meta_proc_fake)');
  ok(t, await f.cmd(`send ${rcv.id} cookie:30 vec:8`), 'F → receiver');
  const meta = await rcv.cmd('recvmeta wait:1000');
  t.equal(meta.kv.creds, '-', 'its message carries no CREDS', { answer: meta.line });
  t.equal(meta.kv.pids, '-', 'and no PIDS', { answer: meta.line });
  t.equal(meta.kv.desc, 'faker', 'but its CONN_DESCRIPTION', { answer: meta.line });
  const metaTypes = (meta.kv.metatypes ?? '').split(',').map((h) => parseInt(h, 16)).filter((x) => x >= ITEM.TIMESTAMP);
  t.same(metaTypes.sort(), [ITEM.TIMESTAMP, ITEM.CONN_DESCRIPTION].sort(), 'and TIMESTAMP: connection metadata only', { answer: meta.line });
}

// ---- the mount ----

await t.test('kdbusfs mount (passthrough pools)', async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir);
  if (!server) return;

  await t.test('1. monitors need privilege', (t) => monitors(t, dir));
  await t.test('2. TALK, OWN and SEE against policy; the bus database is privileged', (t) => policy(t, dir));
  await t.test('3. bus and endpoint files: modes, owners, names, who makes them', (t) => files(t, dir));
  await t.test('4a. pools: no writable mapping, no reading across connections, own memory only', (t) => pools(t, dir));
  await t.test('4b. pools: an implementer\'s writes do not travel with a moved message', (t) => moved(t, dir, true));
  await t.test('5. faked credentials, pids and security label', (t) => impersonation(t, dir));

  t.equal(live.size, 0, 'no peer process is left');
  t.notMatch(server.stderr, /internal error|a kdbusfs bug/, 'the server logged no internal error');
  await stopServer(t, server, dir);
});

// Page-cache pools reach the client through FUSE, not a shared file: the
// pool sections again, on such a mount.
await t.test('kdbusfs mount --no-passthrough (page-cache pools)', async (t) => {
  const dir = join(tmp, 'mnt-pc');
  mkdirSync(dir);
  const server = await startServer(t, dir, { args: ['--no-passthrough'] });
  if (!server) return;

  await t.test('4a. pools: no writable mapping, no reading across connections, own memory only', (t) => pools(t, dir));
  await t.test('4b. pools: an implementer\'s writes do not travel with a moved message', (t) => moved(t, dir, false));

  t.equal(live.size, 0, 'no peer process is left');
  t.notMatch(server.stderr, /internal error|a kdbusfs bug/, 'the server logged no internal error');
  await stopServer(t, server, dir);
});

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'mnt')) && !mountType(join(tmp, 'mnt-pc'))) rmSync(tmp, { recursive: true, force: true });
});
