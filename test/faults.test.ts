// Faults (issue #7): a client SIGKILLed in every state frees everything it
// had and its peers are told as kdbus tells them; the server SIGKILLed
// leaves its clients a clean error and its mount point ready for the next
// server. A real `kdbusfs mount DIR` in its own process, real clients
// (test/clients/kdbus-peer.c, one process per connection), and the server's
// census (lib/core/census.ts, read with SIGUSR2) to see that nothing is left:
//   a. parked in a synchronous call (the caller, and the replier it waits
//      on; test/calls-quotas.test.ts "3. SIGKILL while parked" checks the
//      caller's death and ID_REMOVE, and is not repeated here)
//   b. holding well-known names with queued waiters, a name an activator
//      stands in for (with a message queued to that name), and a wait of
//      its own; and an owner killed together with its first waiter
//   c. with messages in its own queue (one with a memfd), requests it read
//      and did not answer, a request of its own pending elsewhere, and a
//      message of its own still queued elsewhere
//   d. a receiver killed while the fds of its RECV are installed
//   e. the server itself: clients idle, parked in a call, polling; and
//      (e2) a receiver held by the fd installer at that moment
// After each of a-d, with every client gone, the census is back to the
// server's baseline.
//
// This process never touches the mount synchronously; every wait is bounded.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  census, censusBack, compileClient, connect, fails, hello, live, makeBus, mountType, needRootAndFuse, ok, peerSet,
  sleep, startServer, stopServer, until, withTimeout, type Census, type Exit, type NewPeer, type Peer, type Reply,
  type Server, type Tap,
} from './harness.js';

// kdbus.h values
const HELLO_ACCEPT_FD = 1;
const HELLO_ACTIVATOR = 2;
const NAME_QUEUE = 4;
const NAME_ACTIVATOR = 16;

t.setTimeout(90_000);

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-faults-'));
chmodSync(tmp, 0o755);
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);

// ---- helpers ----

/** RECV (waiting up to ms), the slice freed again. */
async function recvFree(p: Peer, ms = 0): Promise<Reply> {
  const r = await p.cmd(ms ? `recv wait:${ms}` : 'recv', ms + 5000);
  if (r.ok) await p.cmd(`free ${r.kv.off}`);
  return r;
}

/** The notify= fields of the kernel notifications waiting for p, in order (each freed). */
async function notifications(p: Peer, ms = 300): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const r = await recvFree(p, ms);
    if (!r.ok) return out;
    // a reply notification names the request it is about: @cookie_reply
    const about = r.kv.notify?.startsWith('reply-') ? `@${r.kv.creply}` : '';
    out.push(r.kv.src === '0' ? `${r.kv.notify}${about}` : `message from ${r.kv.src} cookie ${r.kv.cookie}`);
  }
}

/** SIGKILLs p; resolves with its exit (bounded: a killed client is never left hanging or a zombie). */
async function kill(t: Tap, p: Peer): Promise<Exit> {
  p.child.kill('SIGKILL');
  const e = await withTimeout(p.exited, 5000, `${p.name} dies`);
  t.equal(e.signal, 'SIGKILL', `${p.name} died of SIGKILL`);
  return e;
}

/**
 * Busy-waits (up to ms) until the fd installer holds process pid (its
 * TracerPid is set: native/fdinstall.cc seizes the receiving thread for the
 * few hundred microseconds of an install); with borrowed, until it also
 * blocked every signal of the thread, which it does once the thread stopped
 * on its way back from its answered RECV, for the fds' injection. Reads
 * /proc only.
 */
function heldByInstaller(pid: number, ms: number, borrowed = false): boolean {
  for (const end = Date.now() + ms; Date.now() < end;) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return false;
    }
    if (/^TracerPid:\s*0$/m.test(status)) continue;
    if (!borrowed || !/^SigBlk:\s*0+$/m.test(status)) return true;
  }
  return false;
}

type Counts = Partial<Omit<Census, 'memory' | 'accounts'>>;

