// Names and policy end to end (issue #3): a real `kdbusfs mount DIR` in its
// own process (default passthrough pools), driven by real clients
// (test/clients/kdbus-peer.c, one process per connection), stopped with
// SIGTERM. What is asserted is what the kernel code (ipc/kdbus/names.c,
// policy.c, connection.c, handle.c, endpoint.c) does, beyond what the
// upstream selftests check:
//   1. NAME_LIST records for each flag combination (names.c
//      kdbus_name_list_all / kdbus_name_list_write)
//   2. name queues: hand-over order, NAME_CHANGE ids and flags
//   3. activators: messages to the name wait there, move to the implementer,
//      move back when it goes away
//   4. policy seen by an unprivileged user (uid 65534): OWN, TALK, SEE on a
//      custom endpoint, wildcard names, privileged-only operations
//   5. names are bytes (names.c kdbus_name_is_valid, Latin-1 isalpha): a
//      name with the raw byte 0xE9 acquired, listed, notified, sent to
//      and looked up byte for byte
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import {
  compileClient, connect, fails, hello, live, makeBus, mountType, needRootAndFuse, ok, Peer, peerSet, startServer,
  statOf as statWithType, stopServer, type NewPeer, type Reply, type Tap,
} from './harness.js';

const NOBODY = 65534;
// kdbus.h values
const HELLO_ACCEPT_FD = 1;
const HELLO_ACTIVATOR = 2;
const NAME_REPLACE_EXISTING = 1;
const NAME_ALLOW_REPLACEMENT = 2;
const NAME_QUEUE = 4;
const NAME_IN_QUEUE = 8;
const NAME_ACTIVATOR = 16;
const ATTACH_NAMES = 16;

t.setTimeout(60_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-names-'));
chmodSync(tmp, 0o755); // uid 65534 peers must reach the mount inside
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);

// ---- helpers (the harness: test/harness.ts) ----

/** statOf without the file type: mode, uid, gid; null when absent. */
async function statOf(path: string): Promise<{ mode: number; uid: number; gid: number } | null> {
  const s = await statWithType(path);
  return s && { mode: s.mode, uid: s.uid, gid: s.gid };
}

/** A test's peers (kdbus-peer processes), killed when the test ends. */
function peers(t: Tap): NewPeer {
  return peerSet(t, client);
}

/** A peer that dropped to uid/gid 65534 before opening anything. */
async function nobody(t: Tap, newPeer: NewPeer, name: string): Promise<Peer> {
  const p = await newPeer(name);
  ok(t, await p.cmd(`setuid ${NOBODY} ${NOBODY}`), `${name}: drops to uid 65534`);
  return p;
}

/** The records of a list answer (OWNER:CONNFLAGS:NAME:NAMEFLAGS), sorted. */
function records(r: Reply): string[] {
  if (!r.ok || !r.kv.recs || r.kv.recs === '-') return [];
  return r.kv.recs.split(',').sort();
}

function rec(owner: Peer, connFlags: number, name?: string, nameFlags?: number): string {
  return name === undefined ? `${owner.id}:${connFlags}:-:-` : `${owner.id}:${connFlags}:${name}:${nameFlags}`;
}

/** Lists with flags; asserts the records (in any order) and that the slice was freed. */
async function listIs(t: Tap, p: Peer, flags: string, want: string[], what: string): Promise<void> {
  const r = await p.cmd(`list ${flags}`);
  t.ok(r.ok, `${what}: NAME_LIST ${flags}`, { answer: r.line });
  t.same(records(r), [...want].sort(), what, { answer: r.line });
  t.equal(r.kv.bad, '0', `${what}: the list is well-formed`);
  t.equal(r.kv.free, '0', `${what}: the list slice is freed with FREE`);
}

/** The next notification of p (waits up to ms), freed; its notify= field. */
async function notification(t: Tap, p: Peer, what: string, ms = 2000): Promise<string> {
  const r = await p.cmd(`recv wait:${ms}`, ms + 3000);
  if (!r.ok) {
    t.fail(`${what}: no notification`, { answer: r.line });
    return '';
  }
  t.equal(r.kv.src, '0', `${what}: from the kernel (src_id 0)`);
  t.equal(r.kv.ptype, 'kernel', `${what}: payload_type KERNEL`);
  await p.cmd(`free ${r.kv.off}`);
  return r.kv.notify ?? '';
}

async function nothingQueued(t: Tap, p: Peer, what: string, ms = 150): Promise<void> {
  const r = await p.cmd(`recv wait:${ms}`, ms + 3000);
  t.equal(r.err, 'EAGAIN', what, { answer: r.line });
}

// ---- 1. NAME_LIST ----

