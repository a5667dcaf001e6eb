// kdbusfs proxy end to end on a real mount: Debian 12's own D-Bus programs
// (busctl 252, dbus-send, dbus-monitor, gdbus, a python3-dbus service and
// client) on a kdbus bus through the proxy, next to the kdbus-native example
// service and a kdbusfs/client connection; credentials of the real client on
// its kdbus connection; SASL refusals, garbage cut off without harm to
// others; the XML policy's refusals with the D-Bus error names.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BusConnection, Connection, makeBus } from '../lib/client/index.js';
import { MessageType, type DBusMessage } from '../lib/client/dbus-message.js';
import { clientNative } from '../lib/client/native.js';
import { ATTACH } from '../lib/abi/kdbus.js';
import { Variant } from '../lib/client/variant.js';
import { decodeDbus1, dbus1MessageSize, encodeDbus1, FIXED_SIZE } from '../lib/proxy/dbus1-marshal.js';
import { unixPeer } from '../lib/proxy/native.js';
import { DEFAULT_LIMITS, ProxyConnection } from '../lib/proxy/proxy-connection.js';
import { serverGuid } from '../lib/proxy/sasl.js';
import { cli, needRootAndFuse, root, spawnServer, statOf, until, withTimeout, type Server, type Tap } from './harness.js';
import { agents, mountFresh, NOBODY, stageClient } from './client/kdbus-harness.js';
import { startEchoService } from './client/echo-service-process.js';

t.setTimeout(180_000);
needRootAndFuse();

const PYTHON = '/usr/bin/python3';
// readable copies of the python scripts: a uid other than root may not reach this checkout
const scripts = mkdtempSync(join(tmpdir(), 'kdbusfs-proxy-scripts-'));
chmodSync(scripts, 0o755);
for (const f of ['py-service.py', 'py-client.py', 'gio-service.py']) copyFileSync(join(root, 'test/proxy', f), join(scripts, f));

interface Out { code: number | null; stdout: string; stderr: string }

/** Runs a program to its end (at most ms), as uid when given. */
function runTool(cmd: string, args: string[], opts: { ms?: number; uid?: number; input?: string } = {}): Promise<Out> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, {
      timeout: opts.ms ?? 20_000, maxBuffer: 16 << 20, cwd: '/',
      ...(opts.uid !== undefined && { uid: opts.uid, gid: opts.uid }),
    }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** A long-running program whose output is collected until it is stopped. */
function startTool(t: Tap, cmd: string, args: string[], uid?: number): { child: ChildProcess; out: () => string } {
  const child = spawn(cmd, args, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], ...(uid !== undefined && { uid, gid: uid }) });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  t.teardown(() => { child.kill('SIGKILL'); });
  return { child, out: () => out };
}

/** `kdbusfs proxy` on busPath, listening at a fresh socket; its D-Bus address. */
async function startProxy(t: Tap, busPath: string, extra: string[] = []): Promise<{ address: string; socket: string; stderr: () => string; server: Server }> {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-proxy-'));
  chmodSync(dir, 0o755);
  const socket = join(dir, 'bus');
  const server = spawnServer(t, process.execPath, [cli, 'proxy', '--bus', busPath, '--listen', socket, ...extra], { dies: 'the proxy dies' });
  if (!await until(async () => server.exited || (await statOf(socket)) !== null, 20_000, 50) || server.exited) {
    throw new Error(`the proxy did not come up: ${server.stderr}`);
  }
  return { address: `unix:path=${socket}`, socket, stderr: () => server.stderr, server };
}

async function startPyService(t: Tap, address: string, name: string): Promise<{ pid: number; unique: string }> {
  const s = startTool(t, PYTHON, [join(scripts, 'py-service.py'), address, name]);
  if (!await until(() => /ready :1\.\d+/.test(s.out()) || s.child.exitCode !== null, 20_000, 50) || s.child.exitCode !== null) {
    throw new Error(`the python service did not come up: ${s.out()}`);
  }
  return { pid: s.child.pid!, unique: /ready (:1\.\d+)/.exec(s.out())![1]! };
}

/** What of Debian's D-Bus programs these tests drive is missing (test/run.sh installs them when it can). */
async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of ['/usr/bin/busctl', '/usr/bin/gdbus', '/usr/bin/dbus-send', '/usr/bin/dbus-monitor', '/usr/bin/systemd-socket-activate', PYTHON]) {
    if ((await statOf(tool)) === null) missing.push(tool);
  }
  const py = await runTool(PYTHON, ['-c', 'import dbus, gi'], { ms: 10_000 });
  if (py.code !== 0) missing.push('python3-dbus/python3-gi');
  return missing;
}

const missing = await missingTools();
if (missing.length) t.plan(0, `Debian's D-Bus programs are missing: ${missing.join(', ')}`);
else await suite();