/** Waits (bounded) until the census shows these counts; asserts them. */
async function expectCensus(t: Tap, s: Server, want: Counts, what: string): Promise<Census> {
  let now = await census(s);
  const pick = (c: Census): Counts => Object.fromEntries(Object.keys(want).map((k) => [k, c[k as keyof Counts]]));
  await until(async () => JSON.stringify(pick(now = await census(s))) === JSON.stringify(want), 3000, 50);
  t.same(pick(now), want, what);
  return now;
}

// ---- a. parked in a synchronous call ----

async function parkedCall(t: Tap, s: Server, dir: string): Promise<void> {
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-fa');
  const w = await hello(t, await newPeer('watcher'), path);
  ok(t, await w.cmd('match 1 id-remove'), 'watcher: ID_REMOVE');
  const b = await hello(t, await newPeer('replier'), path);
  const before = await census(s);

  // The caller, killed while parked with a CANCEL_FD (which the server holds and watches).
  const k = await hello(t, await newPeer('caller'), path);
  const call = k.cmd(`call ${b.id} cookie:1 expect:20000 cancel:60000 vec:8`, 25_000).catch((e: Error) => e);
  t.equal((await recvFree(b, 3000)).kv.cookie, '1', 'the replier reads the call: the caller is parked');
  await expectCensus(t, s, { parked: 1, replies: 1, heldFds: 1, fdWatches: 1, connections: before.connections + 1 },
    'parked: the call, its reply object, its CANCEL_FD held and watched');
  await kill(t, k);
  t.ok((await call) instanceof Error, 'the call never answered the dead caller');
  t.same(await notifications(w), [`id-remove:${k.id}:${HELLO_ACCEPT_FD}`], 'watcher: ID_REMOVE of the caller, nothing else');
  await expectCensus(t, s, { parked: 0, replies: 0, heldFds: 0, fdWatches: 0, connections: before.connections,
    queued: 0, poolSlices: 0, userCharges: before.userCharges }, 'the caller left nothing: no call, reply, fd, watch, slice');
  fails(t, await b.cmd(`send ${k.id} cookie:2 reply:1 vec:8`), 'ENXIO', 'an answer to the dead caller: ENXIO');

  // The replier, killed with the call read and unanswered: the caller gets
  // EPIPE (kdbus_sync_reply_wakeup) and no REPLY_DEAD.
  const c = await hello(t, await newPeer('caller 2'), path);
  const r = await hello(t, await newPeer('replier 2'), path);
  const call2 = c.cmd(`call ${r.id} cookie:10 expect:20000 vec:8`, 25_000);
  t.equal((await recvFree(r, 3000)).kv.cookie, '10', 'replier 2 reads the call');
  await kill(t, r);
  const res = await call2;
  fails(t, res, 'EPIPE', 'the parked caller: EPIPE when its replier is killed', { answer: res.line });
  t.ok(Number(res.kv.elapsed) < 3000, `at once (${res.kv.elapsed} ms)`);
  t.same(await notifications(c), [], 'and no REPLY_DEAD besides');
  t.same(await notifications(w), [`id-remove:${r.id}:${HELLO_ACCEPT_FD}`], 'watcher: ID_REMOVE of replier 2');
  await expectCensus(t, s, { parked: 0, replies: 0, heldFds: 0, connections: before.connections + 1, queued: 0,
    poolSlices: 0 }, 'replier 2 left nothing, the caller is not parked any more');
  const again = c.cmd(`call ${b.id} cookie:20 expect:5000 vec:8`, 10_000);
  t.equal((await recvFree(b, 3000)).kv.cookie, '20', 'caller 2 calls again');
  ok(t, await b.cmd(`send ${c.id} cookie:21 reply:20 vec:8`), 'answered');
  t.equal((await again).kv.creply, '20', 'and gets its reply');
}

// ---- b. names ----