async function nameList(t: Tap, dir: string): Promise<void> {
  // names.c kdbus_name_list_all, per connection:
  //  - activators are skipped unless LIST_ACTIVATORS is given;
  //  - NAMES: one record per owned name (owner, its HELLO flags, the name
  //    item OWNED_NAME with the entry's flags);
  //  - ACTIVATORS: for a name owned by an implementer, a record with the
  //    *activator's* id and HELLO flags and the entry's (implementer's) name
  //    flags; an activator holding its own name lists it too;
  //  - QUEUED: one record per name the connection waits for, with that
  //    entry's flags (kdbus_name_list_write gets q->entry: the flags of the
  //    current primary owner, never IN_QUEUE);
  //  - UNIQUE: a record without name only if nothing else was written for
  //    the connection.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-list');
  const p1 = await hello(t, await newPeer('P1'), path);
  const p2 = await hello(t, await newPeer('P2'), path);
  const p3 = await hello(t, await newPeer('P3'), path);
  const act = await connect(t, await newPeer('activator'), path, 'activator name:list.act policy:world:talk',
    'root: HELLO as activator for list.act');
  const lister = await hello(t, await newPeer('lister'), path);
  const A = HELLO_ACCEPT_FD;

  t.equal((await p1.cmd('acquire list.a allow')).kv.flags, String(NAME_ALLOW_REPLACEMENT), 'P1 owns list.a (ALLOW_REPLACEMENT)');
  t.equal((await p1.cmd('acquire list.b queue')).kv.flags, String(NAME_QUEUE), 'P1 owns list.b (QUEUE)');
  const q = await p2.cmd('acquire list.b queue allow');
  t.equal(q.kv.flags, String(NAME_QUEUE | NAME_ALLOW_REPLACEMENT | NAME_IN_QUEUE),
    'P2 queues for list.b: the flags come back with IN_QUEUE', { answer: q.line });

  await listIs(t, lister, 'none', [], 'no flags: an empty list');
  // names.c kdbus_cmd_name_list: "no items supported so far", any item is EINVAL
  fails(t, await lister.cmd('list names name:list.a'), 'EINVAL', 'NAME_LIST with a NAME item: EINVAL');
  fails(t, await lister.cmd('list none policy:world:see'), 'EINVAL', 'NAME_LIST with a POLICY_ACCESS item: EINVAL');
  await listIs(t, lister, 'unique', [rec(p1, A), rec(p2, A), rec(p3, A), rec(lister, A)],
    'UNIQUE: every ordinary connection once, without name; no activator');
  await listIs(t, lister, 'names', [rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p1, A, 'list.b', NAME_QUEUE)],
    'NAMES: the owned names with owner, HELLO flags and name flags; not the activator\'s');
  await listIs(t, lister, 'unique,names', [
    rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p1, A, 'list.b', NAME_QUEUE),
    rec(p2, A), rec(p3, A), rec(lister, A),
  ], 'UNIQUE|NAMES: name records, and a bare record for connections without one');
  await listIs(t, lister, 'activators', [rec(act, HELLO_ACTIVATOR | A, 'list.act', NAME_ACTIVATOR)],
    'ACTIVATORS: the activator with its HELLO flags and the name flagged ACTIVATOR');
  await listIs(t, lister, 'queued', [rec(p2, A, 'list.b', NAME_QUEUE)],
    'QUEUED: the waiter, with the flags of the name entry (the current owner\'s)');
  await listIs(t, lister, 'unique,names,activators,queued', [
    rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p1, A, 'list.b', NAME_QUEUE),
    rec(p2, A, 'list.b', NAME_QUEUE), rec(p3, A), rec(lister, A),
    rec(act, HELLO_ACTIVATOR | A, 'list.act', NAME_ACTIVATOR),
  ], 'all flags: every record once');

  // an implementer takes list.act over
  t.equal((await p3.cmd('acquire list.act')).kv.flags, '0', 'P3 takes list.act over from the activator');
  await listIs(t, lister, 'activators', [rec(act, HELLO_ACTIVATOR | A, 'list.act', 0)],
    'ACTIVATORS after the takeover: the activator\'s id, the implementer\'s name flags');
  await listIs(t, lister, 'names', [
    rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p1, A, 'list.b', NAME_QUEUE), rec(p3, A, 'list.act', 0),
  ], 'NAMES after the takeover: the implementer owns list.act');
  await listIs(t, lister, 'names,activators', [
    rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p1, A, 'list.b', NAME_QUEUE),
    rec(act, HELLO_ACTIVATOR | A, 'list.act', 0), rec(p3, A, 'list.act', 0),
  ], 'NAMES|ACTIVATORS: list.act twice, under the activator and under the implementer');

  // P1 releases list.b: P2 gets it, the queue is empty
  ok(t, await p1.cmd('release list.b'), 'P1 releases list.b');
  await listIs(t, lister, 'names,queued', [
    rec(p1, A, 'list.a', NAME_ALLOW_REPLACEMENT), rec(p2, A, 'list.b', NAME_QUEUE | NAME_ALLOW_REPLACEMENT),
    rec(p3, A, 'list.act', 0),
  ], 'after the release: P2 owns list.b with the flags it queued with, nobody waits');
  ok(t, await p3.cmd('bye'), 'P3 disconnects');
  await listIs(t, lister, 'activators', [rec(act, HELLO_ACTIVATOR | A, 'list.act', NAME_ACTIVATOR)],
    'list.act is back with the activator');
}

// ---- 2. queue order and NAME_CHANGE ----

async function queueOrder(t: Tap, dir: string): Promise<void> {
  // names.c: a waiter is appended to the entry's queue with the flags it
  // asked for (IN_QUEUE is only added to what the caller gets back);
  // kdbus_name_entry_release hands the name to the first waiter:
  // NAME_CHANGE old = (owner, its flags), new = (waiter, its queued flags).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-queue');
  const w = await hello(t, await newPeer('watcher'), path);
  ok(t, await w.cmd('match 1 name-add:queue.name'), 'watcher: NAME_ADD for queue.name');
  ok(t, await w.cmd('match 2 name-change:queue.name'), 'watcher: NAME_CHANGE for queue.name');
  ok(t, await w.cmd('match 3 name-remove:queue.name'), 'watcher: NAME_REMOVE for queue.name');
  ok(t, await w.cmd('match 4 name-add:other.name'), 'watcher: NAME_ADD for other.name');
  const o = await hello(t, await newPeer('owner'), path);
  const q1 = await hello(t, await newPeer('Q1'), path);
  const q2 = await hello(t, await newPeer('Q2'), path);
  const q3 = await hello(t, await newPeer('Q3'), path);
  const late = await hello(t, await newPeer('no-queue'), path);

  t.equal((await o.cmd('acquire queue.name')).kv.flags, '0', 'owner acquires queue.name');
  t.equal(await notification(t, w, 'NAME_ADD'), `name-add:0:0:${o.id}:0:queue.name`, 'NAME_ADD: old 0, new owner, flags 0');
  t.equal((await q1.cmd('acquire queue.name queue')).kv.flags, String(NAME_QUEUE | NAME_IN_QUEUE), 'Q1 queued (IN_QUEUE)');
  t.equal((await q2.cmd('acquire queue.name queue allow')).kv.flags,
    String(NAME_QUEUE | NAME_ALLOW_REPLACEMENT | NAME_IN_QUEUE), 'Q2 queued (IN_QUEUE)');
  t.equal((await q3.cmd('acquire queue.name queue')).kv.flags, String(NAME_QUEUE | NAME_IN_QUEUE), 'Q3 queued (IN_QUEUE)');
  fails(t, await late.cmd('acquire queue.name'), 'EEXIST', 'without QUEUE a taken name is EEXIST');
  fails(t, await late.cmd('acquire queue.name replace'), 'EEXIST', 'REPLACE_EXISTING without the owner\'s ALLOW_REPLACEMENT: EEXIST');
  fails(t, await o.cmd('acquire queue.name'), 'EALREADY', 'the owner acquiring again: EALREADY');
  fails(t, await late.cmd('release queue.name'), 'ESRCH', 'releasing a name one neither owns nor waits for: ESRCH');
  await listIs(t, w, 'queued', [rec(q1, 1, 'queue.name', 0), rec(q2, 1, 'queue.name', 0), rec(q3, 1, 'queue.name', 0)],
    'three waiters');
  await nothingQueued(t, w, 'queueing sends no notification');

  ok(t, await o.cmd('release queue.name'), 'the owner releases');
  t.equal(await notification(t, w, 'release 1'), `name-change:${o.id}:0:${q1.id}:${NAME_QUEUE}:queue.name`,
    'NAME_CHANGE owner → Q1 (the oldest waiter), with Q1\'s queued flags');
  ok(t, await q1.cmd('release queue.name'), 'Q1 releases');
  t.equal(await notification(t, w, 'release 2'),
    `name-change:${q1.id}:${NAME_QUEUE}:${q2.id}:${NAME_QUEUE | NAME_ALLOW_REPLACEMENT}:queue.name`,
    'NAME_CHANGE Q1 → Q2');
  ok(t, await q2.cmd('bye'), 'Q2 disconnects while owning the name');
  t.equal(await notification(t, w, 'disconnect'),
    `name-change:${q2.id}:${NAME_QUEUE | NAME_ALLOW_REPLACEMENT}:${q3.id}:${NAME_QUEUE}:queue.name`,
    'NAME_CHANGE Q2 → Q3 when Q2 goes away');
  ok(t, await q3.cmd('release queue.name'), 'Q3 releases; nobody waits');
  t.equal(await notification(t, w, 'last release'), `name-remove:${q3.id}:${NAME_QUEUE}:0:0:queue.name`,
    'NAME_REMOVE: old Q3 with its flags, new 0');
  await nothingQueued(t, w, 'nothing else (and no NAME_ADD of other names)');

  // a waiter leaving the queue is skipped silently
  ok(t, await o.cmd('acquire queue.name'), 'owner takes queue.name again');
  t.equal(await notification(t, w, 'NAME_ADD again'), `name-add:0:0:${o.id}:0:queue.name`, 'NAME_ADD');
  ok(t, await q1.cmd('acquire queue.name queue'), 'Q1 queues');
  ok(t, await q3.cmd('acquire queue.name queue'), 'Q3 queues');
  ok(t, await q1.cmd('release queue.name'), 'Q1 leaves the queue (NAME_RELEASE of a queued name)');
  await nothingQueued(t, w, 'leaving the queue is not notified');
  ok(t, await o.cmd('release queue.name'), 'owner releases');
  t.equal(await notification(t, w, 'skip'), `name-change:${o.id}:0:${q3.id}:${NAME_QUEUE}:queue.name`,
    'the name goes to Q3, Q1 having left');

  // REPLACE_EXISTING against ALLOW_REPLACEMENT|QUEUE: the old owner is queued
  ok(t, await w.cmd('match 5 name-change:swap.name'), 'watcher: NAME_CHANGE for swap.name');
  ok(t, await o.cmd('acquire swap.name allow queue'), 'owner takes swap.name with ALLOW_REPLACEMENT|QUEUE');
  const rep = await late.cmd('acquire swap.name replace');
  t.equal(rep.kv.flags, String(NAME_REPLACE_EXISTING), 'REPLACE_EXISTING takes it over at once', { answer: rep.line });
  t.equal(await notification(t, w, 'replace'),
    `name-change:${o.id}:${NAME_ALLOW_REPLACEMENT | NAME_QUEUE}:${late.id}:${NAME_REPLACE_EXISTING}:swap.name`,
    'NAME_CHANGE owner → replacer');
  await listIs(t, w, 'queued', [rec(o, 1, 'swap.name', NAME_REPLACE_EXISTING)],
    'the replaced owner asked for QUEUE: it waits for the name now');
  ok(t, await late.cmd('release swap.name'), 'the replacer releases');
  t.equal(await notification(t, w, 'give back'),
    `name-change:${late.id}:${NAME_REPLACE_EXISTING}:${o.id}:${NAME_ALLOW_REPLACEMENT | NAME_QUEUE}:swap.name`,
    'and the old owner gets it back with its flags');
}

