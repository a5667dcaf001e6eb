// End to end: a real `kdbusfs mount DIR` in its own process, driven by real
// kdbus clients (test/clients/kdbus-peer.c, one process per peer, written
// against kdbus.h only), stopped with SIGTERM. The whole scenario runs twice:
// with passthrough pools (the default) and with page-cache pools
// (--no-passthrough).
//
// This process never touches the mount synchronously: a stuck server can
// only make an awaited promise time out, never block the event loop. Every
// wait has a timeout.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  compileClient, fails, live, mountType, needRootAndFuse, ok, Peer, peerSet, sleep, startServer, statOf, stopServer,
  until, withTimeout, type NewPeer, type Reply, type Tap,
} from './harness.js';

const NOBODY = 65534;
const POOL = 16 << 20;
const MiB = 1 << 20;
const VEC_MAX = 2 * MiB; // KDBUS_MSG_MAX_PAYLOAD_VEC_SIZE
const ACCEPT_FD = 1; // KDBUS_HELLO_ACCEPT_FD, the flags every peer says HELLO with
const MSG_SIGNAL = 4;
const POLLIN = 0x1;
/** poll(2) / ppoll(2) syscall numbers, to see a peer blocked in poll */
const POLL_SYSCALLS: Record<string, number[]> = { x64: [7, 271], arm64: [73], ia32: [168, 309] };

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-integration-'));
chmodSync(tmp, 0o755); // uid 65534 peers must reach the mounts inside
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client);

// ---- helpers (the harness: test/harness.ts) ----

/** A test's peers (kdbus-peer processes), killed when the test ends. */
function peers(t: Tap): NewPeer {
  return peerSet(t, client);
}

/** HELLO on bus; sets and returns p.id (named "P HELLO", not the harness's "P: HELLO"). */
async function hello(t: Tap, p: Peer, bus: string): Promise<Peer> {
  const r = ok(t, await p.cmd(`hello ${bus}`), `${p.name} HELLO`);
  p.id = Number(r.kv.id ?? 0);
  return p;
}

/** A bus made by a root peer that keeps its control fd open (bloom parameters, named "BUS_MAKE name"). */
async function makeBus(t: Tap, newPeer: (n: string) => Promise<Peer>, dir: string, name: string, bloom = 64, nHash = 1):
    Promise<{ maker: Peer; path: string }> {
  const maker = await newPeer(`maker(${name})`);
  ok(t, await maker.cmd(`make ${dir}/control ${name} world ${bloom} ${nHash}`), `BUS_MAKE ${name}`);
  return { maker, path: `${dir}/${name}/bus` };
}

/** Checks one received message against what was sent. */
function sameMessage(t: Tap, got: Reply, want: { src: number; dst: number | 'bcast'; cookie: number; stream: string }, what: string): void {
  t.ok(got.ok, `${what}: received`, { answer: got.line });
  if (!got.ok) return;
  t.equal(got.kv.src, String(want.src), `${what}: src_id is the sender`);
  t.equal(got.kv.dst, String(want.dst), `${what}: dst_id`);
  t.equal(got.kv.cookie, String(want.cookie), `${what}: cookie`);
  t.equal(got.kv.ptype, 'dbus', `${what}: payload_type DBusDBus`);
  t.equal(got.kv.inpool, 'yes', `${what}: message and payload lie inside the pool`);
  t.equal(got.kv.stream, want.stream, `${what}: every payload byte arrived (size:fnv1a)`,
    { answer: got.line });
  t.equal(got.kv.pattern, 'ok', `${what}: every byte matches the pattern`, { answer: got.line });
}

// ---- the scenarios ----