async function names(t: Tap, s: Server, dir: string): Promise<void> {
  // names.c kdbus_name_remove_by_conn: the dead connection's waits go away
  // silently; each name it owned, in the order it gained them, goes to the
  // first waiter (NAME_CHANGE, with the flags the waiter asked with), else
  // back to its activator with the messages sent to that name
  // (kdbus_conn_move_messages; NAME_CHANGE, flags NAME_ACTIVATOR), else away
  // (NAME_REMOVE); then ID_REMOVE (kdbus_conn_disconnect).
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-fb');
  const sub = await hello(t, await newPeer('subscriber'), path);
  for (const [i, rule] of ['name-change', 'name-remove', 'id-remove'].entries()) {
    ok(t, await sub.cmd(`match ${i + 1} ${rule}`), `subscriber: ${rule}`);
  }
  const act = await connect(t, await newPeer('activator'), path, 'activator name:fault.act policy:world:talk',
    'an activator for fault.act');
  const other = await hello(t, await newPeer('other owner'), path);
  ok(t, await other.cmd('acquire fault.other'), 'another connection owns fault.other');
  const v = await hello(t, await newPeer('victim'), path);
  ok(t, await v.cmd('acquire fault.queued allow'), 'victim owns fault.queued');
  ok(t, await v.cmd('acquire fault.solo'), 'victim owns fault.solo');
  ok(t, await v.cmd('acquire fault.act'), 'victim takes fault.act over from its activator');
  t.equal((await v.cmd('acquire fault.other queue')).kv.flags, String(NAME_QUEUE | 8), 'victim queues for fault.other');
  const w1 = await hello(t, await newPeer('waiter 1'), path);
  const w2 = await hello(t, await newPeer('waiter 2'), path);
  t.equal((await w1.cmd('acquire fault.queued queue')).kv.flags, String(NAME_QUEUE | 8), 'waiter 1 queues for fault.queued');
  t.equal((await w2.cmd('acquire fault.queued queue')).kv.flags, String(NAME_QUEUE | 8), 'waiter 2 queues behind it');
  const snd = await hello(t, await newPeer('sender'), path);
  const byName = ok(t, await snd.cmd('send name cookie:5 name:fault.act vec:64'), 'a message to fault.act, queued at the victim');
  ok(t, await snd.cmd(`send ${v.id} cookie:6 vec:64`), 'and one to the victim by id');
  await notifications(sub);
  await expectCensus(t, s, { names: 4, nameWaiters: 3, queued: 2 }, 'before: 4 names, 3 waits, 2 messages queued');

  await kill(t, v);
  t.same(await notifications(sub), [
    `name-change:${v.id}:2:${w1.id}:${NAME_QUEUE}:fault.queued`,
    `name-remove:${v.id}:0:0:0:fault.solo`,
    `name-change:${v.id}:0:${act.id}:${NAME_ACTIVATOR}:fault.act`,
    `id-remove:${v.id}:${HELLO_ACCEPT_FD}`,
  ], 'subscriber: fault.queued to waiter 1, fault.solo removed, fault.act back to its activator, then ID_REMOVE');
  await expectCensus(t, s, { names: 3, nameWaiters: 1, queued: 1, chargedMessages: 0 },
    'after: the victim\'s wait and fault.solo are gone, waiter 2 still waits, the message to fault.act is with the activator');
  const list = await sub.cmd('list names,activators,queued');
  t.match(list.kv.recs ?? '', new RegExp(`${w1.id}:${HELLO_ACCEPT_FD}:fault.queued:${NAME_QUEUE}`), 'waiter 1 owns fault.queued',
    { answer: list.line });
  const impl = await hello(t, await newPeer('implementer'), path);
  ok(t, await impl.cmd('acquire fault.act'), 'an implementer takes fault.act');
  const moved = await recvFree(impl, 2000);
  t.equal(moved.kv.cookie, '5', 'and receives the message sent to the name before the victim died', { answer: moved.line });
  t.equal(moved.kv.stream, byName.kv.stream, 'intact');
  t.equal(moved.kv.dstname, 'fault.act', 'addressed to fault.act');
  await notifications(sub);

  // An owner and its first waiter die together: the name ends with the
  // second waiter, whichever disconnect the server sees first.
  const v2 = await hello(t, await newPeer('owner 2'), path);
  ok(t, await v2.cmd('acquire fault.pair'), 'owner 2 owns fault.pair');
  const q1 = await hello(t, await newPeer('waiter A'), path);
  const q2 = await hello(t, await newPeer('waiter B'), path);
  ok(t, await q1.cmd('acquire fault.pair queue'), 'waiter A queues');
  ok(t, await q2.cmd('acquire fault.pair queue'), 'waiter B queues');
  await notifications(sub);
  v2.child.kill('SIGKILL');
  q1.child.kill('SIGKILL');
  await withTimeout(Promise.all([v2.exited, q1.exited]), 5000, 'both die');
  const seen = await notifications(sub);
  t.same(seen.filter((n) => n.startsWith('id-remove')).sort(),
    [`id-remove:${v2.id}:${HELLO_ACCEPT_FD}`, `id-remove:${q1.id}:${HELLO_ACCEPT_FD}`].sort(), 'two ID_REMOVEs', { seen });
  const last = seen.filter((n) => n.endsWith(':fault.pair')).at(-1)?.split(':') ?? [];
  t.same([last[0], last[3], last[4]], ['name-change', String(q2.id), String(NAME_QUEUE)],
    'the last word on fault.pair: NAME_CHANGE to waiter B', { seen });
  const l2 = await sub.cmd('list names,queued');
  t.match(l2.kv.recs ?? '', new RegExp(`${q2.id}:${HELLO_ACCEPT_FD}:fault.pair:${NAME_QUEUE}`), 'waiter B owns fault.pair', { answer: l2.line });
  await expectCensus(t, s, { nameWaiters: 1 }, 'only waiter 2\'s wait is left');
}