// ---- 3. activators ----

async function activator(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_connect: an activator acquires its name with
  // KDBUS_NAME_ACTIVATOR at HELLO. kdbus_cmd_msg_send: a message to the name
  // goes to its owner (the activator), by id an activator is ENXIO, with
  // NO_AUTO_START EADDRNOTAVAIL. names.c kdbus_name_acquire: taking the name
  // over moves every queued message (kdbus_conn_move_messages(conn,
  // activator, 0)); kdbus_name_entry_release, when the implementer goes
  // away, moves the messages addressed to the name back and returns the name
  // to the activator (flags ACTIVATOR). A message to the implementer's id
  // is not moved back: it goes with the implementer.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-act');
  const w = await hello(t, await newPeer('watcher'), path);
  for (const [i, k] of ['name-add', 'name-change', 'name-remove'].entries()) {
    ok(t, await w.cmd(`match ${i + 1} ${k}:act.svc`), `watcher: ${k} for act.svc`);
  }
  const act = await connect(t, await newPeer('activator'), path, 'activator name:act.svc policy:world:talk',
    'root: HELLO with KDBUS_HELLO_ACTIVATOR, NAME act.svc and a POLICY_ACCESS item');
  t.equal(await notification(t, w, 'activator'), `name-add:0:0:${act.id}:${NAME_ACTIVATOR}:act.svc`,
    'NAME_ADD: the activator owns act.svc, flags ACTIVATOR');

  const s = await hello(t, await newPeer('sender'), path);
  const m1 = ok(t, await s.cmd('send name cookie:11 name:act.svc vec:100 memfd:5000 vec:7'), 'send to act.svc (vector, memfd, vector)');
  const m2 = ok(t, await s.cmd('send name cookie:12 name:act.svc vec:65536'), 'send another 64 KiB to act.svc');
  fails(t, await s.cmd(`send ${act.id} cookie:13 vec:8`), 'ENXIO', 'the activator\'s id cannot be addressed: ENXIO');
  fails(t, await s.cmd('send name cookie:13 noauto name:act.svc vec:8'), 'EADDRNOTAVAIL',
    'NO_AUTO_START to a name held by an activator: EADDRNOTAVAIL');
  ok(t, await s.cmd('send name cookie:15 expect:10000 name:act.svc vec:24'), 'a method call (EXPECT_REPLY) to act.svc');
  await nothingQueued(t, s, 'the sender gets nothing back');
  fails(t, await s.cmd('send name cookie:14 name:no.such vec:8'), 'ESRCH', 'to a name nobody owns: ESRCH');
  fails(t, await s.cmd('send name cookie:14 vec:8'), 'EDESTADDRREQ', 'KDBUS_DST_ID_NAME without DST_NAME: EDESTADDRREQ');
  fails(t, await s.cmd(`send ${s.id} cookie:14 name:act.svc vec:8`), 'EREMCHG', 'a name with an id that does not own it: EREMCHG');
  // the activator's POLICY_ACCESS item went into the bus database
  const n = await hello(t, await (async () => {
    const p = await newPeer('uid 65534 sender');
    ok(t, await p.cmd(`setuid ${NOBODY} ${NOBODY}`), 'a sender drops to uid 65534');
    return p;
  })(), path);
  const m4 = ok(t, await n.cmd('send name cookie:17 name:act.svc vec:10'), 'uid 65534 → act.svc: TALK granted by the activator\'s policy');
  fails(t, await n.cmd('send name cookie:18 name:act.other vec:8'), 'ESRCH', '(act.other does not exist)');

  const impl = await hello(t, await newPeer('implementer'), path);
  t.equal((await impl.cmd('acquire act.svc')).kv.flags, '0', 'implementer acquires act.svc');
  t.equal(await notification(t, w, 'takeover'), `name-change:${act.id}:${NAME_ACTIVATOR}:${impl.id}:0:act.svc`,
    'NAME_CHANGE activator (ACTIVATOR) → implementer (0)');
  const want = [{ c: 11, m: m1 }, { c: 12, m: m2 }, { c: 15, m: null }, { c: 17, m: m4 }];
  for (const { c, m } of want) {
    const g = await impl.cmd('recv');
    t.ok(g.ok, `implementer receives message ${c}`, { answer: g.line });
    t.equal(g.kv.cookie, String(c), `message ${c}: in the order sent`);
    t.equal(g.kv.src, String(c === 17 ? n.id : s.id), `message ${c}: src_id is the sender`);
    t.equal(g.kv.dst, '0', `message ${c}: dst_id stays KDBUS_DST_ID_NAME`);
    t.equal(g.kv.dstname, 'act.svc', `message ${c}: carries DST_NAME act.svc`);
    if (m) t.equal(g.kv.stream, m.kv.stream, `message ${c}: every payload byte moved with it`);
    t.equal(g.kv.pattern, 'ok', `message ${c}: every byte matches`);
    t.equal(g.kv.inpool, 'yes', `message ${c}: inside the implementer's pool`);
    if (g.ok) await impl.cmd(`free ${g.kv.off}`);
  }
  fails(t, await impl.cmd('recv'), 'EAGAIN', 'nothing else was queued');
  // kdbus_conn_move_messages also hands the pending reply over (reply_src)
  ok(t, await impl.cmd(`send ${s.id} cookie:16 reply:15 vec:8`), 'the implementer answers the call the activator got');
  const a15 = await s.cmd('recv');
  t.equal(a15.kv.creply, '15', 'the caller receives the reply to cookie 15', { answer: a15.line });
  t.equal(a15.kv.src, String(impl.id), 'from the implementer');
  if (a15.ok) await s.cmd(`free ${a15.kv.off}`);

  ok(t, await n.cmd(`send ${impl.id} cookie:19 vec:8`), 'uid 65534 → the implementer by id: TALK through act.svc');
  const g19 = await impl.cmd('recv');
  t.equal(g19.kv.cookie, '19', 'the implementer receives it', { answer: g19.line });
  if (g19.ok) await impl.cmd(`free ${g19.kv.off}`);
  const m3 = ok(t, await s.cmd(`send ${impl.id} cookie:21 name:act.svc vec:3000 vec:5`),
    'send to act.svc, with the implementer\'s id as dst_id, while it owns the name');
  ok(t, await s.cmd(`send ${impl.id} cookie:22 vec:64`), 'send to the implementer by id');
  ok(t, await s.cmd('send name cookie:23 expect:10000 name:act.svc vec:16'), 'a method call to act.svc');
  await listIs(t, w, 'activators', [rec(act, HELLO_ACTIVATOR | 1, 'act.svc', 0)],
    'ACTIVATORS: the activator is still registered for the name');
  ok(t, await impl.cmd('bye'), 'the implementer goes away without reading');
  t.equal(await notification(t, w, 'give back'), `name-change:${impl.id}:0:${act.id}:${NAME_ACTIVATOR}:act.svc`,
    'NAME_CHANGE implementer → activator (ACTIVATOR)');
  await listIs(t, w, 'activators', [rec(act, HELLO_ACTIVATOR | 1, 'act.svc', NAME_ACTIVATOR)],
    'the activator holds act.svc again');

  const impl2 = await hello(t, await newPeer('implementer 2'), path);
  ok(t, await impl2.cmd('acquire act.svc'), 'a second implementer acquires act.svc');
  t.equal(await notification(t, w, 'takeover 2'), `name-change:${act.id}:${NAME_ACTIVATOR}:${impl2.id}:0:act.svc`,
    'NAME_CHANGE activator → implementer 2');
  const g3 = await impl2.cmd('recv');
  t.equal(g3.kv.cookie, '21', 'the message addressed to the name came back through the activator', { answer: g3.line });
  t.equal(g3.kv.stream, m3.kv.stream, 'with its payload intact');
  t.equal(g3.kv.pattern, 'ok', 'every byte');
  t.equal(g3.kv.dstname, 'act.svc', 'still addressed to act.svc');
  if (g3.ok) await impl2.cmd(`free ${g3.kv.off}`);
  const g4 = await impl2.cmd('recv');
  t.equal(g4.kv.cookie, '23', 'the method call to the name came back too', { answer: g4.line });
  if (g4.ok) await impl2.cmd(`free ${g4.kv.off}`);
  fails(t, await impl2.cmd('recv'), 'EAGAIN', 'the message sent to the first implementer\'s id was not moved');
  ok(t, await impl2.cmd(`send ${s.id} cookie:24 reply:23 vec:8`),
    'implementer 2 answers it (the pending reply moved implementer → activator → implementer 2)');
  const a23 = await s.cmd('recv');
  t.equal(a23.kv.creply, '23', 'the caller gets that reply, and no REPLY_DEAD from the first implementer', { answer: a23.line });
  t.equal(a23.kv.src, String(impl2.id), 'from implementer 2');
  if (a23.ok) await s.cmd(`free ${a23.kv.off}`);
  await nothingQueued(t, s, 'nothing else for the caller');

  ok(t, await w.cmd('match 9 id-remove'), 'watcher: ID_REMOVE');
  ok(t, await act.cmd('bye'), 'the activator goes away while the implementer owns the name');
  t.equal(await notification(t, w, 'activator gone'), `id-remove:${act.id}:${HELLO_ACTIVATOR | 1}`,
    'ID_REMOVE of the activator, with its HELLO flags; the name stays with the implementer (no NAME_CHANGE)');
  await nothingQueued(t, w, 'nothing else');
  ok(t, await impl2.cmd('release act.svc'), 'implementer 2 releases act.svc');
  t.equal(await notification(t, w, 'no activator left'), `name-remove:${impl2.id}:0:0:0:act.svc`,
    'no activator left: NAME_REMOVE');
}