async function suite(): Promise<void> {
  const { dir } = await mountFresh(t, 'proxy');
  const bus = makeBus('0-proxy', { root: dir, access: 'world' });
  t.teardown(() => bus.close());
  const busPath = join(dir, '0-proxy', 'bus');
  const proxy = await startProxy(t, busPath);
  const A = proxy.address;
  const echo = await startEchoService(t, busPath);
  const py = await startPyService(t, A, 'org.kdbusfs.Py');

  t.test('busctl 252 through the proxy', async (t) => {
    const list = await runTool('busctl', [`--address=${A}`, 'list', '--no-pager']);
    t.equal(list.code, 0, `busctl list: ${list.stderr}`);
    t.match(list.stdout, new RegExp(`org\\.kdbusfs\\.Example\\s+${echo.child.pid}\\s+node\\s+root\\s+${echo.unique.replace('.', '\\.')}`),
      'the kdbus-native service, with its pid');
    t.match(list.stdout, new RegExp(`org\\.kdbusfs\\.Py\\s+${py.pid}\\s+python3\\s+root\\s+${py.unique.replace('.', '\\.')}`),
      'the python3-dbus service behind the proxy, with its own pid (its credentials, not the proxy\'s)');
    const call = await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example', 'Echo', 's', 'hi']);
    t.equal(call.stdout.trim(), 's "hi"', 'call: busctl -> proxy -> kdbus-native service');
    const pyCall = await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Py', '/org/kdbusfs/Py', 'org.kdbusfs.Py', 'Echo',
      'v', '(ydxtnqbgo)', '--', '1', '2.5', '-5', '18446744073709551615', '-3', '65535', 'true', 'a(sv)', '/a/b']);
    t.equal(pyCall.stdout.trim(), 'v (ydxtnqbgo) 1 2.5 -5 18446744073709551615 -3 65535 true "a(sv)" "/a/b"',
      'call: busctl -> proxy -> kdbus -> proxy -> python, every basic type in a variant');
    const prop = await runTool('busctl', [`--address=${A}`, 'get-property', 'org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example', 'Greeting']);
    t.equal(prop.stdout.trim(), 's "hello"', 'get-property');
    const intro = await runTool('busctl', [`--address=${A}`, 'introspect', 'org.kdbusfs.Py', '/org/kdbusfs/Py', '--no-pager']);
    t.match(intro.stdout, /\.Echo\s+method\s+v\s+v/, 'introspect the python service');
    const status = await runTool('busctl', [`--address=${A}`, 'status', 'org.kdbusfs.Py', '--no-pager']);
    t.match(status.stdout, new RegExp(`PID=${py.pid}\\b`), 'status: the python service\'s pid');
    const tree = await runTool('busctl', [`--address=${A}`, 'tree', 'org.kdbusfs.Py', '--no-pager']);
    t.match(tree.stdout, /\/org\/kdbusfs\/Py/, 'tree');
    const unknown = await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Nobody', '/', 'a.b', 'C']);
    t.not(unknown.code, 0, 'a call to a name nobody owns fails');
    t.match(unknown.stderr, /not provided by any/i, 'ServiceUnknown\'s text');
  });

  t.test('dbus-send, gdbus and the monitors', async (t) => {
    const busctlMon = startTool(t, 'busctl', [`--address=${A}`, 'monitor', '--no-pager']);
    const dbusMon = startTool(t, 'dbus-monitor', ['--address', A, "type='signal',interface='org.kdbusfs.T'"]);
    const gdbusMon = startTool(t, 'gdbus', ['monitor', '--address', A, '--dest', 'org.kdbusfs.Py']);
    const capture = startTool(t, 'busctl', [`--address=${A}`, 'capture']);
    // dbus-monitor is a monitor once the driver said NameLost for its unique name (BecomeMonitor)
    await until(() => busctlMon.out().includes('Monitoring') && gdbusMon.out().includes('owned by') && dbusMon.out().includes('NameLost'), 10_000, 50);
    await new Promise(r => setTimeout(r, 500));
    const send = await runTool('dbus-send', [`--bus=${A}`, '--print-reply', '--dest=org.kdbusfs.Example', '/org/kdbusfs/Example',
      'org.kdbusfs.Example.Sum', 'array:int32:1,2,3,2147483647']);
    t.match(send.stdout, /int64 2147483653/, 'dbus-send: Sum(ai) -> x');
    const names = await runTool('dbus-send', [`--bus=${A}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus.ListNames']);
    t.match(names.stdout, /"org\.kdbusfs\.Py"/, 'dbus-send: ListNames');
    const gcall = await runTool('gdbus', ['call', '--address', A, '-d', 'org.kdbusfs.Py', '-o', '/org/kdbusfs/Py', '-m', 'org.kdbusfs.Py.Echo',
      '<@a{sv} {"k": <int64 -1>}>']);
    t.equal(gcall.stdout.trim(), "(<{'k': <int64 -1>}>,)", 'gdbus call');
    const gintro = await runTool('gdbus', ['introspect', '--address', A, '-d', 'org.kdbusfs.Example', '-o', '/org/kdbusfs/Example']);
    t.match(gintro.stdout, /Echo\(in  s \w+,\s+out s \w+\);/, 'gdbus introspect of the kdbus-native service');
    // --session, not --address: gdbus takes an --address for a peer, without Hello, which a bus refuses
    const emit = await runTool('/usr/bin/env', [`DBUS_SESSION_BUS_ADDRESS=${A}`, 'gdbus', 'emit', '--session', '-o', '/x/y', '-s', 'org.kdbusfs.T.Hello', "'from gdbus'"]);
    t.equal(emit.code, 0, `gdbus emit: ${emit.stderr}`);
    await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Py', '/org/kdbusfs/Py', 'org.kdbusfs.Py', 'Shout', 's', 'loud']);
    await until(() => dbusMon.out().includes('from gdbus') && gdbusMon.out().includes("Ping ('loud',)") && busctlMon.out().includes('loud'), 10_000, 50);
    t.match(dbusMon.out(), /member=Hello\n\s+string "from gdbus"/, 'dbus-monitor (BecomeMonitor) sees gdbus\'s signal');
    t.notMatch(dbusMon.out(), /member=Ping/, 'and, by its rule, not the other interface\'s');
    t.match(gdbusMon.out(), /\/org\/kdbusfs\/Py: org\.kdbusfs\.Py\.Ping \('loud',\)/, 'gdbus monitor sees the python service\'s signal');
    t.match(busctlMon.out(), /Member=Shout[\s\S]*STRING "loud"[\s\S]*Member=Ping/, 'busctl monitor sees the call and the signal');
    t.match(busctlMon.out(), /Type=method_return[\s\S]*ReplyCookie=/, 'and the reply');
    t.ok(await until(() => capture.out().includes('Shout'), 5000, 50), 'busctl capture writes the call into its pcapng stream');
    t.ok(capture.out().startsWith('\n\r\r\n'), 'a pcapng stream (section header block)');
  });

  t.test('a python3-dbus client: fds, 1 MiB bodies, every type, name queueing, match rules, errors', async (t) => {
    const r = await runTool(PYTHON, [join(scripts, 'py-client.py'), A], { ms: 60_000 });
    t.equal(r.code, 0, `the client ran: ${r.stderr}`);
    const o = JSON.parse(r.stdout);
    t.equal(o.fd, 'through the proxy', 'a pipe\'s read end through SCM_RIGHTS -> KDBUS_ITEM_FDS -> SCM_RIGHTS');
    t.same(o.size, [1 << 20, 4096 * (255 * 256 / 2)], '1 MiB ay to a dbus1 service');
    t.same(o.bigEcho, [1 << 20, true], '1 MiB string to the kdbus-native service and back (memfds on kdbus)');
    t.same(o.types, Array(13).fill(true), 'every type in a struct in a variant comes back the same');
    const [a, b, c] = o.queue.uniques;
    t.match(o.queue, { first: 1, again: 4, noQueue: 3, queued: 2, replace: 1 },
      'RequestName: PRIMARY_OWNER, ALREADY_OWNER, EXISTS with DO_NOT_QUEUE, IN_QUEUE, PRIMARY_OWNER by REPLACE_EXISTING');
    t.equal(o.queue.owners[0], c, 'ListQueuedOwners: the owner first');
    t.same([...o.queue.owners].sort(), [a, b, c].sort(), 'and the waiting ones (the one replaced too)');
    t.match(o.queue, { releaseOwner: 1, releaseNone: 2, releaseQueued: 1, releaseNotOwner: 3 },
      'ReleaseName: RELEASED, NON_EXISTENT, RELEASED from the queue, NOT_OWNER');
    t.equal(o.queue.ownerAfter, b, 'the next in line owns the name');
    t.same(o.queue.acquired, ['org.kdbusfs.Queue'], 'and got NameAcquired');
    t.same(o.signals, [['/a/b', 'hit'], ['/c', 'hit'], ['/a', 'miss'], ['/org/kdbusfs/Example', 'native']],
      'arg0 and path_namespace rules let through exactly their signals, from a dbus1 client and from the kdbus-native service');
    t.same(o.errors, {
      unknownName: 'org.freedesktop.DBus.Error.ServiceUnknown',
      noOwner: 'org.freedesktop.DBus.Error.NameHasNoOwner',
      badMatch: 'org.freedesktop.DBus.Error.MatchRuleInvalid',
      noMatch: 'org.freedesktop.DBus.Error.MatchRuleNotFound',
      activationEnv: 'org.freedesktop.DBus.Error.NotSupported',
      unknownMethod: 'org.freedesktop.DBus.Error.UnknownMethod',
      reserved: 'org.freedesktop.DBus.Error.InvalidArgs',
    }, 'the D-Bus error names clients expect');
    t.equal(o.uid, 0);
    t.equal(o.pid, o.mypid, 'GetConnectionUnixProcessID: the client\'s own pid');
  });

  t.test('a kdbus-native client calls the python service and gets its signal', async (t) => {
    const conn = await BusConnection.connect(busPath, { description: 'proxy-test' });
    t.teardown(() => conn.close());
    const got: unknown[] = [];
    conn.addMatch("type='signal',interface='org.kdbusfs.Py',member='Ping'", m => got.push(m.body[0]));
    const r = await conn.call({ destination: 'org.kdbusfs.Py', path: '/org/kdbusfs/Py', interface: 'org.kdbusfs.Py', member: 'Echo',
      signature: 'v', body: [new Variant('a{st}', new Map([['big', 2n ** 64n - 1n]]))] });
    t.same((r.body[0] as Variant).value, new Map([['big', 2n ** 64n - 1n]]), 'kdbus -> proxy -> python -> proxy -> kdbus');
    t.equal(r.sender, py.unique, 'the reply comes from the python service\'s connection');
    await conn.call({ destination: 'org.kdbusfs.Py', path: '/org/kdbusfs/Py', interface: 'org.kdbusfs.Py', member: 'Shout', signature: 's', body: ['hey'] });
    t.ok(await until(() => got.length > 0, 5000, 20), 'the signal arrives');
    t.same(got, ['hey']);
  });

  t.test('a GLib service, sd-bus 252 and busctl of 2015 on the same bus', async (t) => {
    const gio = startTool(t, PYTHON, [join(scripts, 'gio-service.py'), A]);
    t.ok(await until(() => /ready :1\.\d+/.test(gio.out()), 20_000, 50), `the GDBus service owns org.kdbusfs.Gio: ${gio.out()}`);
    const g = await runTool('gdbus', ['call', '--address', A, '-d', 'org.kdbusfs.Gio', '-o', '/org/kdbusfs/Gio', '-m', 'org.kdbusfs.Gio.Greet', 'you']);
    t.equal(g.stdout.trim(), "('hello you',)", 'gdbus -> proxy -> GDBus service');
    const conn = await BusConnection.connect(busPath, { description: 'proxy-test-gio' });
    t.teardown(() => conn.close());
    const greeted: unknown[] = [];
    conn.addMatch("type='signal',sender='org.kdbusfs.Gio',member='Greeted'", m => greeted.push(m.body[0]));
    const r = await conn.call({ destination: 'org.kdbusfs.Gio', path: '/org/kdbusfs/Gio', interface: 'org.kdbusfs.Gio', member: 'Greet',
      signature: 's', body: ['kdbus'] });
    t.same(r.body, ['hello kdbus'], 'a kdbus-native call to the GDBus service');
    t.ok(await until(() => greeted.includes('kdbus'), 5000, 20), 'its signal reaches a kdbus-native match on its well-known name');

    const busctl2015 = join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'), 'kdbusfs/sd-bus-2015/src/busctl');
    if ((await statOf(busctl2015)) === null) {
      t.pass('busctl of 2015 calls the python service', { skip: 'busctl of 2015 is not built (test/client/dbus-sdbus-interop.test.ts builds it into the cache)' });
    } else {
      const old = await runTool(busctl2015, [`--address=kernel:path=${busPath}`, 'call', 'org.kdbusfs.Py', '/org/kdbusfs/Py', 'org.kdbusfs.Py',
        'Echo', 'v', 's', 'from 2015']);
      t.equal(old.stdout.trim(), 'v s "from 2015"', 'busctl of 2015, kdbus-native, calls the python3-dbus service behind the proxy');
    }

    if ((await statOf('/usr/include/systemd/sd-bus.h')) === null) {
      t.pass('sd-bus 252 programs through the proxy', { skip: 'libsystemd-dev is not installed: no sd-bus 252 program to build (bench/proxy-bench.sh installs it)' });
    } else {
      const bin = join(scripts, 'sdbus-bench');
      const cc = await runTool('gcc', ['-O1', '-o', bin, join(root, 'bench/sdbus-bench.c'), '-lsystemd'], { ms: 60_000 });
      t.equal(cc.code, 0, `built: ${cc.stderr}`);
      const b = await runTool(bin, [A, 'call', '4096', '0.3', '1'], { ms: 30_000 });
      t.match(b.stdout.trim(), /^\d+(\.\d+)?$/, `two sd-bus 252 programs call each other through the proxy (${b.stdout.trim()} us per call) ${b.stderr}`);
    }
  });

  t.test('activation: ListActivatableNames, NO_AUTO_START, StartServiceByName waking the activator', async (t) => {
    const activator = Connection.open(busPath, { kind: 'activator', name: 'org.kdbusfs.Lazy', autoReceive: false });
    t.teardown(() => activator.close());
    const names = await runTool('busctl', [`--address=${A}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
      'ListActivatableNames']);
    t.match(names.stdout, /"org\.kdbusfs\.Lazy"/, 'ListActivatableNames has the activator\'s name');
    const listed = await runTool('busctl', [`--address=${A}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'ListNames']);
    t.notMatch(listed.stdout, /org\.kdbusfs\.Lazy/, 'ListNames does not (nobody owns it yet)');
    const has = await runTool('busctl', [`--address=${A}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
      'NameHasOwner', 's', 'org.kdbusfs.Lazy']);
    t.equal(has.stdout.trim(), 'b false', 'NameHasOwner is false for an activatable name');
    const noStart = await runTool('busctl', [`--address=${A}`, '--auto-start=no', 'call', 'org.kdbusfs.Lazy', '/', 'org.kdbusfs.Lazy', 'Work']);
    t.not(noStart.code, 0, 'a NO_AUTO_START call to an activatable name fails');
    t.equal(activator.recv(), null, 'and nothing reached the activator');
    const start = await runTool('busctl', [`--address=${A}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
      'StartServiceByName', 'su', 'org.kdbusfs.Lazy', '0']);
    t.equal(start.stdout.trim(), 'u 1', 'StartServiceByName: START_REPLY_SUCCESS');
    const woke = activator.recv();
    t.ok(woke, 'the activator has a message queued (what wakes its service manager)');
    const running = await runTool('busctl', [`--address=${A}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
      'StartServiceByName', 'su', 'org.kdbusfs.Py', '0']);
    t.equal(running.stdout.trim(), 'u 2', 'StartServiceByName of a running service: START_REPLY_ALREADY_RUNNING');
  });

  t.test('an abstract socket address', async (t) => {
    const name = `kdbusfs-proxy-test-${process.pid}`;
    spawnServer(t, process.execPath, [cli, 'proxy', '--bus', busPath, '--listen', `unix:abstract=${name}`], { dies: 'the proxy dies' });
    let r: Out = { code: -1, stdout: '', stderr: '' };
    t.ok(await until(async () => {
      r = await runTool('busctl', [`--address=unix:abstract=${name}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example',
        'org.kdbusfs.Example', 'Echo', 's', 'abstract']);
      return r.code === 0;
    }, 20_000, 200), `the proxy serves unix:abstract=${name}`);
    t.equal(r.stdout.trim(), 's "abstract"');
  });

  t.test('socket activation: the proxy serves the socket systemd passes (LISTEN_FDS)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-proxy-activated-'));
    chmodSync(dir, 0o755);
    const socket = join(dir, 'bus');
    spawnServer(t, '/usr/bin/systemd-socket-activate', ['-l', socket, process.execPath, cli, 'proxy', '--bus', busPath],
      { dies: 'systemd-socket-activate dies' });
    t.ok(await until(async () => (await statOf(socket)) !== null, 10_000, 50), 'the socket is there');
    const r = await runTool('busctl', [`--address=unix:path=${socket}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example',
      'org.kdbusfs.Example', 'Echo', 's', 'activated'], { ms: 30_000 });
    t.equal(r.stdout.trim(), 's "activated"', `a call through the activated proxy ${r.stderr}`);
  });

  t.test('a service that exits without replying: the caller gets NoReply at once', async (t) => {
    await startPyService(t, A, 'org.kdbusfs.Vanishing');
    const t0 = Date.now();
    const r = await runTool('dbus-send', [`--bus=${A}`, '--print-reply', '--dest=org.kdbusfs.Vanishing', '/org/kdbusfs/Py', 'org.kdbusfs.Py.Vanish']);
    t.match(r.stderr, /^Error org\.freedesktop\.DBus\.Error\.NoReply/m, 'kdbus\'s REPLY_DEAD becomes NoReply');
    t.ok(Date.now() - t0 < 10_000, `not after a timeout (${Date.now() - t0} ms)`);
  });

  t.test('a client under another uid carries its own credentials', async (t) => {
    const mon = startTool(t, 'gdbus', ['monitor', '--address', A, '--dest', 'org.kdbusfs.Nobody'], NOBODY);
    t.ok(await until(() => mon.out().includes('org.kdbusfs.Nobody'), 10_000, 50), `gdbus runs as uid ${NOBODY}: ${mon.out()}`);
    const list = await runTool('busctl', [`--address=${A}`, 'list', '--no-pager']);
    t.match(list.stdout, new RegExp(`:1\\.\\d+\\s+${mon.child.pid}\\s+gdbus\\s+nobody\\b`), 'busctl list: its pid and user nobody');
    const own = await runTool('dbus-send', [`--bus=${A}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus.RequestName', 'string:org.kdbusfs.Mine', 'uint32:0'], { uid: NOBODY });
    t.match(own.stdout, /uint32 1/, 'uid 65534 owns a name of its own on the bus');
  });

  t.test('SASL refusals, garbage and the proxy going on', async (t) => {
    const talk = (lines: Buffer): Promise<{ reply: string; closed: boolean }> => new Promise((resolve) => {
      const s = net.createConnection(proxy.socket);
      let reply = '';
      let closed = false;
      s.on('data', (d) => { reply += d.toString('latin1'); });
      s.on('close', () => { closed = true; resolve({ reply, closed }); });
      s.on('error', () => undefined);
      s.write(lines);
      setTimeout(() => { s.destroy(); resolve({ reply, closed }); }, 1500);
    });
    const anon = await talk(Buffer.from('\0AUTH ANONYMOUS\r\n'));
    t.equal(anon.reply, 'REJECTED EXTERNAL\r\n', 'ANONYMOUS is rejected, EXTERNAL offered');
    const other = await talk(Buffer.from('\0AUTH EXTERNAL 31303030\r\n'));
    t.equal(other.reply, 'REJECTED EXTERNAL\r\n', 'EXTERNAL naming another uid than the socket\'s is rejected');
    const garbage = await talk(Buffer.concat([Buffer.from('\0AUTH EXTERNAL 30\r\nBEGIN\r\n'), Buffer.alloc(64, 0xff)]));
    t.match(garbage.reply, /^OK [0-9a-f]{32}\r\n$/, 'authenticated');
    t.equal(garbage.closed, true, 'then garbage: the proxy closes the connection');
    const still = await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example', 'Echo', 's', 'still']);
    t.equal(still.stdout.trim(), 's "still"', 'other clients go on');
  });

  t.test('a client that stops reading and a crowd that never authenticates do not hold others up', async (t) => {
    // a dbus1 client subscribed to a flood of signals, which never reads
    const stuck = net.createConnection(proxy.socket);
    stuck.on('error', () => undefined);
    t.teardown(() => { stuck.destroy(); });
    const hello = Buffer.from('6c01000100000000010000006e00000001016f00150000002f6f72672f667265656465736b746f702f4442757300000006017300'
      + '140000006f72672e667265656465736b746f702e444275730000000002017300140000006f72672e667265656465736b746f702e4442757300'
      + '000000030173000500000048656c6c6f000000', 'hex');
    stuck.write(Buffer.concat([Buffer.from('\0AUTH EXTERNAL 30\r\nBEGIN\r\n'), hello]));
    stuck.pause();
    const flooder = await BusConnection.connect(busPath, { description: 'proxy-flood' });
    t.teardown(() => flooder.close());
    // its match rule, sent right after Hello
    const addMatch = Buffer.from(busctlAddMatch("type='signal',interface='org.kdbusfs.Flood'"));
    stuck.write(addMatch);
    await new Promise(r => setTimeout(r, 300));
    const payload = 'x'.repeat(16 * 1024);
    const started = Date.now();
    for (let i = 0; i < 2000; i++) {
      flooder.emitSignal({ path: '/flood', interface: 'org.kdbusfs.Flood', member: 'Drop', signature: 's', body: [payload] });
      if (i % 200 === 0) await new Promise(r => setImmediate(r));
    }
    t.pass(`32 MiB of signals sent in ${Date.now() - started} ms, the stuck reader notwithstanding`);
    const t0 = Date.now();
    const call = await runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example', 'Echo', 's', 'alive']);
    t.equal(call.stdout.trim(), 's "alive"', 'another client\'s call goes through');
    t.ok(Date.now() - t0 < 10_000, `and in time (${Date.now() - t0} ms)`);

    // more unauthenticated connections than the proxy lets wait (64): the rest are closed at once
    const crowd: net.Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 100; i++) {
      const s = net.createConnection(proxy.socket);
      s.on('error', () => undefined);
      s.on('close', () => { closed++; });
      crowd.push(s);
    }
    t.teardown(() => { for (const s of crowd) s.destroy(); });
    t.ok(await until(() => closed >= 36, 10_000, 50), `connections past the limit are refused (${closed} of 100 closed)`);
    const echoCall = (): Promise<Out> => runTool('busctl', [`--address=${A}`, 'call', 'org.kdbusfs.Example', '/org/kdbusfs/Example',
      'org.kdbusfs.Example', 'Echo', 's', 'crowd']);
    const during = await echoCall();
    t.not(during.code, 0, 'while 64 wait unauthenticated, a new client is refused too (dbus-daemon\'s max_incomplete_connections)');
    for (const s of crowd) s.destroy();
    await new Promise(r => setTimeout(r, 300));
    const after = await echoCall();
    t.equal(after.stdout.trim(), 's "crowd"', 'once they go, clients get through again');
  });

  /** An XML policy file with this text, in a new directory; its path. */
  function policyFile(tag: string, xml: string): string {
    const file = join(mkdtempSync(join(tmpdir(), `kdbusfs-proxy-${tag}-`)), 'policy.conf');
    writeFileSync(file, xml);
    return file;
  }

  /** A dbus1 AddMatch call (serial 2) to org.freedesktop.DBus, as libdbus lays it out. */
  function busctlAddMatch(rule: string): Buffer {
    return encodeDbus1({
      type: MessageType.METHOD_CALL, flags: 0, cookie: 2, path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
      member: 'AddMatch', destination: 'org.freedesktop.DBus', signature: 's', body: [rule],
    });
  }

  t.test('XML policy: own and send refused with AccessDenied', async (t) => {
    const file = policyFile('policy', `<busconfig>
    <policy context="default">
      <allow own="*"/>
      <allow send_destination="*"/>
      <deny own="org.kdbusfs.Denied"/>
      <deny send_destination="org.kdbusfs.Py" send_member="Shout"/>
    </policy>
  </busconfig>
  `);
    const p = await startProxy(t, busPath, ['--policy', file]);
    const own = await runTool('dbus-send', [`--bus=${p.address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus.RequestName', 'string:org.kdbusfs.Denied', 'uint32:0']);
    t.match(own.stderr, /^Error org\.freedesktop\.DBus\.Error\.AccessDenied/m, 'RequestName of a denied name: AccessDenied');
    const shout = await runTool('dbus-send', [`--bus=${p.address}`, '--print-reply', '--dest=org.kdbusfs.Py', '/org/kdbusfs/Py',
      'org.kdbusfs.Py.Shout', 'string:x']);
    t.match(shout.stderr, /^Error org\.freedesktop\.DBus\.Error\.AccessDenied/m, 'a denied member: AccessDenied');
    const echoCall = await runTool('dbus-send', [`--bus=${p.address}`, '--print-reply', '--dest=org.kdbusfs.Py', '/org/kdbusfs/Py',
      'org.kdbusfs.Py.Echo', 'variant:string:ok']);
    t.match(echoCall.stdout, /string "ok"/, 'an allowed call goes through');
  });

  t.test('XML policy: user/group connection rules decide who connects, as dbus-daemon', async (t) => {
    // Debian's own users: daemon 1, bin 2, sys 3, games 5 (group games 60), uucp 10, nobody 65534; the bus is root's
    const file = policyFile('connect', `<busconfig>
    <policy context="mandatory">
      <deny user="sys"/>
    </policy>
    <policy context="default">
      <allow user="nobody"/>
      <allow user="1"/>
      <allow group="bin"/>
      <allow user="games"/>
      <deny group="60"/>
      <allow user="sys"/>
      <allow own="*"/>
      <allow send_destination="*"/>
    </policy>
  </busconfig>
  `);
    const p = await startProxy(t, busPath, ['--policy', file]);
    const hello = async (uid: number): Promise<string> => (await runTool(PYTHON, ['-c', `
import dbus, sys
try:
    print('ok', dbus.bus.BusConnection(sys.argv[1]).get_unique_name())
except dbus.DBusException as e:
    print('refused', e.get_dbus_name())
`, p.address], { uid })).stdout.trim();
    t.match(await hello(65534), /^ok :1\.\d+$/, 'allowed by user name (nobody)');
    t.match(await hello(1), /^ok :1\.\d+$/, 'allowed by uid (1, daemon)');
    t.match(await hello(2), /^ok :1\.\d+$/, 'allowed by group (bin, the primary group of uid 2)');
    t.match(await hello(0), /^ok :1\.\d+$/, 'the bus\'s owner (root: the bus is 0-proxy), named by no rule');
    t.match(await hello(5), /^refused /, 'denied by a deny after an allow (games: allowed by name, then its group denied)');
    t.match(await hello(3), /^refused /, 'mandatory overrides default (sys: allowed in default, denied in mandatory, which comes first in the file)');
    t.match(await hello(10), /^refused /, 'a user no rule names (uucp): only the bus\'s owner may connect by default');

    const allowedSend = await runTool('dbus-send', [`--bus=${p.address}`, '--print-reply', '--dest=org.kdbusfs.Py', '/org/kdbusfs/Py',
      'org.kdbusfs.Py.Echo', 'variant:string:ok'], { uid: 65534 });
    t.match(allowedSend.stdout, /string "ok"/, `dbus-send as an allowed user works (${allowedSend.stderr})`);
    const refusedSend = await runTool('dbus-send', [`--bus=${p.address}`, '--print-reply', '--dest=org.kdbusfs.Py', '/org/kdbusfs/Py',
      'org.kdbusfs.Py.Echo', 'variant:string:ok'], { uid: 3 });
    t.not(refusedSend.code, 0, 'dbus-send as a refused user fails');
    t.match(refusedSend.stderr, /^Failed to (open|register on) connection/m, `before any call, at connecting (${refusedSend.stderr.trim()})`);

    // on the wire, as dbus-daemon: OK to SASL EXTERNAL, then the proxy hangs up after BEGIN; no kdbus connection is made
    const before = /^ok :1\.(\d+)$/.exec(await hello(1));
    const raw = await runTool(PYTHON, ['-c', `
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
s.sendall(b'\\0AUTH EXTERNAL ' + str(os.getuid()).encode().hex().encode() + b'\\r\\n')
print(repr(s.recv(4096)[:3]))
s.sendall(b'BEGIN\\r\\n')
print(repr(s.recv(4096)))
`, p.socket], { uid: 3 });
    t.equal(raw.stdout, "b'OK '\nb''\n", `the refused client saw OK, then the end of the stream after BEGIN (${raw.stderr})`);
    const after = /^ok :1\.(\d+)$/.exec(await hello(1));
    t.ok(before && after, 'allowed clients before and after');
    t.equal(Number(after![1]), Number(before![1]) + 1, 'the next kdbus connection id went to the next allowed client: the refused one had none');
    await until(() => /refused: uid 3 may not connect/.test(p.stderr()), 5000, 50);
    t.match(p.stderr(), /kdbusfs proxy: client pid \d+ refused: uid 3 may not connect/, 'the proxy logs the refusal');
    t.notMatch(p.stderr(), /uid (65534|1|2|0) may not connect/, 'and nothing about the allowed ones');
  });

  t.test('the XML policy held as kdbus policy: kdbus-native clients meet the same own and talk rules', async (t) => {
    const file = policyFile('kpolicy', `<busconfig>
    <policy context="default">
      <allow own="org.kdbusfs.NativeOwn"/>
      <allow send_destination="org.kdbusfs.NativeTalk"/>
      <allow send_destination="org.kdbusfs.NativeNarrow" send_member="Only"/>
    </policy>
  </busconfig>
  `);
    const { agent } = stageClient();
    const newAgent = agents(t, agent);
    const talkTo = await Connection.open(busPath, { names: ['org.kdbusfs.NativeTalk'] });
    const narrow = await Connection.open(busPath, { names: ['org.kdbusfs.NativeNarrow'] });
    t.teardown(() => { talkTo.close(); narrow.close(); });
    const nobody = await newAgent('nobody', NOBODY);
    await nobody.do('connect', { bus: busPath });
    const before = await nobody.req('acquire', { name: 'org.kdbusfs.NativeOwn' });
    t.equal(before.code, 'EPERM', 'before the proxy: uid 65534 may not own the name (kdbus denies by default)');

    const p = await startProxy(t, busPath, ['--policy', file]);
    t.equal(p.stderr(), '', 'kdbus took every entry');
    t.ok((await nobody.req('acquire', { name: 'org.kdbusfs.NativeOwn' })).ok, 'with it: the allowed own is kdbus policy (OWN for the world)');
    t.equal((await nobody.req('acquire', { name: 'org.kdbusfs.NativeOther' })).code, 'EPERM', 'another name stays denied');
    t.ok((await nobody.req('send', { opts: { name: 'org.kdbusfs.NativeTalk', payload: 'hi' } })).ok,
      'send_destination: TALK for the world, a native uid 65534 client reaches root\'s service');
    t.equal((await nobody.req('send', { opts: { name: 'org.kdbusfs.NativeNarrow', payload: 'hi' } })).code, 'EPERM',
      'a rule narrowed to one member stays the proxy\'s (kdbus TALK is all or nothing)');
    await nobody.do('release', { name: 'org.kdbusfs.NativeOwn' });

    p.server.child.kill('SIGTERM');
    await withTimeout(p.server.ended, 10_000, 'the proxy stops');
    t.equal((await nobody.req('acquire', { name: 'org.kdbusfs.NativeOwn' })).code, 'EPERM', 'the proxy gone, its policy is gone with it');
  });

  /** A raw dbus1 client on a socket: SASL, then messages, each reply read whole. */
  function rawClient(sock: net.Socket): { call(m: DBusMessage): Promise<DBusMessage> } {
    let buf = Buffer.alloc(0);
    let serial = 1;
    const waiting = new Map<number, (m: DBusMessage) => void>();
    let authed = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!authed) {
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        authed = true;
        buf = buf.subarray(nl + 2);
      }
      while (buf.length >= FIXED_SIZE && buf.length >= dbus1MessageSize(buf)) {
        const size = dbus1MessageSize(buf);
        const m = decodeDbus1(buf.subarray(0, size));
        buf = buf.subarray(size);
        if (m.replyCookie !== undefined) waiting.get(m.replyCookie)?.(m);
      }
    });
    sock.write(`\0AUTH EXTERNAL ${Buffer.from(String(process.getuid!())).toString('hex')}\r\nBEGIN\r\n`);
    return {
      call: (m) => new Promise((resolve) => {
        m.cookie = serial++;
        waiting.set(m.cookie, resolve);
        sock.write(encodeDbus1(m));
      }),
    };
  }

  const driverCall = (member: string, signature = '', body: DBusMessage['body'] = []): DBusMessage => ({
    type: MessageType.METHOD_CALL, flags: 0, cookie: 0, path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member, destination: 'org.freedesktop.DBus', signature, body,
  });

  t.test('SO_PEERSEC: the client\'s label is its kdbus SECLABEL; none (no LSM) is SELinuxSecurityContextUnknown', async (t) => {
    // a label as SO_PEERSEC gives one under an LSM, handed to a ProxyConnection of this process
    const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-proxy-label-'));
    const lfd = unixPeer.listen(join(dir, 's'), 4);
    t.ok(lfd >= 0, 'a listening socket');
    const sock = net.createConnection(join(dir, 's'));
    t.teardown(() => { sock.destroy(); clientNative.close(lfd); });
    let accepted = -11 as ReturnType<typeof unixPeer.accept>;
    await until(() => typeof (accepted = unixPeer.accept(lfd)) !== 'number', 5000, 10);
    t.type(accepted, Array, 'accepted');
    if (typeof accepted === 'number') return;
    const [fd, pid, uid, gid, label] = accepted;
    const lsm = existsSync('/sys/kernel/security/lsm') && readFileSync('/sys/kernel/security/lsm', 'utf8').trim() !== '';
    if (!lsm) t.equal(label, '', 'no LSM on this machine: SO_PEERSEC gives no label');
    const probe = Connection.open(busPath);
    const guid = serverGuid(probe.busId);
    probe.close();
    const pc = new ProxyConnection(fd, { pid, uid, gid, label: 'system_u:system_r:kdbusfs_test_t:s0' }, {
      bus: busPath, guid, limits: DEFAULT_LIMITS, policy: null, busOwner: 0,
    });
    t.teardown(() => pc.close('test ends'));
    const c = rawClient(sock);
    const hello = await c.call(driverCall('Hello'));
    const me = hello.body[0] as string;
    const ctx = await c.call(driverCall('GetConnectionSELinuxSecurityContext', 's', [me]));
    t.same(ctx.body[0], Buffer.from('system_u:system_r:kdbusfs_test_t:s0\0'), 'GetConnectionSELinuxSecurityContext: the label, NUL-terminated');
    const creds = await c.call(driverCall('GetConnectionCredentials', 's', [me]));
    t.same((creds.body[0] as Map<string, Variant>).get('LinuxSecurityLabel')?.value, Buffer.from('system_u:system_r:kdbusfs_test_t:s0\0'),
      'GetConnectionCredentials: LinuxSecurityLabel');
    const native = Connection.open(busPath);
    t.teardown(() => native.close());
    t.equal(native.connInfo(BigInt(me.slice(3)), ATTACH.SECLABEL).metadata.seclabel, 'system_u:system_r:kdbusfs_test_t:s0',
      'a kdbus-native peer sees it in CONN_INFO');

    // a real client through the proxy, its socket's label as the kernel says
    const py = await runTool(PYTHON, ['-c', `
import dbus
b = dbus.bus.BusConnection('${A}')
try:
    print('label', bytes(b.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
          'GetConnectionSELinuxSecurityContext', 's', (b.get_unique_name(),))).rstrip(b'\\0').decode())
except dbus.DBusException as e:
    print('error', e.get_dbus_name())
`]);
    if (lsm) t.match(py.stdout, /^(label \S+|error org\.freedesktop\.DBus\.Error\.SELinuxSecurityContextUnknown)$/m, `with an LSM: ${py.stdout}${py.stderr}`);
    else t.equal(py.stdout.trim(), 'error org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown', `no label: dbus-daemon's error (${py.stderr})`);
  });

  t.test('a SEND\'s message outlives a collection during the ioctl (the EINVAL of bench/proxy-bench.sh)', async (t) => {
    // the proxy sends for its clients with Connection.send; optimized, it dropped the message
    // Buffer after taking its address, and a collection before the server read it freed it
    const r = await runTool(process.execPath, ['--expose-gc', '--allow-natives-syntax', join(root, 'test/proxy/gc-send.mjs'),
      join(root, 'dist'), busPath], { ms: 60_000 });
    t.equal(r.stdout.trim(), '{}', `40 SENDs of an optimized send, a full collection before each (about half failed before): no error (${r.stderr})`);
  });
}
