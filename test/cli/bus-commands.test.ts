// End to end on a real mount: `kdbusfs bus make` holds a bus with a policy
// file; the example service (dist/examples/echo-service.js) and kdbus
// agents (owner, queued owner, activator, monitor) use it; list, status,
// call, emit, get-property, set-property, introspect and tree show and drive
// that known traffic, as root and as uid 65534, in text and --json; timeouts,
// --expect-reply=no, D-Bus errors; the bus goes with bus make's SIGTERM.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { needRootAndFuse } from '../harness.js';
import { agents, mountFresh, NOBODY, stageClient } from '../client/kdbus-harness.js';
import { startEchoService } from '../client/echo-service-process.js';
import { kdbusfs, startHeld, type CliOptions } from './cli-harness.js';

t.setTimeout(240_000);
needRootAndFuse();

const E = ['org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example'];

t.test('the bus commands against known traffic', async (t) => {
  const { dir: staged, agent } = stageClient();
  const { dir } = await mountFresh(t, 'cli');
  const o: CliOptions = { root: dir };
  const nobody: CliOptions = { root: dir, uid: NOBODY, staged };
  const policy = join(staged, 'policy');
  writeFileSync(policy, '# the example service: anybody may see and call it\norg.kdbusfs.Example talk world\n');
  const made = await startHeld(t, o, 'bus', 'make', 'cli', '--world', '--policy', policy, '--bloom', '128,3');
  t.equal(made.path, join(dir, '0-cli/bus'), 'bus make prints the bus file\'s path, the name prefixed with the uid');
  const service = await startEchoService(t, made.path);
  const newAgent = agents(t, agent);
  const silent = await newAgent('silent');
  await silent.do('connect', { bus: made.path, opts: { description: 'silent' } });
  await silent.do('acquire', { name: 'org.kdbusfs.Silent' });
  const waiting = await newAgent('waiting');
  const waitingId = (await waiting.do('connect', { bus: made.path })).id;
  await waiting.do('acquire', { name: 'org.kdbusfs.Silent', flags: { queue: true } });
  const activator = await newAgent('activator');
  await activator.do('connect', { bus: made.path, opts: { kind: 'activator', name: 'org.kdbusfs.Lazy' } });
  const monitor = await newAgent('monitor');
  await monitor.do('connect', { bus: made.path, opts: { kind: 'monitor' } });

  t.test('list: the buses of the root', async (t) => {
    // one at a time: each would see the other's connection
    const r = await kdbusfs(o, 'list');
    const json = await kdbusfs(o, 'list', '--json');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^BUS\s+USER\s+CONNECTIONS\s+NAMES$/m, 'a header');
    // echo service, silent, waiting, activator, monitor, the policy holder
    t.match(r.stdout, /^0-cli\s+root\s+6\s+org\.kdbusfs\.Example org\.kdbusfs\.Silent$/m, 'the bus, its maker, connections and names');
    const j = JSON.parse(json.stdout);
    t.match(j, [{ name: '0-cli', uid: 0, connections: 6, names: ['org.kdbusfs.Example', 'org.kdbusfs.Silent'] }]);
  });

  t.test('list BUS: connections and names, by name and by path', async (t) => {
    const r = await kdbusfs(o, 'list', '0-cli');
    const byPath = await kdbusfs(o, 'list', join(dir, '0-cli'), '--no-legend');
    const json = await kdbusfs(o, 'list', '0-cli', '--json');
    t.equal(r.code, 0, r.stderr);
    const u = service.unique.replace('.', '\\.');
    t.match(r.stdout, new RegExp(`^org\\.kdbusfs\\.Example\\s+${service.pid}\\s+\\S+\\s+root\\s+${u}\\s+owner\\s+echo-service$`, 'm'),
      'the service\'s name: pid, user, unique name, owner, description');
    t.match(r.stdout, new RegExp(`^${u}\\s+${service.pid}\\s`, 'm'), 'the service\'s unique name');
    t.match(r.stdout, /^org\.kdbusfs\.Silent\s+\d+\s+\S+\s+root\s+:1\.\d+\s+owner\s+silent$/m, 'an owner');
    t.match(r.stdout, /^org\.kdbusfs\.Silent\s+\d+\s+\S+\s+root\s+:1\.\d+\s+queued\s/m, 'an owner waiting in the queue');
    t.match(r.stdout, /^org\.kdbusfs\.Lazy\s+\d+\s+\S+\s+root\s+:1\.\d+\s+activator\s/m, 'an activator');
    t.match(r.stdout, /^:1\.\d+\s+\d+\s+\S+\s+root\s+:1\.\d+\s+monitor\s/m, 'a monitor');
    t.match(r.stdout, /^:1\.\d+\s+\d+\s+\S+\s+root\s+:1\.\d+\s+policy-holder\s+kdbusfs-policy$/m, 'the policy holder');
    t.notMatch(r.stdout, /kdbusfs-list/, 'list leaves its own connection out');
    t.equal(byPath.stdout, r.stdout.split('\n').slice(1).join('\n'), 'the bus directory\'s path lists the same (--no-legend: no header)');
    const j = JSON.parse(json.stdout);
    const row = j.find((x: { name: string }) => x.name === 'org.kdbusfs.Example');
    t.match(row, { unique: service.unique, role: 'owner', pid: service.pid, uid: 0, user: 'root', description: 'echo-service' });
    t.type(row.id, 'number', 'ids are JSON numbers');
  });

  t.test('status: a connection, the bus', async (t) => {
    const [r, json, bus, busJson, none] = await Promise.all([
      kdbusfs(o, 'status', '0-cli', 'org.kdbusfs.Example'), kdbusfs(o, 'status', '0-cli', service.unique, '--json'),
      kdbusfs(o, 'status', '0-cli'), kdbusfs(o, 'status', '0-cli', '--json'), kdbusfs(o, 'status', '0-cli', 'org.kdbusfs.Nobody'),
    ]);
    t.equal(r.code, 0, r.stderr);
    for (const line of [`UniqueName=${service.unique}`, `PID=${service.pid}`, 'EUID=0', 'Description=echo-service', 'WellKnownNames=org.kdbusfs.Example']) {
      t.match(r.stdout, new RegExp(`^${line.replace(/\./g, '\\.')}$`, 'm'), line);
    }
    const j = JSON.parse(json.stdout);
    t.match(j, { unique: service.unique, metadata: { pids: { pid: service.pid }, creds: { uid: 0 }, ownedNames: [{ name: 'org.kdbusfs.Example' }] } },
      'by unique name, --json');
    t.match(bus.stdout, /^BusName=0-cli$/m);
    t.match(bus.stdout, /^BusID=[0-9a-f]{32}$/m);
    t.match(bus.stdout, /^BloomSize=128$/m, 'the bloom size bus make was given');
    t.match(bus.stdout, /^BloomHashes=3$/m);
    t.match(bus.stdout, new RegExp(`^CreatorPID=${made.child.pid}$`, 'm'), 'the creator: the bus make process');
    const bj = JSON.parse(busJson.stdout);
    t.match(bj, { bus: '0-cli', bloom: { size: 128, nHash: 3 }, creator: { pids: { pid: made.child.pid } } });
    t.equal(none.code, 1, 'an unknown name fails');
    t.match(none.stderr, /no connection owns the name 'org\.kdbusfs\.Nobody' on 0-cli/, 'and says so');
  });

  t.test('call, get-property, set-property', async (t) => {
    const [echo, sum, sumJson, quiet, unknown, nobodyThere, lazy] = await Promise.all([
      kdbusfs(o, 'call', '0-cli', ...E, 'Echo', 's', 'hi there'),
      kdbusfs(o, 'call', '0-cli', ...E, 'Sum', 'ai', '3', '40', '2', '--', '-1'),
      kdbusfs(o, 'call', '0-cli', ...E, 'Sum', 'ai', '2', '2147483647', '2147483647', '--json'),
      kdbusfs(o, 'call', '0-cli', ...E, 'Echo', 's', 'quiet', '--quiet'),
      kdbusfs(o, 'call', '0-cli', ...E, 'Nope'),
      kdbusfs(o, 'call', '0-cli', 'org.kdbusfs.Nobody', '/', 'a.b', 'C'),
      kdbusfs(o, 'call', '0-cli', 'org.kdbusfs.Lazy', '/', 'a.b', 'C', '--auto-start=no'),
    ]);
    t.same(echo, { code: 0, signal: null, stdout: 's "hi there"\n', stderr: '' }, 'call Echo s "hi there"');
    t.equal(sum.stdout, 'x 41\n', 'arguments after --');
    t.same(JSON.parse(sumJson.stdout), { type: 'x', data: [4294967294] }, '--json: the reply\'s type and data');
    t.same([quiet.code, quiet.stdout], [0, ''], '--quiet prints nothing');
    t.equal(unknown.code, 1);
    t.match(unknown.stderr, /^kdbusfs call: .*org\.freedesktop\.DBus\.Error\.UnknownMethod\)$/m, 'an error reply: its text and name');
    t.match(nobodyThere, { code: 1, stderr: /ServiceUnknown/ }, 'an unowned destination: ServiceUnknown');
    t.match(lazy, { code: 1, stderr: /ServiceUnknown/ }, '--auto-start=no: a name held by an activator only is not reached');

    const props = await kdbusfs(o, 'get-property', '0-cli', ...E, 'Count', 'Greeting');
    const [set, ro, nr] = await Promise.all([
      kdbusfs(o, 'set-property', '0-cli', ...E, 'Greeting', 's', 'bonjour'),
      kdbusfs(o, 'set-property', '0-cli', ...E, 'Count', 'u', '7'),
      kdbusfs(o, 'call', '0-cli', ...E, 'Echo', 's', 'fire and forget', '--expect-reply=no'),
    ]);
    t.equal(props.stdout, 'u 2\ns "hello"\n', 'two properties (two Echo calls so far)');
    t.same([set.code, set.stdout], [0, ''], 'set-property prints nothing');
    t.equal(ro.code, 1, 'setting a read-only property fails');
    t.match(ro.stderr, /PropertyReadOnly/, 'naming the D-Bus error');
    t.same([nr.code, nr.stdout], [0, ''], '--expect-reply=no: sent, nothing waited for');
    const after = await kdbusfs(o, 'get-property', '0-cli', ...E, 'Count', 'Greeting', '--json');
    t.same(after.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)), [{ type: 'u', data: 3 }, { type: 's', data: 'bonjour' }],
      'the service got the call sent without waiting, and the new Greeting (--json)');

    const started = Date.now();
    const late = await kdbusfs(o, 'call', '0-cli', 'org.kdbusfs.Silent', '/', 'a.b', 'C', '--timeout', '500ms');
    t.match(late, { code: 1, stderr: /NoReply/ }, 'no reply within --timeout: NoReply');
    t.ok(Date.now() - started < 15_000, 'and it gave up at the timeout');
  });

  t.test('emit: a broadcast signal that a matching connection receives', async (t) => {
    // `waiting` has had no message: the next one is the signal
    await waiting.do('addMatch', { cookie: 1, rule: {} });
    const r = await kdbusfs(o, 'emit', '0-cli', '/org/kdbusfs/Test', 'org.kdbusfs.Test', 'Ping', 'su', 'ping text', '7');
    t.same([r.code, r.stderr], [0, ''], r.stderr);
    const got = await waiting.do('next', { kind: 'message', ms: 10_000 });
    t.ok(got, 'the signal arrived');
    t.equal(got.msg.signal, true, 'as a kdbus signal');
    const payload = got.msg.payload.join('');
    t.ok(payload.includes('Ping') && payload.includes('ping text') && payload.includes('org.kdbusfs.Test'), 'carrying member, interface and argument');
    const direct = await kdbusfs(o, 'emit', '0-cli', '/org/kdbusfs/Test', 'org.kdbusfs.Test', 'Direct', '--destination', `:1.${waitingId}`);
    t.equal(direct.code, 0, direct.stderr);
    const unicast = await waiting.do('next', { kind: 'message', ms: 10_000 });
    t.equal(String(unicast?.msg.dstId), String(waitingId), '--destination: a unicast signal to that connection');
    t.ok(unicast.msg.payload.join('').includes('Direct'), 'carrying its member');
  });

  t.test('introspect and tree', async (t) => {
    const [r, only, json, tree, treeJson] = await Promise.all([
      kdbusfs(o, 'introspect', '0-cli', ...E.slice(0, 2)), kdbusfs(o, 'introspect', '0-cli', ...E),
      kdbusfs(o, 'introspect', '0-cli', ...E, '--json'), kdbusfs(o, 'tree', '0-cli', 'org.kdbusfs.Example'),
      kdbusfs(o, 'tree', '0-cli', 'org.kdbusfs.Example', '--json'),
    ]);
    t.equal(r.code, 0, r.stderr);
    for (const line of [
      /^NAME\s+TYPE\s+SIGNATURE\s+RESULT\/VALUE\s+FLAGS$/m,
      /^org\.kdbusfs\.Example\s+interface\s+-\s+-\s+-$/m,
      /^\.Echo\s+method\s+s\s+s\s+-$/m,
      /^\.Sum\s+method\s+ai\s+x\s+-$/m,
      /^\.Echoed\s+signal\s+s\s+-\s+-$/m,
      /^\.Count\s+property\s+u\s+3\s+emits-change$/m,
      /^\.Greeting\s+property\s+s\s+"bonjour"\s+emits-change writable$/m,
      /^org\.freedesktop\.DBus\.Peer\s+interface/m,
    ]) t.match(r.stdout, line, `introspect: ${line.source}`);
    t.notMatch(only.stdout, /interface|Peer/, 'with INTERFACE: only its members');
    const j = JSON.parse(json.stdout);
    t.match(j.find((m: { name?: string }) => m.name === 'Greeting'),
      { interface: 'org.kdbusfs.Example', type: 'property', signature: 's', value: { type: 's', data: 'bonjour' }, flags: ['emits-change', 'writable'] });
    t.equal(tree.stdout, '└─/org\n  └─/org/kdbusfs\n    └─/org/kdbusfs/Example\n', 'tree: busctl\'s drawing');
    t.same(JSON.parse(treeJson.stdout),
      { 'org.kdbusfs.Example': ['/', '/org', '/org/kdbusfs', '/org/kdbusfs/Example'] });
  });

  t.test('as uid 65534, through the bus\'s policy', async (t) => {
    const [r, l, refused] = await Promise.all([
      kdbusfs(nobody, 'call', '0-cli', ...E, 'Echo', 's', 'from nobody'), kdbusfs(nobody, 'list', '0-cli'),
      kdbusfs(nobody, 'call', '0-cli', 'org.kdbusfs.Silent', '/', 'a.b', 'C'),
    ]);
    t.same([r.code, r.stdout], [0, 's "from nobody"\n'], r.stderr);
    t.match(l.stdout, new RegExp(`^org\\.kdbusfs\\.Example\\s+${service.pid}\\s+\\S+\\s+root\\s`, 'm'), 'list as another user');
    t.equal(refused.code, 1, 'a name the policy does not let uid 65534 talk to: refused');
    t.match(refused.stderr, /EPERM|policy/, 'saying the policy refused it');
  });

  t.test('bus make: the bus goes on SIGTERM, with everything on it', async (t) => {
    const r = await made.stop('SIGTERM');
    t.equal(r.code, 0, 'bus make exits 0 on SIGTERM');
    const gone = await kdbusfs(o, 'list');
    t.notMatch(gone.stdout, /0-cli/, 'the bus is gone from the root');
    const end = await service.ended;
    t.equal(end.code, 1, 'the service saw the bus go away');
  });
});