// ---- 4. policy as an unprivileged user ----

async function ownTalk(t: Tap, dir: string): Promise<void> {
  // connection.c kdbus_conn_policy_own_name / _talk on the default endpoint:
  // a privileged connection (the bus owner's uid, or CAP_IPC_OWNER) passes;
  // others need OWN / TALK from the bus database (policy holders); TALK is
  // also granted between connections of the same uid. Policy holders'
  // entries go with them (kdbus_conn_disconnect → kdbus_policy_remove_owner).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-policy');
  const r = await hello(t, await newPeer('root'), path);
  ok(t, await r.cmd('acquire talk.target'), 'root (privileged) owns talk.target without any policy');
  const n = await hello(t, await nobody(t, newPeer, 'nobody'), path);

  fails(t, await n.cmd('acquire own.me'), 'EPERM', 'uid 65534 cannot own own.me without OWN policy');
  await connect(t, await newPeer('holder own.me'), path, 'holder name:own.me policy:world:own',
    'root: policy holder granting WORLD OWN on own.me');
  t.equal((await n.cmd('acquire own.me')).kv.flags, '0', 'uid 65534 owns own.me now');
  fails(t, await n.cmd('acquire own.other'), 'EPERM', 'and still not own.other');
  await connect(t, await newPeer('holder own.user'), path, `holder name:own.user policy:user:${NOBODY + 1}:own policy:user:${NOBODY}:talk`,
    'root: policy holder granting OWN on own.user to uid 65535 only, TALK to 65534');
  fails(t, await n.cmd('acquire own.user'), 'EPERM', 'TALK is not OWN: EPERM');
  await connect(t, await newPeer('holder own.group'), path, `holder name:own.group policy:group:${NOBODY}:own`,
    'root: policy holder granting OWN on own.group to gid 65534');
  ok(t, await n.cmd('acquire own.group'), 'uid 65534 (egid 65534) owns own.group');

  // GROUP entries match the egid or a supplementary group (policy.c
  // kdbus_policy_query_unlocked walks cred->group_info)
  await connect(t, await newPeer('holder own.suppl'), path, 'holder name:own.suppl policy:group:4242:own',
    'root: policy holder granting OWN on own.suppl to gid 4242');
  fails(t, await n.cmd('acquire own.suppl'), 'EPERM', 'uid 65534 without group 4242: EPERM');
  const g = await newPeer('nobody in group 4242');
  ok(t, await g.cmd(`creds ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} ${NOBODY} 4242`),
    'a peer becomes uid/gid 65534 with supplementary group 4242');
  await hello(t, g, path);
  ok(t, await g.cmd('acquire own.suppl'), 'it owns own.suppl through its supplementary group');

  // the same-user TALK shortcut compares the sender's euid with the
  // receiver's real uid at HELLO (uid_eq(conn_creds->euid, to->cred->uid))
  const mixed = await newPeer('ruid 1000, euid 65534');
  ok(t, await mixed.cmd(`creds 1000 ${NOBODY} 1000 ${NOBODY} ${NOBODY} ${NOBODY}`), 'a peer with real uid 1000, effective uid 65534');
  await hello(t, mixed, path);
  fails(t, await n.cmd(`send ${mixed.id} cookie:1 vec:8`), 'EPERM', 'euid 65534 → a connection whose real uid is 1000: EPERM');
  const u1000 = await hello(t, await (async () => {
    const p = await newPeer('uid 1000');
    ok(t, await p.cmd('setuid 1000 1000'), 'a peer drops to uid 1000');
    return p;
  })(), path);
  ok(t, await u1000.cmd(`send ${mixed.id} cookie:2 vec:8`), 'euid 1000 → that connection: same user, allowed');
  ok(t, await mixed.cmd(`send ${n.id} cookie:3 vec:8`), 'and it (euid 65534) → uid 65534: allowed');

  fails(t, await n.cmd('send name cookie:1 name:talk.target vec:8'), 'EPERM', 'uid 65534 → talk.target without TALK: EPERM');
  fails(t, await n.cmd(`send ${r.id} cookie:1 vec:8`), 'EPERM', 'uid 65534 → the root connection by id: EPERM');
  const holder = await connect(t, await newPeer('holder talk.target'), path, 'holder name:talk.target policy:world:talk',
    'root: policy holder granting WORLD TALK on talk.target');
  const s1 = ok(t, await n.cmd('send name cookie:31 name:talk.target vec:40'), 'uid 65534 → talk.target: SEND');
  const g1 = await r.cmd('recv');
  t.equal(g1.kv.cookie, '31', 'root receives it', { answer: g1.line });
  t.equal(g1.kv.src, String(n.id), 'from uid 65534');
  t.equal(g1.kv.stream, s1.kv.stream, 'payload intact');
  if (g1.ok) await r.cmd(`free ${g1.kv.off}`);
  ok(t, await n.cmd(`send ${r.id} cookie:32 vec:8`), 'by id too: TALK is checked against every name of the receiver');
  const g2 = await r.cmd('recv');
  t.equal(g2.kv.cookie, '32', 'root receives it', { answer: g2.line });
  if (g2.ok) await r.cmd(`free ${g2.kv.off}`);
  ok(t, await holder.cmd('update name:talk.target policy:world:see'), 'the holder downgrades talk.target to SEE (CONN_UPDATE)');
  fails(t, await n.cmd('send name cookie:33 name:talk.target vec:8'), 'EPERM', 'SEE is not TALK: EPERM');
  ok(t, await holder.cmd('update name:talk.target policy:world:talk'), 'and back to TALK');
  ok(t, await n.cmd('send name cookie:34 name:talk.target vec:8'), 'TALK again');
  ok(t, await holder.cmd('bye'), 'the policy holder goes away');
  fails(t, await n.cmd('send name cookie:35 name:talk.target vec:8'), 'EPERM', 'its policy went with it: EPERM');
  ok(t, await r.cmd(`send ${n.id} cookie:36 vec:8`), 'root (privileged) → uid 65534: always allowed');
}