// ---- c. queued messages and pending replies ----

async function messages(t: Tap, s: Server, dir: string): Promise<void> {
  // connection.c kdbus_conn_disconnect: the dying queue is freed, each
  // request in it reported REPLY_DEAD to its sender; then every reply
  // object waiting on the dead connection gets REPLY_DEAD (so a request
  // never read is reported twice, one read once); the dead connection's own
  // requests are unlinked. What it sent stays queued at its receivers.
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-fc');
  const s1 = await hello(t, await newPeer('sender 1'), path);
  const s2 = await hello(t, await newPeer('sender 2'), path);
  const s3 = await hello(t, await newPeer('sender 3'), path);
  const before = await census(s);
  const v = await hello(t, await newPeer('victim'), path);

  ok(t, await s1.cmd(`send ${v.id} cookie:1 vec:100`), 'sender 1 → victim: a message');
  ok(t, await s1.cmd(`send ${v.id} cookie:2 vec:16 memfd:4096`), 'sender 1 → victim: a message with a memfd');
  ok(t, await s2.cmd(`send ${v.id} cookie:20 expect:30000 vec:8`), 'sender 2 → victim: a request, never read');
  ok(t, await s3.cmd(`send ${v.id} cookie:30 prio:-5 expect:30000 vec:8`), 'sender 3 → victim: a request, priority -5');
  const read = await v.cmd('recv prio:-1');
  t.equal(read.kv.cookie, '30', 'the victim reads that request first (RECV with USE_PRIORITY), and leaves it unanswered',
    { answer: read.line });
  ok(t, await v.cmd(`free ${read.kv.off}`), 'and frees its slice');
  const sent = ok(t, await v.cmd(`send ${s1.id} cookie:40 expect:30000 vec:200`), 'victim → sender 1: a request of its own');
  ok(t, await v.cmd(`send ${s3.id} cookie:41 vec:300`), 'victim → sender 3: a message');
  const req = await recvFree(s1);
  t.equal(req.kv.stream, sent.kv.stream, 'sender 1 reads the victim\'s request');
  await expectCensus(t, s, { replies: 3, heldFds: 1 }, 'three pending replies, one memfd held');

  await kill(t, v);
  t.same(await notifications(s2), ['reply-dead:16@20', 'reply-dead:16@20'],
    'sender 2 (request never read): REPLY_DEAD twice, from the dying queue and from its reply list');
  t.same(await notifications(s3), [`message from ${v.id} cookie 41`, 'reply-dead:16@30'],
    'sender 3: the message the victim sent before it died, then REPLY_DEAD once (its request had been read)');
  t.same(await notifications(s1), [], 'sender 1: nothing (its messages expected no reply)');
  fails(t, await s1.cmd(`send ${v.id} cookie:42 reply:40 vec:8`), 'ENXIO', 'sender 1 answers the dead victim: ENXIO');
  await expectCensus(t, s, { replies: 0, heldFds: 0, queued: 0, chargedMessages: 0, poolSlices: 0,
    connections: before.connections, userCharges: before.userCharges }, 'the victim left no reply, fd, message or slice');
}