async function tree(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const control = await statOf(`${dir}/control`);
  t.same(control, { mode: 0o666, uid: 0, gid: 0, dir: false }, 'control is a file, mode 0666, root:root');

  const rootMaker = await newPeer('root maker');
  ok(t, await rootMaker.cmd(`make ${dir}/control 0-tree world 64 1`), 'root: BUS_MAKE 0-tree with MAKE_ACCESS_WORLD');
  t.same(await statOf(`${dir}/0-tree`), { mode: 0o555, uid: 0, gid: 0, dir: true }, '0-tree/ is mode 0555, root:root');
  t.same(await statOf(`${dir}/0-tree/bus`), { mode: 0o666, uid: 0, gid: 0, dir: false }, '0-tree/bus is mode 0666, root:root');

  const privMaker = await newPeer('root maker, no access flags');
  ok(t, await privMaker.cmd(`make ${dir}/control 0-private none 64 1`), 'root: BUS_MAKE 0-private without access flags');
  t.same(await statOf(`${dir}/0-private`), { mode: 0o500, uid: 0, gid: 0, dir: true }, '0-private/ is mode 0500');
  t.same(await statOf(`${dir}/0-private/bus`), { mode: 0o600, uid: 0, gid: 0, dir: false }, '0-private/bus is mode 0600');

  const userMaker = await newPeer('nobody maker');
  ok(t, await userMaker.cmd(`setuid ${NOBODY} ${NOBODY}`), 'maker drops to uid 65534');
  fails(t, await userMaker.cmd(`make ${dir}/control 0-stolen world 64 1`), 'EINVAL', 'uid 65534 cannot make a bus named 0-…');
  ok(t, await userMaker.cmd(`make ${dir}/control ${NOBODY}-tree world 64 1`), 'uid 65534: BUS_MAKE 65534-tree');
  t.same(await statOf(`${dir}/${NOBODY}-tree`), { mode: 0o555, uid: NOBODY, gid: NOBODY, dir: true },
    '65534-tree/ is mode 0555, owned by its creator');
  t.same(await statOf(`${dir}/${NOBODY}-tree/bus`), { mode: 0o666, uid: NOBODY, gid: NOBODY, dir: false },
    '65534-tree/bus is mode 0666, owned by its creator');
  const listed = await withTimeout(readdir(dir), 5000, 'readdir');
  for (const n of ['control', '0-tree', '0-private', `${NOBODY}-tree`]) t.ok(listed.includes(n), `readdir lists ${n}`);

  const user = await newPeer('nobody peer');
  ok(t, await user.cmd(`setuid ${NOBODY} ${NOBODY}`), 'peer drops to uid 65534');
  await hello(t, user, `${dir}/${NOBODY}-tree/bus`);

  ok(t, await rootMaker.cmd('unmake'), 'root maker closes its control fd');
  t.ok(await until(async () => (await statOf(`${dir}/0-tree`)) === null, 3000),
    'closing the control fd removes 0-tree/');
  ok(t, await userMaker.cmd('unmake'), 'uid 65534 maker closes its control fd');
  t.ok(await until(async () => (await statOf(`${dir}/${NOBODY}-tree`)) === null, 3000),
    'closing the control fd removes 65534-tree/');
  fails(t, await user.cmd(`send ${user.id} cookie:1 vec:8`), 'ECONNRESET', 'a connection on the removed bus is shut down');
  privMaker.kill();
  await withTimeout(privMaker.exited, 5000, 'maker exits');
  t.ok(await until(async () => (await statOf(`${dir}/0-private`)) === null, 3000),
    'the control fd closed by process exit removes 0-private/');
  const after = await withTimeout(readdir(dir), 5000, 'readdir');
  t.same(after, ['control'], 'only control is left in the root');
}