async function wildcard(t: Tap, dir: string): Promise<void> {
  // kdbus.txt 11.2: "foo.bar.*" covers names exactly one level below
  // foo.bar. policy.c's lookup (kdbus_policy_lookup) implements that, but
  // kdbus_policy_set tests name[len-3] == '.' && name[len-2] == '*' (one to
  // the left of the ".*" suffix), so the 2015 kernel never stores a
  // wildcard entry: "foo.bar.*" stays a plain name nothing can match.
  // kdbusfs decided (lib/core/policy.ts, header of PolicyDb.set) to
  // implement what the documentation, the comment above that test and the
  // lookup intend; this is what is tested here.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-wild');
  await connect(t, await newPeer('holder foo.bar.*'), path, 'holder name:foo.bar.* policy:world:own',
    'root: policy holder granting WORLD OWN on foo.bar.*');
  await connect(t, await newPeer('holder foo.bar.exact'), path, 'holder name:foo.bar.exact policy:user:0:own',
    'root: policy holder for foo.bar.exact (root only)');
  const n = await hello(t, await nobody(t, newPeer, 'nobody'), path);
  ok(t, await n.cmd('acquire foo.bar.baz'), 'foo.bar.baz (one level below): OWN granted');
  ok(t, await n.cmd('acquire foo.bar.bazbaz'), 'foo.bar.bazbaz: OWN granted');
  fails(t, await n.cmd('acquire foo.bar.baz.qux'), 'EPERM', 'foo.bar.baz.qux (two levels below): EPERM');
  fails(t, await n.cmd('acquire foo.bar'), 'EPERM', 'foo.bar itself: EPERM');
  fails(t, await n.cmd('acquire foo.barx.baz'), 'EPERM', 'foo.barx.baz: EPERM');
  fails(t, await n.cmd('acquire foo.bar.exact'), 'EPERM', 'an exact entry shadows the wildcard: EPERM');
}