// ---- d. mid fd install ----

async function midInstall(t: Tap, s: Server, dir: string): Promise<void> {
  // A RECV with fds (native/fdinstall.cc) holds the receiving thread
  // stopped while the fds go in; SIGKILL ends it there. The install fails,
  // the message goes back to the queue and is freed with the connection.
  // Each receiver drains 32 messages with three memfds each and is killed
  // the moment the installer holds it.
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-fd');
  const snd = await hello(t, await newPeer('sender'), path);
  const before = await census(s);
  let held = 0;
  let tries = 0;
  for (; tries < 10 && held < 3; tries++) {
    const v = await hello(t, await newPeer(`receiver ${tries}`), path);
    const r = await snd.cmd(`sendmany ${v.id} 32 cookie:1 vec:8 memfd:64 memfd:64 memfd:64`);
    if (r.kv.sent !== '32') {
      t.fail('32 messages with memfds queued', { answer: r.line });
      break;
    }
    v.child.stdin!.write('drain\n');
    if (heldByInstaller(v.pid, 3000)) held++;
    v.child.kill('SIGKILL');
    await withTimeout(v.exited, 5000, 'the receiver dies (not left stopped or a zombie)');
    const back = await censusBack(s, before);
    if (Object.keys(back.off).length) {
      t.fail(`after receiver ${tries}: the census is back`, { off: back.off });
      break;
    }
  }
  t.equal(held, 3, `3 receivers killed while the installer held them (${tries} tries)`);
  await expectCensus(t, s, { installing: 0, parked: 0, heldFds: 0, queued: 0, connections: before.connections },
    'every killed receiver left nothing: no install, parked RECV, held fd or queued message');
  const v = await hello(t, await newPeer('receiver, not killed'), path);
  ok(t, await snd.cmd(`send ${v.id} cookie:9 memfd:64`), 'the sender goes on');
  const got = await recvFree(v, 2000);
  t.equal(got.kv.types, '3', 'a new receiver gets its memfd installed', { answer: got.line });
  t.equal(got.kv.pattern, 'ok', 'with its bytes');
}

// ---- e. the server killed ----