async function helloPool(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-hello', 64, 3);
  const a = await newPeer('A');
  const ra = ok(t, await a.cmd(`hello ${path} ${POOL}`), 'A: HELLO with a 16 MiB pool, pool mapped PROT_READ MAP_SHARED');
  a.id = Number(ra.kv.id);
  t.equal(a.id, 1, 'the first connection of a bus has id 1');
  t.equal(ra.kv.bloom_items, '1', 'one BLOOM_PARAMETER item at hello.offset');
  t.equal(ra.kv.bloom_size, '64', 'its size is the bus bloom size');
  t.equal(ra.kv.bloom_n_hash, '3', 'its n_hash is the bus n_hash');
  t.equal(ra.kv.items_size, '40', 'items_size: the item list (8) + one BLOOM_PARAMETER item (32)');
  t.equal(ra.kv.free, '0', 'FREE of hello.offset works');
  const uuid = ra.kv.id128 ?? '';
  t.match(uuid, /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/, 'id128 is a version 4, DCE variant UUID');

  ok(t, await a.cmd('match 1 id-add'), 'A: MATCH_ADD ID_ADD');
  ok(t, await a.cmd('match 2 id-remove'), 'A: MATCH_ADD ID_REMOVE');

  const b = await newPeer('B');
  const rb = ok(t, await b.cmd(`hello ${path}`), 'B: HELLO');
  b.id = Number(rb.kv.id);
  t.equal(b.id, 2, 'the next connection gets id 2');
  t.equal(rb.kv.id128, uuid, 'both connections see the same bus id128');
  t.equal(rb.kv.bloom_size, '64', 'B sees the same bloom parameter');

  const add = await a.cmd('recv wait:2000');
  t.ok(add.ok, 'A receives a notification', { answer: add.line });
  t.equal(add.kv.ptype, 'kernel', 'payload_type KERNEL');
  t.equal(add.kv.src, '0', 'src_id KDBUS_SRC_ID_KERNEL');
  t.equal(add.kv.dst, 'bcast', 'dst_id KDBUS_DST_ID_BROADCAST');
  t.equal(add.kv.notify, `id-add:${b.id}:${ACCEPT_FD}`, 'ID_ADD of B, with its HELLO flags');
  ok(t, await a.cmd(`free ${add.kv.off}`), 'A frees the notification');
  fails(t, await a.cmd('recv'), 'EAGAIN', 'nothing else for A (no ID_ADD for itself)');

  const c = await newPeer('C');
  await hello(t, c, path);
  const addC = await a.cmd('recv wait:2000');
  t.equal(addC.kv.notify, `id-add:${c.id}:${ACCEPT_FD}`, 'A sees ID_ADD of C', { answer: addC.line });
  fails(t, await b.cmd('recv'), 'EAGAIN', 'B, without matches, gets no notification');

  ok(t, await b.cmd('bye'), 'B closes its connection');
  const rmB = await a.cmd('recv wait:3000');
  t.equal(rmB.kv.notify, `id-remove:${b.id}:${ACCEPT_FD}`, 'A sees ID_REMOVE of B', { answer: rmB.line });
  c.child.stdin!.end(); // EOF: the peer exits and the kernel closes its connection
  t.equal((await withTimeout(c.exited, 5000, 'C exits')).code, 0, 'C exits');
  const rmC = await a.cmd('recv wait:3000');
  t.equal(rmC.kv.notify, `id-remove:${c.id}:${ACCEPT_FD}`, 'A sees ID_REMOVE of C, closed by its exit', { answer: rmC.line });
  fails(t, await a.cmd('recv'), 'EAGAIN', 'and nothing more');
}

