// `kdbusfs stats` end to end on a real mount: figures against traffic made
// (messages queued to a receiver that does not read, per sending uid; a
// reply owed and waited for; names, matches, pool use, per-user quota use),
// agreeing with the SIGUSR2 census; text, --json and --watch; the stats
// socket root's alone (0600, in a 0700 directory), never held up by clients
// that do not read, removed when the server stops; refusals and usage.
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import t from 'tap';
import { nodeForOtherUid } from './helpers.js';
import { census, cli, needRootAndFuse, run, stopServer, until, withTimeout } from './harness.js';
import { agents, mountFresh, NOBODY, stageClient } from './client/kdbus-harness.js';
import type { ConnectionStats, ServerStats } from '../lib/server-stats.js';
import { statsSocketPath } from '../lib/stats-socket.js';

t.setTimeout(120_000);
needRootAndFuse();

const { dir, server } = await mountFresh(t, 'stats');
const { dir: staged, agent } = stageClient();

async function statsJson(): Promise<ServerStats> {
  const r = await run(process.execPath, [cli, 'stats', dir, '--json'], { timeout: 20_000 });
  return JSON.parse(r.stdout) as ServerStats;
}

/** `kdbusfs ARGS` (as uid, from the readable copy, when given): exit code, stdout, stderr. */
function cliRun(args: string[], uid?: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = uid === undefined ? [process.execPath, [cli, ...args]] : nodeForOtherUid(join(staged, 'dist/lib/cli.js'), ...args);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...(uid !== undefined && { uid, gid: uid, cwd: '/' }) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return withTimeout(new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))), 20_000, `kdbusfs ${args.join(' ')}`);
}

t.test('figures match the traffic made', async (t) => {
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-stats', opts: { root: dir, access: 'world' } });
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: {
    kind: 'policy-holder', name: 'org.kdbusfs.Receiver', grants: [{ world: true, access: 'talk' }],
  } });
  const rx = await newAgent('receiver');
  const rxId = Number((await rx.do('connect', { bus: bus.path, opts: { autoReceive: false, description: 'receiver' } })).id);
  await rx.do('acquire', { name: 'org.kdbusfs.Receiver' });
  await rx.do('addMatch', { cookie: 1, rule: {} });
  const txRoot = await newAgent('root sender');
  const txRootId = Number((await txRoot.do('connect', { bus: bus.path })).id);
  const txNobody = await newAgent('nobody sender', NOBODY);
  await txNobody.do('connect', { bus: bus.path });

  await txRoot.do('send', { opts: { dst: rxId, payload: 'from root' }, count: 3 });
  await txRoot.do('send', { opts: { dst: rxId, payload: 'a call', expectReply: true, timeoutMs: 100_000 } });
  await txNobody.do('send', { opts: { name: 'org.kdbusfs.Receiver', payload: 'from nobody' }, count: 5 });

  const s = await statsJson();
  t.equal(s.version, 1, 'stats version 1');
  t.equal(s.mountpoint, dir, 'of this mount');
  const b = s.buses.find((x) => x.name === '0-stats')!;
  t.ok(b, 'the bus is listed');
  t.equal(b.connections.length, 4, 'four connections: policy holder, receiver, two senders');
  // the receiver's match takes every broadcast: the senders' arrival (ID_ADD) too
  t.equal(b.queued, 11, '11 messages queued on the bus');
  const conn = (id: number): ConnectionStats => b.connections.find((c) => c.id === id)!;
  const r = conn(rxId);
  t.match(r, {
    kind: 'ordinary', description: 'receiver', uid: 0, names: ['org.kdbusfs.Receiver'], matches: 1,
    queue: { messages: 11, bySender: { kernel: 2, 0: 4, [NOBODY]: 5 }, installing: 0, lost: 0 },
    replies: { waiting: 0, parkedCalls: 0, owed: 1 }, heldFds: 0,
  }, 'the receiver: 11 queued (2 notifications, 4 from uid 0, 5 from uid 65534), its name, its match, one reply owed');
  t.equal(r.pool.slices, 9, 'a pool slice per queued payload (a notification takes its slice when received)');
  t.ok(r.pool.used > 0 && r.pool.used <= r.pool.size, `pool bytes in use (${r.pool.used} of ${r.pool.size})`);
  t.ok(r.queue.bytes > 0 && r.queue.bytes <= r.pool.used, `queued payload bytes (${r.queue.bytes})`);
  t.match(conn(txRootId), { replies: { waiting: 1, owed: 0 } }, 'the root sender waits for one reply');
  t.ok(b.connections.some((c) => c.kind === 'policy-holder'), 'the policy holder, as such');
  const nobody = s.users.find((u) => u.uid === NOBODY)!;
  t.match(nobody, { use: { connections: 1 }, limits: { connections: 1024, queuedBytes: 256 << 20 } },
    'uid 65534: one connection, against its limits');
  t.ok(nobody.use.queuedBytes > 0, `uid 65534 charged for its queued bytes (${nobody.use.queuedBytes})`);

  const c = await census(server);
  for (const k of ['buses', 'connections', 'queued', 'names', 'matches', 'replies'] as const) {
    t.equal(s.census[k], c[k], `census ${k} as SIGUSR2 writes it (${c[k]})`);
  }

  const text = await cliRun(['stats', dir]);
  t.equal(text.code, 0, 'text: exit 0');
  t.match(text.stdout, /^BUS 0-stats \(id \d+, uid 0, endpoints bus\): 4 connections, 0 monitors, 1 names/m, 'text: the bus line');
  t.match(text.stdout, new RegExp(`^ {2}:1\\.${rxId} +ordinary +0 +\\d+ +node +11 +\\S+ +0:4,${NOBODY}:5,kernel:2 `, 'm'),
    'text: the receiver\'s row, queued per sending uid');
  t.match(text.stdout, /^USERS \(use\/limit\)$/m, 'text: the users table');

  for (let i = 0; i < 11; i++) await rx.do('recv');
  const after = (await statsJson()).buses.find((x) => x.name === '0-stats')!;
  t.match(after.connections.find((x) => x.id === rxId), { queue: { messages: 0, bySender: {} }, pool: { used: 0, slices: 0 } },
    'after the receiver read them: nothing queued, the pool empty');
});