async function serverKilled(t: Tap, dir: string): Promise<void> {
  // The FUSE connection is aborted when the server's /dev/fuse closes:
  // requests in flight end with ECONNABORTED, later ones ENOTCONN, pollers
  // are woken. The server's watchdog (native/mount.cc) detaches the mount.
  const s = await startServer(t, dir);
  if (!s) return;
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-fe');
  const idle = await hello(t, await newPeer('idle'), path);
  const r = await hello(t, await newPeer('replier'), path);
  const c = await hello(t, await newPeer('caller'), path);
  const q = await hello(t, await newPeer('poller'), path);
  const call = c.cmd(`call ${r.id} cookie:1 expect:30000 vec:8`, 40_000);
  t.equal((await recvFree(r, 3000)).kv.cookie, '1', 'the caller is parked in a synchronous call');
  const polled = q.cmd('poll 30000', 40_000);
  await sleep(100);

  const t0 = Date.now();
  s.child.kill('SIGKILL');
  await withTimeout(s.ended, 5000, 'the server dies');
  const rc = await withTimeout(call, 5000, 'the parked call returns');
  t.ok(['ECONNABORTED', 'ENOTCONN'].includes(rc.err ?? ''), `the parked call returns ${rc.err}`, { answer: rc.line });
  t.ok(Date.now() - t0 < 3000, `within 3 s of the kill (${Date.now() - t0} ms)`);
  const rq = await withTimeout(polled, 5000, 'the poller wakes');
  t.ok(rq.ok && (Number(rq.kv.revents) & 0x8) !== 0, `the poller wakes with POLLERR (${rq.line})`);
  for (const cmd of ['recv', `send ${r.id} cookie:2 vec:8`, 'list names']) {
    const a = await idle.cmd(cmd);
    t.equal(a.err, 'ENOTCONN', `an idle client's ${cmd.split(' ')[0]}: ENOTCONN`, { answer: a.line });
  }
  t.ok(await until(() => mountType(dir) === null, 5000), 'the watchdog detached the dead mount');

  const t1 = Date.now();
  const s2 = await startServer(t, dir);
  if (!s2) return;
  t.ok(Date.now() - t1 < 5000, `a new kdbusfs mount on the same directory serves at once (${Date.now() - t1} ms)`);
  const { path: p2 } = await makeBus(t, newPeer, dir, '0-fe');
  const a = await hello(t, await newPeer('new sender'), p2);
  const b = await hello(t, await newPeer('new receiver'), p2);
  const m = ok(t, await a.cmd(`send ${b.id} cookie:7 vec:1000 memfd:5000`), 'a new client sends');
  const got = await recvFree(b, 2000);
  t.equal(got.kv.stream, m.kv.stream, 'and another receives it, byte for byte');
  await stopServer(t, s2, dir);
}

// ---- e2. the server killed while it installs fds ----