async function payloads(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-payload');
  const a = await hello(t, await newPeer('sender'), path);
  const b = await hello(t, await newPeer('receiver'), path);
  let cookie = 100;

  const roundTrip = async (parts: string, what: string, expectParts?: RegExp): Promise<void> => {
    const c = ++cookie;
    const sent = await a.cmd(`send ${b.id} cookie:${c} ${parts}`, 10_000);
    t.ok(sent.ok, `${what}: SEND`, { answer: sent.line });
    if (!sent.ok) return;
    const got = await b.cmd('recv', 10_000);
    sameMessage(t, got, { src: a.id, dst: b.id, cookie: c, stream: sent.kv.stream! }, what);
    if (expectParts) t.match(got.kv.parts, expectParts, `${what}: payload items`);
    if (!got.ok) return;
    ok(t, await b.cmd(`free ${got.kv.off}`), `${what}: FREE`);
    fails(t, await b.cmd(`free ${got.kv.off}`), 'ENXIO', `${what}: a second FREE is ENXIO`);
  };

  await roundTrip('vec:1', 'one 1 B vector');
  await roundTrip('vec:7', 'one 7 B vector');
  await roundTrip('vec:4096', 'one 4 KiB vector');
  await roundTrip(`vec:${MiB}`, 'one 1 MiB vector');
  await roundTrip(`vec:${VEC_MAX}`, 'one 2 MiB vector (the limit)');
  await roundTrip(`vec:1 vec:7 null:5 vec:4096 vec:${MiB}`, 'five vectors, one of them NULL padding',
    /^off:1,off:7,null:5,off:4096,off:1048576$/);
  await roundTrip(`vec:${VEC_MAX - 16} null:8 vec:8`, 'vectors adding up to exactly 2 MiB, with NULL padding');

  fails(t, await a.cmd(`send ${b.id} cookie:1 vec:${VEC_MAX + 1}`), 'EMSGSIZE', 'one vector of 2 MiB + 1 is EMSGSIZE');
  fails(t, await a.cmd(`send ${b.id} cookie:1 vec:${VEC_MAX} vec:1`), 'EMSGSIZE', 'vectors adding up to 2 MiB + 1 are EMSGSIZE');
  fails(t, await a.cmd(`send ${b.id} cookie:1 vec:${VEC_MAX - 8} null:8 vec:1`), 'EMSGSIZE',
    'NULL vectors count toward the 2 MiB (2 MiB - 8 + 8 NULL + 1)');

  await roundTrip('memfd:1', 'a sealed 1 B memfd');
  await roundTrip('memfd:4096', 'a sealed 4 KiB memfd');
  await roundTrip(`memfd:${VEC_MAX}`, 'a sealed 2 MiB memfd');
  await roundTrip('vec:100 memfd:5000:4096 vec:3', 'vector, memfd range from offset 4096, vector');

  fails(t, await a.cmd(`send ${b.id} cookie:1 memfd-unsealed:64`), 'ETXTBSY', 'an unsealed memfd is ETXTBSY');
  fails(t, await a.cmd(`send ${b.id} cookie:1 memfd-someseals:64`), 'ETXTBSY', 'a memfd sealed SHRINK|GROW only is ETXTBSY');
  const rest = await b.cmd('drain');
  t.equal(rest.kv.n, '0', 'no failed SEND queued anything', { answer: rest.line });
}

async function broadcast(t: Tap, dir: string): Promise<void> {
  // kdbus_match_bloom (match.c): a mask matches when every bit it has is set
  // in the filter, (filter & mask) == mask. An all-zero mask matches every
  // filter. (kdbus.txt 10.4 describes it the other way round; the code is
  // what programs like sd-bus were written against.)
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-bcast');
  const a = await hello(t, await newPeer('sender'), path);
  const receivers = [
    { name: 'mask 0x08', mask: '8', gets: true },
    { name: 'mask 0x28', mask: '28', gets: true },
    { name: 'mask 0 (wildcard)', mask: '0', gets: true },
    { name: 'mask 0x0a', mask: 'a', gets: false },
    { name: 'mask all ones', mask: 'all', gets: false },
    { name: 'no match', mask: null, gets: false },
  ];
  const peersBy = new Map<string, Peer>();
  for (const r of receivers) {
    const p = await hello(t, await newPeer(r.name), path);
    peersBy.set(r.name, p);
    if (r.mask !== null) ok(t, await p.cmd(`match 7 bloom:${r.mask}`), `${r.name}: MATCH_ADD BLOOM_MASK`);
  }
  ok(t, await a.cmd('match 7 bloom:0'), 'the sender matches every broadcast too');

  fails(t, await a.cmd('send bcast cookie:1 bloom:28 vec:8'), 'EBADMSG', 'a broadcast without SIGNAL is EBADMSG');
  fails(t, await a.cmd('send bcast cookie:1 signal vec:8'), 'EBADMSG', 'a SIGNAL without a bloom filter is EBADMSG');
  const sent = ok(t, await a.cmd('send bcast cookie:40 signal bloom:28 vec:100 vec:3000'),
    'SIGNAL to KDBUS_DST_ID_BROADCAST with bloom filter 0x28 (bits 3 and 5)');
  for (const r of receivers) {
    const p = peersBy.get(r.name)!;
    const got = await p.cmd('recv');
    if (!r.gets) {
      fails(t, got, 'EAGAIN', `${r.name}: does not get the signal`);
      continue;
    }
    sameMessage(t, got, { src: a.id, dst: 'bcast', cookie: 40, stream: sent.kv.stream! }, `${r.name}: gets the signal`);
    t.equal(Number(got.kv.flags) & MSG_SIGNAL, MSG_SIGNAL, `${r.name}: the message is a SIGNAL`);
    if (got.ok) ok(t, await p.cmd(`free ${got.kv.off}`), `${r.name}: FREE`);
  }
  fails(t, await a.cmd('recv'), 'EAGAIN', 'the sender does not get its own broadcast');
}

