// `kdbusfs monitor` end to end on a real mount: a scripted exchange (the
// example service, a Node client calling it, a raw kdbus message) seen
// exactly once, as text (busctl monitor's format) and as pcap (link type
// 231, one record per D-Bus message, read back by lib/commands/pcap.ts and by
// tshark), the same records, byte for byte, as busctl capture of 2015 wrote
// for the same traffic; match rules; the refusal of an unprivileged monitor;
// usage errors.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, closeSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { decodeMessage, MESSAGE_TYPE_NAMES, type DBusMessage } from '../lib/client/dbus-message.js';
import { readPcap } from '../lib/commands/pcap.js';
import { nodeForOtherUid } from './helpers.js';
import { cli, needRootAndFuse, root, run, until, withTimeout, type Exit, type Tap } from './harness.js';
import { agents, mountFresh, NOBODY, stageClient } from './client/kdbus-harness.js';
import { startEchoService } from './client/echo-service-process.js';

t.setTimeout(120_000);
needRootAndFuse();

interface Proc { child: ChildProcess; out(): string; err(): string; ended: Promise<Exit> }

/** A process whose stdout (unless redirected to a file) and stderr are collected, killed when t ends. */
function start(t: Tap, argv: string[], o: { stdoutFd?: number; uid?: number } = {}): Proc {
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', o.stdoutFd ?? 'pipe', 'pipe'], ...(o.uid !== undefined && { uid: o.uid, gid: o.uid, cwd: '/' }),
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ended = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return { child, out: () => out, err: () => err, ended };
}

/** Started, and said it watches. */
async function monitoring(p: Proc, what: string): Promise<void> {
  if (!await until(() => /Monitoring bus message stream/.test(p.err()) || p.child.exitCode !== null, 20_000, 50)
      || p.child.exitCode !== null) {
    throw new Error(`${what} did not start: ${p.err()}`);
  }
}

/** SIGINT; its exit. */
async function interrupt(p: Proc, what: string): Promise<Exit> {
  p.child.kill('SIGINT');
  return withTimeout(p.ended, 10_000, `${what} exits on SIGINT`);
}

/** busctl of sd-bus 2015, built once into the cache (null, with the reason, when there is no sd-bus tree). */
async function busctl2015(): Promise<string | { skip: string }> {
  const shared = join(root, '../shared/sd-bus-2015');
  if (!existsSync(join(shared, 'build.sh'))) return { skip: `the sd-bus 2015 tree is missing (${shared})` };
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kdbusfs');
  const build = join(cache, 'sd-bus-2015');
  mkdirSync(cache, { recursive: true });
  await run('bash', [join(shared, 'build.sh'), build], { timeout: 1_400_000, maxBuffer: 64 << 20 });
  return join(build, 'src/busctl');
}

/** Type, member and first string argument: what identifies a message of the exchange. */
function summary(m: Pick<DBusMessage, 'type' | 'member' | 'body'>): string {
  const first = m.body.find((v) => typeof v === 'string');
  return `${MESSAGE_TYPE_NAMES[m.type]} ${m.member ?? '-'} ${first ?? '-'}`;
}

/** The same of a block of the text output (a raw kdbus message: 'kdbus'). */
function textSummary(block: string): string {
  const type = /Type=(\w+)/.exec(block)![1]!;
  if (type === 'kdbus' || type === 'kernel') return type;
  const member = /Member=(\S+)/.exec(block)?.[1] ?? '-';
  const first = /^\s+STRING "(.*)";$/m.exec(block)?.[1] ?? '-';
  return `${type} ${member} ${first}`;
}

const blocks = (text: string): string[] => text.split('\n\n').filter((b) => b.startsWith('\u2023'));

const CALLER = `
import { BusConnection } from ${JSON.stringify(join(root, 'dist/lib/client/index.js'))};
const bus = await BusConnection.connect(process.argv[1], { description: 'monitor-test-caller' });
const example = bus.proxy('org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example');
await example.call('Echo', 's', 'one');
await example.call('Echo', 's', 'two');
await example.call('Sum', 'ai', [1, 2, 3]);
process.stdout.write(bus.uniqueName + '\\n');
bus.close();`;