t.test('per well-known name: its owner and its queue, first in line first', async (t) => {
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-queues', opts: { root: dir } });
  const connect = async (who: string): Promise<{ a: Awaited<ReturnType<typeof newAgent>>; id: number }> => {
    const a = await newAgent(who);
    return { a, id: Number((await a.do('connect', { bus: bus.path })).id) };
  };
  const owner = await connect('owner');
  const first = await connect('first waiter');
  const second = await connect('second waiter');
  await owner.a.do('acquire', { name: 'org.kdbusfs.Q', flags: { queue: true } });
  t.match(await first.a.do('acquire', { name: 'org.kdbusfs.Q', flags: { queue: true } }), { inQueue: true }, 'the first waiter queued');
  t.match(await second.a.do('acquire', { name: 'org.kdbusfs.Q', flags: { queue: true, allowReplacement: true } }), { inQueue: true },
    'the second waiter queued');
  await second.a.do('acquire', { name: 'org.kdbusfs.Alone' });

  const b = (await statsJson()).buses.find((x) => x.name === '0-queues')!;
  t.equal(b.nameWaiters, 2, 'two waiting for names');
  t.same(b.nameQueues, [
    { name: 'org.kdbusfs.Alone', owner: { id: second.id, flags: 0 }, activator: null, waiters: [] },
    { name: 'org.kdbusfs.Q', owner: { id: owner.id, flags: 4 }, activator: null,
      waiters: [{ id: first.id, flags: 4 }, { id: second.id, flags: 6 }] },
  ], '--json: each name with its owner and flags, its waiters in line order with the flags they asked with');

  const text = await cliRun(['stats', dir]);
  t.equal(text.code, 0, 'text: exit 0');
  t.match(text.stdout, new RegExp(`^ {2}org\\.kdbusfs\\.Q +:1\\.${owner.id} +queue +- +:1\\.${first.id}\\(queue\\) ` +
    `:1\\.${second.id}\\(allow-replacement,queue\\)$`, 'm'), 'text: the name\'s row, its queue in order with flags');
  t.match(text.stdout, new RegExp(`^ {2}org\\.kdbusfs\\.Alone +:1\\.${second.id} +- +- +-$`, 'm'), 'text: a name nobody waits for');

  // the owner lets go: the first in line gets the name, the second stays queued
  await owner.a.do('release', { name: 'org.kdbusfs.Q' });
  const after = (await statsJson()).buses.find((x) => x.name === '0-queues')!;
  t.same(after.nameQueues.find((q) => q.name === 'org.kdbusfs.Q'), {
    name: 'org.kdbusfs.Q', owner: { id: first.id, flags: 4 }, activator: null, waiters: [{ id: second.id, flags: 6 }],
  }, 'the owner let go: the first waiter owns the name, the second is next');
});