async function priorities(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-prio');
  const a = await hello(t, await newPeer('sender'), path);
  const b = await hello(t, await newPeer('receiver'), path);
  const prio: Record<number, number> = { 1: 5, 2: -3, 3: 10, 4: 0 };
  for (const [c, p] of Object.entries(prio)) ok(t, await a.cmd(`send ${b.id} cookie:${c} prio:${p} vec:64`), `send cookie ${c} priority ${p}`);

  const peek1 = await b.cmd('recv peek prio:max');
  t.equal(peek1.kv.cookie, '2', 'PEEK with USE_PRIORITY shows the lowest value (-3)', { answer: peek1.line });
  t.equal(peek1.kv.prio, '-3', 'and its priority');
  t.equal(peek1.kv.pattern, 'ok', 'its payload is readable');
  if (peek1.ok) ok(t, await b.cmd(`free ${peek1.kv.off}`), 'FREE of the peeked slice');
  const peek2 = await b.cmd('recv peek prio:max');
  t.equal(peek2.kv.cookie, '2', 'PEEK again: the message is still queued', { answer: peek2.line });
  if (peek2.ok) await b.cmd(`free ${peek2.kv.off}`);
  const fifo = await b.cmd('recv peek');
  t.equal(fifo.kv.cookie, '1', 'PEEK without USE_PRIORITY shows the oldest', { answer: fifo.line });
  if (fifo.ok) await b.cmd(`free ${fifo.kv.off}`);
  fails(t, await b.cmd('recv prio:-4'), 'ENOMSG', 'nothing at or below priority -4: ENOMSG');

  const first = await b.cmd('recv prio:max');
  t.equal(first.kv.cookie, '2', 'RECV with USE_PRIORITY dequeues priority -3', { answer: first.line });
  t.equal(first.kv.pattern, 'ok', 'with its payload intact');
  if (first.ok) ok(t, await b.cmd(`free ${first.kv.off}`), 'FREE');
  ok(t, await b.cmd('recv drop'), 'RECV DROP');
  const second = await b.cmd('recv prio:max');
  t.equal(second.kv.cookie, '4', 'DROP removed the oldest (cookie 1); next by priority is 0', { answer: second.line });
  if (second.ok) await b.cmd(`free ${second.kv.off}`);
  const third = await b.cmd('recv prio:max');
  t.equal(third.kv.cookie, '3', 'then priority 10', { answer: third.line });
  if (third.ok) await b.cmd(`free ${third.kv.off}`);
  fails(t, await b.cmd('recv prio:max'), 'EAGAIN', 'the queue is empty: EAGAIN');
}