// one mount and one readable copy of the client for every test here
const { dir } = await mountFresh(t, 'monitor');
const { dir: staged, agent } = stageClient();

t.test('monitor, --pcap and busctl capture of one scripted exchange', async (t) => {
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-mon', opts: { root: dir, access: 'world' } });
  const work = mkdtempSync(join(tmpdir(), 'kdbusfs-monitor-'));

  const text = start(t, [process.execPath, cli, 'monitor', '0-mon', '--root', dir]);
  const json = start(t, [process.execPath, cli, 'monitor', bus.path, '--json']);
  const ours = join(work, 'kdbusfs.pcap');
  const capture = start(t, [process.execPath, cli, 'monitor', bus.path, '--pcap', ours]);
  const busctl = await busctl2015();
  let theirs: string | null = null;
  let reference: Proc | null = null;
  if (typeof busctl === 'string') {
    theirs = join(work, 'busctl.pcap');
    const fd = openSync(theirs, 'w');
    reference = start(t, [busctl, `--address=kernel:path=${bus.path}`, 'capture'], { stdoutFd: fd });
    closeSync(fd);
    await monitoring(reference, 'busctl capture');
  }
  await monitoring(text, 'kdbusfs monitor');
  await monitoring(json, 'kdbusfs monitor --json');
  await monitoring(capture, 'kdbusfs monitor --pcap');

  // the exchange, one step after the other
  const service = await startEchoService(t, bus.path);
  const caller = await run(process.execPath, ['--input-type=module', '-e', CALLER, bus.path], { timeout: 30_000 });
  const callerName = caller.stdout.trim();
  const raw = await newAgent('raw');
  const rawId = (await raw.do('connect', { bus: bus.path })).id;
  await raw.do('send', { opts: { dst: Number(service.unique.slice(3)), payload: 'hello, not D-Bus' } });
  await raw.do('close');

  const expected = [
    `signal NameOwnerChanged ${service.unique}`,
    'signal NameOwnerChanged org.kdbusfs.Example',
    `signal NameOwnerChanged ${callerName}`,
    'method_call Echo one', 'signal Echoed one', 'signal PropertiesChanged org.kdbusfs.Example', 'method_return - one',
    'method_call Echo two', 'signal Echoed two', 'signal PropertiesChanged org.kdbusfs.Example', 'method_return - two',
    'method_call Sum -', 'method_return - -',
    `signal NameOwnerChanged ${callerName}`,
    `signal NameOwnerChanged :1.${rawId}`,
    'kdbus',
    `signal NameOwnerChanged :1.${rawId}`,
  ];
  await until(() => blocks(text.out()).length >= expected.length, 15_000, 50);
  // anything more would have come by now
  await new Promise((r) => setTimeout(r, 300));
  t.same(await interrupt(text, 'monitor'), { code: 0, signal: null }, 'monitor exits 0 on SIGINT');
  t.same(await interrupt(json, 'monitor --json'), { code: 0, signal: null }, 'monitor --json exits 0 on SIGINT');
  t.same(await interrupt(capture, 'monitor --pcap'), { code: 0, signal: null }, 'monitor --pcap exits 0 on SIGINT');

  t.test('text: every message exactly once, as busctl monitor prints it', async (t) => {
    const shown = blocks(text.out());
    t.same(shown.map(textSummary), expected, 'the exchange in order, each message once, nothing else');
    const call = shown[3]!;
    t.match(call, /^\u2023 Type=method_call {2}Endian=l {2}Flags=0 {2}Version=2 {2}Priority=0 Cookie=1\n/, 'the header line');
    t.match(call, new RegExp(`^ {2}Sender=${callerName} {2}Destination=org\\.kdbusfs\\.Example {2}Path=/org/kdbusfs/Example`
      + ' {2}Interface=org\\.kdbusfs\\.Example {2}Member=Echo$', 'm'), 'the addresses line');
    t.match(call, /^ {2}Monotonic=\d+ {2}Realtime=\d+ {2}SequenceNumber=\d+$/m, 'the kernel\'s timestamp');
    t.match(call, /^ {2}UID=0 {2}EUID=0 /m, 'the sender\'s credentials');
    t.match(call, /^ {2}Description=monitor-test-caller$/m, 'the sender\'s description');
    t.match(call, / {2}MESSAGE "s" \{\n {10}STRING "one";\n {2}\};$/, 'the body, value by value');
    t.match(shown[0]!, /Cookie=-1\n {2}Sender=org\.freedesktop\.DBus {2}Path=\/org\/freedesktop\/DBus/, 'a kernel notification as sd-bus\'s NameOwnerChanged');
    t.match(shown[12]!, /MESSAGE "x" \{\n {10}INT64 6;/, 'Sum\'s reply: INT64 6');
    const rawBlock = shown[15]!;
    t.match(rawBlock, /Type=kdbus {2}PayloadType=0x4442757344427573/, 'the raw message: its kdbus header');
    t.match(rawBlock, /PAYLOAD 16 bytes \{\n {10}00000000 {2}68 65 6c 6c 6f 2c 20 6e 6f 74 20 44 2d 42 75 73 {2}\|hello, not D-Bus\|/, 'and its payload in hex');
    t.equal(text.err().match(/dropped/g), null, 'nothing dropped');
  });

  t.test('--json: one object per message', async (t) => {
    const lines = json.out().trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    t.same(lines.map((m) => (m.kind === 'kdbus' ? 'kdbus' : `${m.type} ${m.member ?? '-'} ${m.body.data.find((v: unknown) => typeof v === 'string') ?? '-'}`)),
      expected, 'the same messages, in order');
    t.match(lines[3], { kind: 'dbus', synthetic: false, type: 'method_call', cookie: 1, sender: callerName, member: 'Echo',
      body: { type: 's', data: ['one'] }, metadata: { creds: { uid: 0 }, description: 'monitor-test-caller' } }, 'a call, its fields');
    t.equal(typeof lines[3]!.timestamp.realtimeUs, 'number', 'timestamps as numbers');
    t.match(lines[0], { kind: 'dbus', synthetic: true, cookie: 0xffffffff, sender: 'org.freedesktop.DBus' }, 'a notification');
    t.match(lines[15], { kind: 'kdbus', payload: Buffer.from('hello, not D-Bus').toString('hex') }, 'the raw message, its payload in hex');
  });

  t.test('pcap: one record per D-Bus message, link type 231', async (t) => {
    const file = readPcap(readFileSync(ours));
    t.equal(file.linkType, 231, 'link type DBUS');
    t.same([file.versionMajor, file.versionMinor, file.snaplen], [2, 4, 4096], 'pcap 2.4, busctl\'s snapshot length');
    const dbus = expected.filter((e) => e !== 'kdbus');
    t.same(file.records.map((r) => summary(decodeMessage(r.data))), dbus, 'each record a whole D-Bus message, in order');
    t.ok(file.records.every((r) => r.origLen === r.data.length), 'no record cut short');
    const textTimes = blocks(text.out()).filter((b) => !/Type=kdbus/.test(b)).map((b) => /Realtime=(\d+)/.exec(b)?.[1]);
    t.same(file.records.map((r) => String(r.tsSec * 1e6 + r.tsUsec)), textTimes, 'stamped with the kernel\'s realtime');
  });

  const tshark = await promisify(execFile)('tshark', ['-v']).then(() => true, () => false);
  t.test('tshark reads the capture', {
    skip: tshark ? false : 'tshark is not installed (Debian package tshark; test/run.sh installs it when it can)',
  }, async (t) => {
    const r = await promisify(execFile)('tshark', ['-r', ours], { timeout: 60_000 });
    const lines = r.stdout.trim().split('\n');
    t.equal(lines.length, expected.length - 1, 'tshark lists every record');
    t.ok(lines.every((l) => /D-Bus/.test(l)), 'each as D-Bus');
    t.match(r.stdout, /Method call/, 'method calls recognised');
    t.match(r.stdout, /Method reply|Method return/, 'and their returns');
  });

  t.test('the same records as busctl capture of 2015', {
    skip: typeof busctl === 'string' ? false : `${busctl.skip}: no busctl 2015 to compare with`,
  }, async (t) => {
    await interrupt(reference!, 'busctl capture');
    const a = readPcap(readFileSync(theirs!), { partialTail: true });
    const b = readPcap(readFileSync(ours));
    t.equal(b.records.length, a.records.length, `the same number of records (${a.records.length})`);
    t.same([b.linkType, b.snaplen], [a.linkType, a.snaplen], 'the same link type and snapshot length');
    const differing = a.records.map((r, i) => (b.records[i]?.data.equals(r.data) ? -1 : i)).filter((i) => i >= 0);
    t.same(differing, [], 'the same message bytes in every record');
    t.ok(a.records.every((r, i) => r.tsSec === b.records[i]?.tsSec && r.tsUsec === b.records[i]?.tsUsec),
      'the same timestamps (the kernel\'s)');
  });
});

t.test('match rules select what is shown', async (t) => {
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-match', opts: { root: dir, access: 'world' } });
  const echoed = start(t, [process.execPath, cli, 'monitor', bus.path, "type='signal',member='Echoed'"]);
  const byName = start(t, [process.execPath, cli, 'monitor', bus.path, 'org.kdbusfs.Example']);
  await monitoring(echoed, 'monitor with a rule');
  await monitoring(byName, 'monitor of a sender name');
  await startEchoService(t, bus.path);
  await run(process.execPath, ['--input-type=module', '-e', CALLER, bus.path], { timeout: 30_000 });
  await until(() => blocks(byName.out()).length >= 7, 10_000, 50);
  await new Promise((r) => setTimeout(r, 300));
  await interrupt(echoed, 'monitor with a rule');
  await interrupt(byName, 'monitor of a sender name');
  t.same(blocks(echoed.out()).map(textSummary), ['signal Echoed one', 'signal Echoed two'], 'type=signal,member=Echoed: the two signals only');
  t.same(blocks(byName.out()).map(textSummary), [
    'signal Echoed one', 'signal PropertiesChanged org.kdbusfs.Example', 'method_return - one',
    'signal Echoed two', 'signal PropertiesChanged org.kdbusfs.Example', 'method_return - two', 'method_return - -',
  ], 'a bare name: what the name\'s owner sent');
});

t.test('refusals and usage', async (t) => {
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-private', opts: { root: dir, access: 'world' } });
  const nobody = start(t, [...(([c, a]) => [c, ...a])(nodeForOtherUid(join(staged, 'dist/lib/cli.js'), 'monitor', bus.path))],
    { uid: NOBODY });
  const r = await withTimeout(nobody.ended, 20_000, 'an unprivileged monitor');
  t.equal(r.code, 1, 'an unprivileged monitor exits 1');
  t.match(nobody.err(), /monitors need privilege \(CAP_IPC_OWNER \/ bus owner\)/, 'saying monitors need privilege');

  const usage = async (args: string[]): Promise<{ code: number; stderr: string }> =>
    run(process.execPath, [cli, ...args], { timeout: 20_000 }).then(() => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }));
  t.match(await usage(['monitor']), { code: 2, stderr: /monitor needs a BUS/ }, 'no BUS: usage, exit 2');
  t.match(await usage(['monitor', bus.path, "type='nonsense'"]), { code: 2, stderr: /unknown message type/ }, 'a bad match rule: exit 2');
  t.match(await usage(['monitor', bus.path, '--pcap', '/dev/null', '--snaplen', 'x']), { code: 2, stderr: /--snaplen takes a number/ }, 'a bad --snaplen: exit 2');
  t.match(await usage(['monitor', bus.path, '--json', '--pcap', '/dev/null']), { code: 2, stderr: /exclude each other/ }, '--json with --pcap: exit 2');
  t.match(await usage(['monitor', '0-none', '--root', dir]), { code: 1, stderr: /no such bus/ }, 'no such bus: exit 1');
  const help = await run(process.execPath, [cli, 'monitor', '--help'], { timeout: 20_000 });
  t.match(help.stdout, /^Usage: kdbusfs monitor BUS \[MATCH\.\.\.\]/, '--help: the usage, exit 0');
});