t.test('--watch refreshes until SIGINT', async (t) => {
  const child = spawn(process.execPath, [cli, 'stats', '--root', dir, '--json', '--watch', '--interval', '0.2'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  t.teardown(() => { child.kill('SIGKILL'); });
  const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.ok(await until(() => out.split('\n').filter(Boolean).length >= 3, 15_000, 50), 'three refreshes');
  child.kill('SIGINT');
  t.equal(await withTimeout(ended, 10_000, 'stats --watch exits'), 0, 'exit 0 on SIGINT');
  const times = out.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ServerStats).time);
  t.ok(times.every((x, i) => i === 0 || x > times[i - 1]!), 'each a new snapshot');
});

t.test('the stats socket: root\'s alone, never held up by its clients', async (t) => {
  const path = statsSocketPath(dir);
  const st = statSync(path);
  t.ok(st.isSocket(), `a socket at ${path}`);
  t.equal(st.mode & 0o777, 0o600, 'mode 0600');
  t.equal(st.uid, 0, 'owned by root');
  t.equal(lstatSync(dirname(path)).mode & 0o777, 0o700, 'in a directory only root enters');

  // clients that connect and never read, or write junk
  const idle: Socket[] = [];
  for (let i = 0; i < 40; i++) {
    const s = connect(path);
    s.on('error', () => undefined);
    s.pause();
    if (i % 2) s.write('junk'.repeat(1000));
    idle.push(s);
  }
  t.teardown(() => { for (const s of idle) s.destroy(); });
  const started = Date.now();
  const s = await statsJson();
  t.ok(s.buses.length >= 0 && Date.now() - started < 10_000, 'stats still answers with 40 idle clients connected');
  const newAgent = agents(t, agent);
  const a = await newAgent('bystander');
  const bus = await a.do('makeBus', { name: '0-bystander', opts: { root: dir } });
  t.ok(bus.path, 'the mount still serves kdbus');

  const refused = await cliRun(['stats', dir], NOBODY);
  t.equal(refused.code, 1, 'as uid 65534: exit 1');
  t.match(refused.stderr, /root's only/, 'saying statistics are root\'s');
});

t.test('usage and failures', async (t) => {
  t.match(await cliRun(['stats', dir, dir]), { code: 2, stderr: /at most one ROOT/ }, 'two roots: usage, exit 2');
  t.match(await cliRun(['stats', dir, '--interval', '1']), { code: 2, stderr: /--interval goes with --watch/ }, '--interval alone: exit 2');
  t.match(await cliRun(['stats', '/nonexistent/kdbus']), { code: 1, stderr: /no kdbusfs server serves statistics for \/nonexistent\/kdbus/ },
    'no server there: exit 1, saying so');
  const help = await cliRun(['stats', '--help']);
  t.match(help, { code: 0, stdout: /^Usage: kdbusfs stats/ }, '--help: exit 0');
  t.match(help.stdout, /\/run\/kdbusfs-stats\//, '--help documents where the socket is');
});

t.test('the socket goes with the server', async (t) => {
  const path = statsSocketPath(dir);
  await stopServer(t, server, dir);
  t.notOk(existsSync(path), 'removed when the server stops');
});