async function nonRoot(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-users');
  const r = await hello(t, await newPeer('root'), path);
  const u1 = await newPeer('nobody 1');
  ok(t, await u1.cmd(`setuid ${NOBODY} ${NOBODY}`), 'peer 1 drops to uid 65534 before opening');
  await hello(t, u1, path);
  const u2 = await newPeer('nobody 2');
  ok(t, await u2.cmd(`setuid ${NOBODY} ${NOBODY}`), 'peer 2 drops to uid 65534 before opening');
  await hello(t, u2, path);

  fails(t, await u1.cmd(`send ${r.id} cookie:60 vec:16`), 'EPERM', 'uid 65534 → root connection: EPERM');
  const s61 = ok(t, await u1.cmd(`send ${u2.id} cookie:61 vec:16`), 'uid 65534 → uid 65534: SEND');
  const g61 = await u2.cmd('recv');
  sameMessage(t, g61, { src: u1.id, dst: u2.id, cookie: 61, stream: s61.kv.stream! }, 'uid 65534 → uid 65534');
  const s62 = ok(t, await r.cmd(`send ${u1.id} cookie:62 vec:16`), 'root (bus owner, privileged) → uid 65534: SEND');
  const g62 = await u1.cmd('recv');
  sameMessage(t, g62, { src: r.id, dst: u1.id, cookie: 62, stream: s62.kv.stream! }, 'root → uid 65534');
  fails(t, await r.cmd('recv'), 'EAGAIN', 'nothing reached the root connection');

  // Broadcasts: a receiver needs TALK access to the sender.
  for (const p of [r, u1, u2]) ok(t, await p.cmd('match 1 bloom:0'), `${p.name}: match every broadcast`);
  const s63 = ok(t, await u1.cmd('send bcast cookie:63 signal bloom:1 vec:16'), 'uid 65534 broadcasts');
  sameMessage(t, await u2.cmd('recv'), { src: u1.id, dst: 'bcast', cookie: 63, stream: s63.kv.stream! }, 'same uid gets it');
  sameMessage(t, await r.cmd('recv'), { src: u1.id, dst: 'bcast', cookie: 63, stream: s63.kv.stream! }, 'privileged root gets it');
  ok(t, await r.cmd('send bcast cookie:64 signal bloom:1 vec:16'), 'root broadcasts');
  fails(t, await u1.cmd('recv'), 'EAGAIN', 'uid 65534 does not get the broadcast of root');
}