async function endpointAndBus(t: Tap, dir: string): Promise<void> {
  // On a custom endpoint both databases decide (kdbus_conn_policy_own_name,
  // kdbus_conn_policy_talk): the endpoint's must grant the access, and as a
  // connection there is never privileged, the bus database (or, for TALK,
  // the same-user rule) must grant it too.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-epbus');
  const bus = dirname(path);
  ok(t, await (await newPeer('endpoint maker')).cmd(
    `epmake ${path} 0-ep world name:ep.talk policy:world:talk name:ep.own policy:world:own`),
    'root: ENDPOINT_MAKE 0-ep granting TALK on ep.talk and OWN on ep.own');
  const a = await hello(t, await newPeer('A (root, default endpoint)'), path);
  ok(t, await a.cmd('acquire ep.talk'), 'A owns ep.talk');
  const c = await hello(t, await nobody(t, newPeer, 'C (uid 65534, custom endpoint)'), `${bus}/0-ep`);
  fails(t, await c.cmd('send name cookie:1 name:ep.talk vec:8'), 'EPERM', 'C → ep.talk: the endpoint grants TALK, the bus does not: EPERM');
  fails(t, await c.cmd('acquire ep.own'), 'EPERM', 'C acquires ep.own: the endpoint grants OWN, the bus does not: EPERM');
  const root = await hello(t, await newPeer('root on the custom endpoint'), `${bus}/0-ep`);
  fails(t, await root.cmd('acquire ep.own'), 'EPERM', 'root on the custom endpoint is not privileged: the bus check fails too, EPERM');
  fails(t, await root.cmd('acquire ep.talk2'), 'EPERM', 'root on the custom endpoint, a name the endpoint does not grant: EPERM');
  ok(t, await root.cmd(`send ${a.id} cookie:1 name:ep.talk vec:8`), 'root → ep.talk from the endpoint: TALK granted there, same uid as A');
  t.equal((await a.cmd('recv')).kv.cookie, '1', 'A receives it');
  await connect(t, await newPeer('holder ep.talk'), path, 'holder name:ep.talk policy:world:talk', 'bus: WORLD TALK on ep.talk');
  await connect(t, await newPeer('holder ep.own'), path, 'holder name:ep.own policy:world:own', 'bus: WORLD OWN on ep.own');
  const s1 = ok(t, await c.cmd('send name cookie:2 name:ep.talk vec:8'), 'C → ep.talk: both grant TALK');
  const g1 = await a.cmd('recv wait:1000');
  t.equal(g1.kv.stream, s1.kv.stream, 'A receives it', { answer: g1.line });
  ok(t, await c.cmd('acquire ep.own'), 'C acquires ep.own: both grant OWN');
  await connect(t, await newPeer('holder ep.bus'), path, 'holder name:ep.bus policy:world:own', 'bus: WORLD OWN on ep.bus');
  fails(t, await c.cmd('acquire ep.bus'), 'EPERM', 'C acquires ep.bus: the bus grants OWN, the endpoint does not: EPERM');
}

async function special(t: Tap, dir: string): Promise<void> {
  // handle.c: NAME_ACQUIRE/RELEASE, SEND, MATCH_ADD need an ordinary
  // connection, RECV an ordinary, monitor or activator one; CONN_UPDATE
  // with NAME/POLICY_ACCESS items a policy holder (connection.c
  // kdbus_cmd_conn_update), EOPNOTSUPP otherwise. Policy holders upload one
  // name (kdbus_policy_set maxPolicies 1: E2BIG), which no other owner may
  // hold (EEXIST). names.c kdbus_cmd_name_acquire: at most
  // KDBUS_CONN_MAX_NAMES (256) owned names per connection (E2BIG); queued
  // names do not count. TALK is checked against owned names only
  // (kdbus_conn_policy_query_all walks names_list, not the queue).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-special');
  const act = await connect(t, await newPeer('activator'), path, 'activator name:sp.act policy:world:talk', 'activator for sp.act');
  const holder = await connect(t, await newPeer('holder'), path, 'holder name:sp.held policy:world:own', 'policy holder for sp.held');
  const o = await hello(t, await newPeer('ordinary'), path);
  fails(t, await act.cmd('acquire sp.other'), 'EOPNOTSUPP', 'activator: NAME_ACQUIRE is EOPNOTSUPP');
  fails(t, await act.cmd('release sp.act'), 'EOPNOTSUPP', 'activator: NAME_RELEASE is EOPNOTSUPP');
  fails(t, await act.cmd(`send ${o.id} cookie:1 vec:8`), 'EOPNOTSUPP', 'activator: SEND is EOPNOTSUPP');
  fails(t, await act.cmd('match 1 id-add'), 'EOPNOTSUPP', 'activator: MATCH_ADD is EOPNOTSUPP');
  fails(t, await act.cmd('recv'), 'EAGAIN', 'activator: RECV is allowed (EAGAIN: nothing queued)');
  fails(t, await act.cmd('update name:sp.act policy:world:own'), 'EOPNOTSUPP', 'activator: a policy CONN_UPDATE is EOPNOTSUPP');
  fails(t, await holder.cmd(`send ${o.id} cookie:1 vec:8`), 'EOPNOTSUPP', 'policy holder: SEND is EOPNOTSUPP');
  fails(t, await holder.cmd('recv'), 'EOPNOTSUPP', 'policy holder: RECV is EOPNOTSUPP');
  fails(t, await holder.cmd('acquire sp.held'), 'EOPNOTSUPP', 'policy holder: NAME_ACQUIRE is EOPNOTSUPP');
  fails(t, await holder.cmd('update name:sp.held policy:world:own name:sp.held2 policy:world:own'), 'E2BIG',
    'policy holder: two names in one CONN_UPDATE: E2BIG');
  fails(t, await holder.cmd('update name:sp.act policy:world:own'), 'EEXIST', 'policy holder: a name the activator holds policy for: EEXIST');
  const h2 = await (await newPeer('second holder')).cmd(`connect ${path} holder name:sp.held policy:world:talk`);
  fails(t, h2, 'EEXIST', 'a second policy holder for sp.held: HELLO fails with EEXIST');
  fails(t, await o.cmd('update name:sp.mine policy:world:own'), 'EOPNOTSUPP', 'ordinary connection: a policy CONN_UPDATE is EOPNOTSUPP');
  const listed = await holder.cmd('list unique');
  t.ok(listed.ok, 'policy holder: NAME_LIST works', { answer: listed.line });
  t.ok((listed.kv.recs ?? '').split(',').includes(`${holder.id}:${4 | 1}:-:-`), 'and lists the holder (HELLO flags POLICY_HOLDER|ACCEPT_FD)');

  // 256 owned names; queued ones do not count
  let owned = 0;
  for (let i = 0; i < 256; i++) if ((await o.cmd(`acquire sp.n${i}`)).ok) owned++;
  t.equal(owned, 256, 'one connection owns 256 names');
  fails(t, await o.cmd('acquire sp.n256'), 'E2BIG', 'the 257th: E2BIG');
  ok(t, await o.cmd('release sp.n0'), 'release one');
  const other = await hello(t, await newPeer('other'), path);
  ok(t, await other.cmd('acquire sp.busy'), 'another connection owns sp.busy');
  t.equal((await o.cmd('acquire sp.busy queue')).kv.flags, String(NAME_QUEUE | NAME_IN_QUEUE), '255 owned: queueing for one more works');
  ok(t, await o.cmd('acquire sp.n0'), 'and owning the 256th again');
  fails(t, await o.cmd('acquire sp.n257'), 'E2BIG', 'then E2BIG again');

  // TALK counts owned names only
  await connect(t, await newPeer('holder talk'), path, 'holder name:sp.busy policy:world:talk', 'policy holder: WORLD TALK on sp.busy');
  const n = await hello(t, await nobody(t, newPeer, 'nobody'), path);
  fails(t, await n.cmd(`send ${o.id} cookie:1 vec:8`), 'EPERM', 'uid 65534 → a root connection only queued for sp.busy: EPERM');
  ok(t, await n.cmd(`send ${other.id} cookie:2 vec:8`), 'uid 65534 → the owner of sp.busy: allowed');
}