/** Tasks of the fd installer (native/fdinstall.cc) of servers mounted on dir. */
function tracersOf(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/comm`, 'utf8').trim() !== 'kdbusfs-fdinst') continue;
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(dir)) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** SigBlk and TracerPid of a process, and its open fds (number: what it is). */
function taskState(pid: number): { sigBlk: string; tracer: string; fds: Record<string, string> } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): string => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '?';
  const fds: Record<string, string> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds[fd] = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      // closed meanwhile
    }
  }
  return { sigBlk: field('SigBlk'), tracer: field('TracerPid'), fds };
}

/**
 * The fds a process has now that it had not before, but for one socket: a
 * receiving process keeps its fd channel's socket from its first install on
 * (native/fdchannel.h), also when the server dies after making it.
 */
function newFdsButChannel(before: Record<string, string>, after: Record<string, string>): string[] {
  const added = Object.keys(after).filter(fd => !(fd in before));
  const channel = added.findIndex(fd => after[fd]!.startsWith('socket:'));
  if (channel >= 0) added.splice(channel, 1);
  return added.map(fd => `${fd} -> ${after[fd]}`);
}

async function serverKilledMidInstall(t: Tap, dir: string): Promise<void> {
  // The fd installer holds a receiving thread stopped, its ioctl already
  // answered, its registers and signal mask borrowed, while it installs the
  // fds. Its tracer task shares the server's memory and files, not its
  // thread group, so it outlives a server that is killed: it must drop the
  // server's files (the FUSE connection aborts at once), put the thread back
  // (its ioctl failing with ECONNABORTED: the message was never written; the
  // fds it got closed; its own signal mask) and go. The receiver may keep
  // one thing: its fd channel's socket, once made (native/fdchannel.h). Each server is killed
  // the moment the installer, injecting, holds a receiver draining messages
  // with memfds.
  const newPeer = peerSet(t, client);
  let held = 0;
  let tries = 0;
  for (; tries < 6 && held < 3; tries++) {
    const s = await startServer(t, dir);
    if (!s) return;
    const { maker, path } = await makeBus(t, newPeer, dir, '0-fk');
    const snd = await hello(t, await newPeer(`sender ${tries}`), path);
    const v = await hello(t, await newPeer(`receiver ${tries}`), path);
    const r = await snd.cmd(`sendmany ${v.id} 32 cookie:1 vec:8 memfd:64 memfd:64 memfd:64`);
    if (r.kv.sent !== '32') t.fail('32 messages queued', { answer: r.line });
    const before = taskState(v.pid);
    const drain = v.cmd('drain', 10_000);
    if (heldByInstaller(v.pid, 3000, true)) held++;
    s.child.kill('SIGKILL');
    await withTimeout(s.ended, 5000, 'the server dies');
    const d = await drain;
    const after = taskState(v.pid);
    const where = `server ${tries}`;
    if (!['ECONNABORTED', 'ENOTCONN'].includes(d.err ?? '')) t.fail(`${where}: the drain fails cleanly`, { answer: d.line });
    const gone = Object.keys(before.fds).filter(fd => !(fd in after.fds));
    const added = newFdsButChannel(before.fds, after.fds);
    if (after.sigBlk !== before.sigBlk || after.tracer !== '0' || gone.length || added.length) {
      t.fail(`${where}: the receiver is as it was`, { before, after, gone, added, answer: d.line });
    }
    if (!(await until(() => tracersOf(dir).length === 0, 3000))) t.fail(`${where}: the installer task is gone`);
    if (!(await until(() => mountType(dir) === null, 5000))) t.fail(`${where}: the watchdog detached the mount`);
    for (const p of [maker, snd, v]) p.kill();
  }
  t.equal(held, 3, `3 servers killed while their installer held a receiver, every signal blocked (${tries} tries)`);
  t.pass('each receiver kept its signal mask and its fds and was let go; each drain ended with ECONNABORTED ' +
    'or ENOTCONN; no installer task outlived its server; each mount was detached');
}

// ---- the mount ----

await t.test('kdbusfs mount: clients killed in every state', async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir);
  if (!server) return;
  const base = await census(server);
  t.same(Object.entries(base).filter(([k, v]) => k !== 'memory' && k !== 'accounts' && v !== 0), [], 'baseline: nothing is counted');
  t.same(base.accounts.byUid, {}, 'baseline: nobody is charged');

  const scenarios: [string, (t: Tap, s: Server, dir: string) => Promise<void>][] = [
    ['a. SIGKILL while parked in a synchronous call', parkedCall],
    ['b. SIGKILL holding names with queued waiters', names],
    ['c. SIGKILL with queued messages and pending replies', messages],
    ['d. SIGKILL in the middle of an fd install', midInstall],
  ];
  for (const [name, run] of scenarios) {
    await t.test(name, (t) => run(t, server, dir));
    const { off } = await censusBack(server, base);
    t.same(off, {}, `${name.slice(0, 2)} every client gone: the census is back to the baseline`);
  }
  t.notMatch(server.stderr, /internal error|a kdbusfs bug/, 'no internal error, no teardown complaint');
  t.equal(live.size, 0, 'no peer process is left');
  await stopServer(t, server, dir);
});

await t.test('e. the server SIGKILLed: clean errors, the mount detached, a new mount at once', (t) =>
  serverKilled(t, join(tmp, 'mnt2')));
await t.test('e2. the server SIGKILLed while it installs fds in a receiver', (t) =>
  serverKilledMidInstall(t, join(tmp, 'mnt2')));

t.teardown(() => {
  for (const p of live) p.kill();
  if (!mountType(join(tmp, 'mnt')) && !mountType(join(tmp, 'mnt2'))) rmSync(tmp, { recursive: true, force: true });
});