async function badInput(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-bad');
  const a = await hello(t, await newPeer('A'), path);
  const b = await hello(t, await newPeer('B'), path);
  const w = await hello(t, await newPeer('watcher'), path);
  ok(t, await w.cmd('match 1 id-remove'), 'watcher: MATCH_ADD ID_REMOVE');

  fails(t, await a.cmd(`send ${b.id} cookie:1 badaddr`), 'EFAULT', 'SEND with msg_address on an unmapped page: EFAULT');
  const s70 = ok(t, await a.cmd(`send ${b.id} cookie:70 vec:4096`), 'the same connection sends again');
  sameMessage(t, await b.cmd('recv'), { src: a.id, dst: b.id, cookie: 70, stream: s70.kv.stream! }, 'after EFAULT');

  const h = await newPeer('unaligned');
  const un = await h.cmd(`hello-unaligned ${path}`);
  fails(t, un, 'EFAULT', 'HELLO from a pointer 4 mod 8: EFAULT');
  t.equal(un.kv.aligned, '0', 'an aligned HELLO on the same fd then works', { answer: un.line });
  const rmH = await w.cmd('recv wait:3000');
  t.equal(rmH.kv.notify, `id-remove:${un.kv.aligned_id}:${ACCEPT_FD}`, 'and its close is an ID_REMOVE', { answer: rmH.line });
  if (rmH.ok) await w.cmd(`free ${rmH.kv.off}`);

  const spammer = await hello(t, await newPeer('spammer'), path);
  const spam = await spammer.cmd(`spam ${b.id} 65536`);
  t.equal(spam.kv.first, '0', 'the spammer is sending', { answer: spam.line });
  await sleep(150);
  spammer.kill();
  const end = await withTimeout(spammer.exited, 5000, 'spammer dies');
  t.equal(end.signal, 'SIGKILL', 'spammer killed with SIGKILL mid-traffic');
  const rmS = await w.cmd('recv wait:3000');
  t.equal(rmS.kv.notify, `id-remove:${spammer.id}:${ACCEPT_FD}`, 'its peers get its ID_REMOVE', { answer: rmS.line });

  // B's queue holds what the spammer got in (up to the per-user quota: A is
  // the same user, so B must make room before A can send again).
  const drained = await b.cmd('drain', 10_000);
  t.ok(drained.ok, 'B drains its queue', { answer: drained.line });
  t.ok(Number(drained.kv.n) >= 1, 'the spammer\'s messages are there', { answer: drained.line });
  t.equal(drained.kv.bad, '0', 'every one of them intact', { answer: drained.line });
  t.equal(drained.kv.last_src, String(spammer.id), 'all from the dead spammer', { answer: drained.line });
  const s71 = ok(t, await a.cmd(`send ${b.id} cookie:71 vec:1000`), 'A still sends to B');
  sameMessage(t, await b.cmd('recv'), { src: a.id, dst: b.id, cookie: 71, stream: s71.kv.stream! }, 'A → B after the kill');
  const s72 = ok(t, await b.cmd(`send ${a.id} cookie:72 vec:10`), 'B sends to A');
  sameMessage(t, await a.cmd('recv'), { src: b.id, dst: a.id, cookie: 72, stream: s72.kv.stream! }, 'B → A after the kill');
  const late = await hello(t, await newPeer('latecomer'), path);
  t.ok(late.id > spammer.id, 'a new connection is accepted after all this');
}

/**
 * Names are bytes to the kernel: kdbus_sysname_is_valid takes 0xE9 for a
 * letter (Latin-1 isalpha), and the name must come back out byte for byte.
 */
async function latin1Names(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const name = Buffer.concat([Buffer.from(`${process.getuid!()}-bus`), Buffer.from([0xe9])]);
  const desc = Buffer.from([0x64, 0x65, 0x73, 0x63, 0xe9]); // "desc\xE9"
  const a = await newPeer('latin1');
  ok(t, await a.cmd(`make ${dir}/control ${peerBytes(name)} world 64 1`), 'BUS_MAKE "<uid>-bus\\xE9"');
  const listed = await withTimeout(readdir(dir, { encoding: 'buffer' }), 5000, 'readdir');
  t.ok(listed.some((n) => n.equals(name)), 'readdir lists the bus directory with exactly those bytes',
    { listed: listed.map((n) => n.toString('hex')) });
  const busDir = Buffer.concat([Buffer.from(`${dir}/`), name]);
  t.ok((await withTimeout(stat(busDir), 5000, 'stat the bus directory')).isDirectory(), 'it is a directory');
  // node writes a path string as UTF-8: "bus\xC3\xA9", where the name would be had it been stored as text
  t.equal(await statOf(busDir.toString('latin1')), null, 'the UTF-8 spelling of the same text is no name in the tree');
  const path = Buffer.concat([busDir, Buffer.from('/bus')]);
  const id = ok(t, await a.cmd(`connect ${peerBytes(path)} desc:${peerBytes(desc)}`),
    'open and HELLO on its bus file, with CONN_DESCRIPTION "desc\\xE9"').kv.id;
  const info = ok(t, await a.cmd(`infometa ${id} ${ATTACH_CONN_DESCRIPTION}`), 'CONN_INFO of itself');
  t.equal(info.kv.desc, peerBytes(desc), 'CONN_INFO gives the CONN_DESCRIPTION back byte for byte');
  const creator = ok(t, await a.cmd('creator'), 'BUS_CREATOR_INFO');
  t.equal(creator.kv.name, peerBytes(name), 'BUS_CREATOR_INFO gives the bus name back byte for byte');
}