async function unprivileged(t: Tap, dir: string): Promise<void> {
  // handle.c: privileged = no custom policy on the endpoint and
  // (CAP_IPC_OWNER or euid == bus owner). kdbus_conn_new: only privileged
  // connections may be monitors, activators or policy holders (EPERM, before
  // the items are looked at). handle_ep_ioctl_endpoint_make: making an
  // endpoint is privileged (EPERM). endpoint.c kdbus_ep_new: a custom
  // endpoint is mode 0600 unless MAKE_ACCESS_GROUP/WORLD (the VFS refuses
  // the open: EACCES).
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-unpriv');
  const bus = dirname(path);
  fails(t, await (await nobody(t, newPeer, 'monitor')).cmd(`connect ${path} monitor`), 'EPERM',
    'uid 65534: HELLO as monitor: EPERM');
  fails(t, await (await nobody(t, newPeer, 'activator')).cmd(`connect ${path} activator name:un.priv policy:world:talk`), 'EPERM',
    'uid 65534: HELLO as activator: EPERM');
  fails(t, await (await nobody(t, newPeer, 'holder')).cmd(`connect ${path} holder name:un.priv policy:world:own`), 'EPERM',
    'uid 65534: HELLO as policy holder: EPERM');
  fails(t, await (await nobody(t, newPeer, 'endpoint maker')).cmd(`epmake ${path} ${NOBODY}-ep world`), 'EPERM',
    'uid 65534: ENDPOINT_MAKE on the bus: EPERM');
  t.equal(await statOf(`${bus}/${NOBODY}-ep`), null, 'no endpoint appeared');

  const epMaker = await newPeer('root endpoint maker');
  ok(t, await epMaker.cmd(`epmake ${path} 0-closed none name:un.priv policy:world:talk`), 'root: ENDPOINT_MAKE 0-closed without access flags');
  t.same(await statOf(`${bus}/0-closed`), { mode: 0o600, uid: 0, gid: 0 }, '0-closed is mode 0600, root:root');
  fails(t, await (await nobody(t, newPeer, 'opener')).cmd(`connect ${bus}/0-closed`), 'EACCES',
    'uid 65534 cannot open it: EACCES');
  const ro = ok(t, await (await newPeer('root opener')).cmd(`connect ${bus}/0-closed`), 'root can open it');
  t.ok(Number(ro.kv.id) > 0, 'and says HELLO on it');
  const onEp = await newPeer('root on custom endpoint');
  fails(t, await onEp.cmd(`connect ${bus}/0-closed monitor`), 'EOPNOTSUPP', 'no monitors on custom endpoints, even for root');
  fails(t, await (await newPeer('root activator on endpoint')).cmd(`connect ${bus}/0-closed activator name:un.priv policy:world:talk`),
    'EPERM', 'a connection on a custom endpoint is never privileged: activator EPERM even for root');
}

async function seeEndpoint(t: Tap, dir: string): Promise<void> {
  // On a custom endpoint (has_policy) the endpoint database decides what is
  // visible: kdbus_name_list_write skips names without SEE (unique ids are
  // not filtered); kdbus_cmd_conn_info answers ESRCH for an invisible name
  // and ENXIO for an id whose connection owns no visible name;
  // kdbus_conn_policy_see_notification passes NAME_* notifications for
  // visible names only and never ID_ADD/ID_REMOVE.
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-see');
  const bus = dirname(path);
  const epMaker = await newPeer('endpoint maker');
  ok(t, await epMaker.cmd(`epmake ${path} 0-ep world name:see.visible policy:world:see`),
    'root: ENDPOINT_MAKE 0-ep (world) granting SEE on see.visible only');
  t.same(await statOf(`${bus}/0-ep`), { mode: 0o666, uid: 0, gid: 0 }, '0-ep is mode 0666');

  const a = await hello(t, await newPeer('A (see.visible)'), path);
  const b = await hello(t, await newPeer('B (see.hidden)'), path);
  const z = await hello(t, await newPeer('Z (no names)'), path);
  ok(t, await a.cmd('acquire see.visible'), 'A owns see.visible');
  ok(t, await b.cmd('acquire see.hidden'), 'B owns see.hidden');
  const w = await hello(t, await newPeer('watcher (default endpoint)'), path);
  const c = await hello(t, await nobody(t, newPeer, 'C (custom endpoint)'), `${bus}/0-ep`);
  for (const p of [c, w]) {
    ok(t, await p.cmd('match 1 id-add'), `${p.name}: ID_ADD`);
    ok(t, await p.cmd('match 2 id-remove'), `${p.name}: ID_REMOVE`);
    ok(t, await p.cmd('match 3 name-add'), `${p.name}: NAME_ADD`);
    ok(t, await p.cmd('match 4 name-remove'), `${p.name}: NAME_REMOVE`);
  }

  await listIs(t, c, 'names', [rec(a, 1, 'see.visible', 0)], 'NAMES on the custom endpoint: only see.visible');
  await listIs(t, c, 'unique', [rec(a, 1), rec(b, 1), rec(z, 1), rec(w, 1), rec(c, 1)],
    'UNIQUE on the custom endpoint: unique ids are not filtered (kdbus_name_list_write checks names only)');
  await listIs(t, w, 'names', [rec(a, 1, 'see.visible', 0), rec(b, 1, 'see.hidden', 0)], 'NAMES on the default endpoint: both');

  const ia = await c.cmd('info see.visible');
  t.equal(ia.kv.id, String(a.id), 'CONN_INFO by the visible name: A', { answer: ia.line });
  fails(t, await c.cmd('info see.hidden'), 'ESRCH', 'CONN_INFO by an invisible name: ESRCH');
  fails(t, await c.cmd('info no.such'), 'ESRCH', 'CONN_INFO by a name nobody owns: ESRCH');
  t.equal((await c.cmd(`info ${a.id}`)).kv.id, String(a.id), 'CONN_INFO by the id of A (owns a visible name)');
  fails(t, await c.cmd(`info ${b.id}`), 'ENXIO', 'CONN_INFO by the id of B (only an invisible name): ENXIO');
  fails(t, await c.cmd(`info ${z.id}`), 'ENXIO', 'CONN_INFO by the id of Z (no names at all): ENXIO');
  t.equal((await w.cmd(`info ${b.id}`)).kv.id, String(b.id), 'on the default endpoint B is visible');
  t.equal((await w.cmd('info see.hidden')).kv.id, String(b.id), 'and so is see.hidden');

  // TALK on a custom endpoint (kdbus_conn_policy_talk): the endpoint
  // database must grant TALK for a name of the receiver before anything
  // else, even between connections of the same uid.
  const n2 = await hello(t, await nobody(t, newPeer, 'N2 (uid 65534, default endpoint)'), path);
  fails(t, await c.cmd('send name cookie:1 name:see.visible vec:8'), 'EPERM', 'C → see.visible (SEE only on the endpoint): EPERM');
  fails(t, await c.cmd(`send ${n2.id} cookie:2 vec:8`), 'EPERM', 'C → N2, same uid but no TALK on the endpoint: EPERM');
  ok(t, await n2.cmd(`send ${c.id} cookie:3 vec:8`), 'N2 (default endpoint) → C, same uid: allowed');
  const g3 = await c.cmd('recv');
  t.equal(g3.kv.cookie, '3', 'C receives it', { answer: g3.line });
  if (g3.ok) await c.cmd(`free ${g3.kv.off}`);
  t.equal(await notification(t, w, 'ID_ADD of N2'), `id-add:${n2.id}:1`, 'the watcher saw N2 arrive');
  const d = await hello(t, await newPeer('D'), path);
  ok(t, await d.cmd('bye'), 'D comes and goes on the default endpoint');
  t.equal(await notification(t, w, 'ID_ADD on the default endpoint'), `id-add:${d.id}:1`, 'the watcher sees ID_ADD of D');
  t.equal(await notification(t, w, 'ID_REMOVE on the default endpoint'), `id-remove:${d.id}:1`, 'and ID_REMOVE');
  ok(t, await b.cmd('acquire see.hidden2'), 'B acquires see.hidden2');
  ok(t, await a.cmd('release see.visible'), 'A releases see.visible');
  t.equal(await notification(t, w, 'NAME_ADD'), `name-add:0:0:${b.id}:0:see.hidden2`, 'the watcher sees NAME_ADD see.hidden2');
  t.equal(await notification(t, w, 'NAME_REMOVE'), `name-remove:${a.id}:0:0:0:see.visible`, 'and NAME_REMOVE see.visible');
  t.equal(await notification(t, c, 'custom endpoint'), `name-remove:${a.id}:0:0:0:see.visible`,
    'the custom endpoint gets NAME_REMOVE of the visible name, and nothing before it (no ID_ADD/ID_REMOVE, no invisible name)');
  await nothingQueued(t, c, 'and nothing after it');
}

// ---- 5. names are bytes ----

async function latin1Name(t: Tap, dir: string): Promise<void> {
  // kdbus_name_is_valid tests each byte with the kernel's isalpha, whose
  // table (lib/ctype.c) is Latin-1: the single byte 0xE9 is a letter, and
  // the name goes everywhere as bytes (kdbus-peer spells a byte \xNN, both
  // in commands and in answers).
  const name = 'org.caf\\xE9.x';
  const newPeer = peers(t);
  const { path } = await makeBus(t, newPeer, dir, '0-latin1');
  const w = await hello(t, await newPeer('watcher'), path);
  ok(t, await w.cmd(`match 1 name-add:${name}`), 'watcher: NAME_ADD for "org.caf\\xE9.x" (a rule by its bytes)');
  const o = await hello(t, await newPeer('owner'), path);
  t.equal((await o.cmd(`acquire ${name}`)).kv.flags, '0', 'the owner acquires "org.caf\\xE9.x"');
  fails(t, await o.cmd('acquire org.caf\\xC3\\xA9.x'), 'EINVAL', 'its UTF-8 spelling is no valid name (0xA9 is no letter)');
  t.equal(await notification(t, w, 'NAME_ADD'), `name-add:0:0:${o.id}:0:${name}`, 'NAME_ADD carries exactly those bytes');
  await listIs(t, w, 'names', [rec(o, HELLO_ACCEPT_FD, name, 0)], 'NAME_LIST gives exactly those bytes');

  const s = await hello(t, await newPeer('sender'), path);
  const sent = ok(t, await s.cmd(`send name cookie:21 name:${name} vec:64`), 'SEND to the name by DST_NAME');
  const got = ok(t, await o.cmd('recv wait:2000', 5000), 'the owner receives it');
  t.equal(got.kv.src, String(s.id), 'from the sender');
  t.equal(got.kv.stream, sent.kv.stream, 'with the payload sent');
  t.equal(got.kv.dstname, name, 'its DST_NAME item has exactly those bytes');
  ok(t, await o.cmd(`free ${got.kv.off}`), 'slice freed');

  const info = ok(t, await s.cmd(`infometa ${name} ${ATTACH_NAMES}`), 'CONN_INFO by the name');
  t.equal(info.kv.id, String(o.id), 'finds the owner');
  t.equal(info.kv.names, name, 'whose OWNED_NAME item has exactly those bytes');
  ok(t, await o.cmd(`release ${name}`), 'the owner releases it');
  await listIs(t, w, 'names', [], 'and it is gone');
}

// ---- the mount ----

await t.test('kdbusfs mount (passthrough pools)', async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir);
  if (!server) return;

  await t.test('1. NAME_LIST: UNIQUE, NAMES, ACTIVATORS, QUEUED records', (t) => nameList(t, dir));
  await t.test('2. name queues: hand-over order and NAME_CHANGE', (t) => queueOrder(t, dir));
  await t.test('3. activator: messages wait, move to the implementer and back', (t) => activator(t, dir));
  await t.test('4a. policy for uid 65534: OWN and TALK', (t) => ownTalk(t, dir));
  await t.test('4b. policy: wildcard names', (t) => wildcard(t, dir));
  await t.test('4c. policy: privileged-only operations, endpoint modes', (t) => unprivileged(t, dir));
  await t.test('4d. policy: SEE on a custom endpoint', (t) => seeEndpoint(t, dir));
  await t.test('4e. special connections, name limits, TALK by owned names', (t) => special(t, dir));
  await t.test('4f. policy: custom endpoint and bus database both decide', (t) => endpointAndBus(t, dir));
  await t.test('5. a name with the Latin-1 letter byte 0xE9', (t) => latin1Name(t, dir));

  t.equal(live.size, 0, 'no peer process is left');
  await stopServer(t, server, dir);
});

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'mnt'))) rmSync(tmp, { recursive: true, force: true });
});