/** Bytes as kdbus-peer spells them both ways: visible ASCII as it is, '\' and every other byte as \xNN. */
function peerBytes(b: Buffer): string {
  return [...b].map((c) => c > 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

const ATTACH_CONN_DESCRIPTION = 1 << 13;

async function polling(t: Tap, dir: string): Promise<void> {
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-poll');
  const a = await hello(t, await newPeer('sender'), path);
  const b = await hello(t, await newPeer('poller'), path);

  const idle = await b.cmd('poll 100');
  t.equal(idle.kv.revents, '0x0', 'poll() on an empty queue times out', { answer: idle.line });

  let settled = false;
  const polled = b.cmd('poll 5000', 8000).finally(() => { settled = true; });
  const blocked = await until(() => inPoll(b.pid), 3000);
  t.ok(blocked, 'the poller is blocked in poll()');
  await sleep(100);
  t.notOk(settled, 'and stays blocked while nothing arrives');
  const t0 = Date.now();
  const sent = ok(t, await a.cmd(`send ${b.id} cookie:80 vec:32`), 'a message is sent');
  const woke = await polled;
  t.equal(woke.kv.revents !== undefined && (Number(woke.kv.revents) & POLLIN), POLLIN, 'poll() wakes with POLLIN', { answer: woke.line });
  t.ok(Date.now() - t0 < 2000, 'promptly');
  sameMessage(t, await b.cmd('recv'), { src: a.id, dst: b.id, cookie: 80, stream: sent.kv.stream! }, 'the message that woke it');

  ok(t, await a.cmd(`send ${b.id} cookie:81 vec:32`), 'another message');
  const ready = await b.cmd('poll 2000');
  t.equal(Number(ready.kv.revents) & POLLIN, POLLIN, 'poll() with a message queued returns POLLIN at once', { answer: ready.line });
}

/** Whether pid sleeps in poll(2)/ppoll(2) (not in a FUSE request). */
function inPoll(pid: number): boolean {
  try {
    const nr = Number(readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0]);
    if (!(POLL_SYSCALLS[process.arch] ?? []).includes(nr)) return false;
    const wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8');
    return wchan === '0' || /poll/.test(wchan);
  } catch {
    return false;
  }
}

// ---- both pool modes ----

const modes = [
  { name: 'passthrough pools', args: [] as string[] },
  { name: 'page-cache pools', args: ['--no-passthrough'] },
];

for (const mode of modes) {
  await t.test(mode.name, async (t) => {
    const dir = join(tmp, mode.args.length ? 'page-cache' : 'passthrough');
    mkdirSync(dir);
    const server = await startServer(t, dir, { args: mode.args });
    if (!server) return;

    await t.test('1. tree: control, buses, modes, owners, removal', (t) => tree(t, dir));
    await t.test('2. HELLO and pool: ids, bloom parameter, ID_ADD/ID_REMOVE', (t) => helloPool(t, dir));
    await t.test('3. payloads byte for byte: vectors, limits, memfds, FREE', (t) => payloads(t, dir));
    await t.test('4. broadcast with bloom filters', (t) => broadcast(t, dir));
    await t.test('5. priorities, PEEK and DROP', (t) => priorities(t, dir));
    await t.test('6. uid 65534 on a world bus made by root', (t) => nonRoot(t, dir));
    await t.test('7. bad input and a killed client', (t) => badInput(t, dir));
    await t.test('8. poll() wakes on a message', (t) => polling(t, dir));
    await t.test('9. a bus name and a description with a Latin-1 letter byte', (t) => latin1Names(t, dir));

    t.equal(live.size, 0, 'no peer process is left');
    await stopServer(t, server, dir, 'the mount is gone from /proc/self/mounts');
  });
}

t.teardown(() => {
  for (const p of live) p.kill();
  const stillMounted = modes.some((m) => mountType(join(tmp, m.args.length ? 'page-cache' : 'passthrough')));
  if (!stillMounted) rmSync(tmp, { recursive: true, force: true });
});
