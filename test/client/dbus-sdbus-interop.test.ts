// Interop with the real sd-bus of February 2015 (../shared/sd-bus-2015,
// built once into the user's cache dir): in a private mount namespace with
// kdbusfs on /sys/fs/kdbus and the bus 0-system (sd-bus's default system bus
// address), busctl 2015 talks to the example service (list, status, tree,
// introspect, call, get-property, set-property), and a kdbusfs/client caller
// calls a service linked against that sd-bus (test/client/sdbus-service.c),
// reads its properties and receives its signal through a match rule.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, needRootAndFuse, root, run, until, withTimeout, type Tap } from '../harness.js';
import { startEchoService } from './echo-service-process.js';

const shared = join(root, '../shared/sd-bus-2015');
if (!existsSync(join(shared, 'build.sh'))) {
  t.plan(0, `the sd-bus 2015 tree is missing (${shared}): nothing to interoperate with`);
  process.exit(0);
}
needRootAndFuse();
// the first build takes minutes; later runs reuse it
t.setTimeout(1_500_000);

const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kdbusfs');
const build = join(cache, 'sd-bus-2015');
const SYSTEM_BUS = '/sys/fs/kdbus/0-system/bus';

/** busctl and the C service, built (once) against sd-bus 2015. */
async function buildSdBus(): Promise<{ busctl: string; cService: string }> {
  mkdirSync(cache, { recursive: true });
  await run('bash', [join(shared, 'build.sh'), build], { timeout: 1_400_000, maxBuffer: 64 << 20 });
  const src = join(build, 'src');
  const cService = join(cache, 'sdbus-service');
  await run('gcc', ['-O1', '-Wall', '-Werror', `-I${join(src, 'src/systemd')}`, '-o', cService,
    join(root, 'test/client/sdbus-service.c'), join(src, '.libs/libsystemd-internal.a'),
    join(src, '.libs/libsystemd-shared.a'), '-lcap', '-lm', '-lrt', '-pthread'], { timeout: 120_000 });
  return { busctl: join(src, 'busctl'), cService };
}

/**
 * A private mount namespace with kdbusfs on /sys/fs/kdbus and the bus
 * 0-system in it, held by a shell until the test ends; `enter` runs a
 * command inside.
 */
async function namespaceWithSystemBus(t: Tap): Promise<{ enter: string[] }> {
  const script = `
    node "$1" mount & srv=$!
    for i in $(seq 400); do [ -e /sys/fs/kdbus/control ] && break; sleep 0.05; done
    node "$2/test/client/system-bus.mjs" & bus=$!
    for i in $(seq 400); do [ -e ${SYSTEM_BUS} ] && break; sleep 0.05; done
    trap 'kill $bus; kill -TERM $srv; wait $srv; exit 0' TERM
    [ -e ${SYSTEM_BUS} ] && echo ready
    wait`;
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli, root],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KDBUSFS_QUIET: '1' } });
  let out = '';
  let err = '';
  let exited = false;
  holder.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  holder.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const ended = new Promise<void>((resolve) => holder.on('exit', () => { exited = true; resolve(); }));
  t.teardown(async () => {
    holder.kill('SIGTERM');
    await withTimeout(ended, 10_000, 'the namespace holder stopping').catch(() => holder.kill('SIGKILL'));
  });
  if (!await until(() => exited || out.includes('ready'), 30_000, 50) || exited) {
    throw new Error(`no kdbusfs with 0-system in the namespace: ${err}`);
  }
  return { enter: ['nsenter', '-t', String(holder.pid), '-m', '--'] };
}

t.test('busctl 2015 and a service linked against sd-bus 2015, with kdbusfs on /sys/fs/kdbus', async (t) => {
  const { busctl, cService } = await buildSdBus();
  const { enter } = await namespaceWithSystemBus(t);
  const inside = (cmd: string, args: string[]) => run(enter[0]!, [...enter.slice(1), cmd, ...args], { timeout: 30_000 });
  const bc = async (...args: string[]): Promise<string> => (await inside(busctl, args)).stdout;
  const service = await startEchoService(t, SYSTEM_BUS, enter);
  const E = ['org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example'];

  t.test('busctl against the example service', async (t) => {
    const list = await bc('list');
    t.match(list, new RegExp(`^org\\.kdbusfs\\.Example\\s+\\d+\\s+node\\s+root\\s+${service.unique.replace('.', '\\.')}\\s`, 'm'),
      'list: the service name, its process, user and unique name');
    t.match(list, /^:1\.\d+\s+\d+\s+busctl\s/m, 'list: busctl itself');
    const status = await bc('status');
    t.match(status, /^BusAddress=kernel:path=\/sys\/fs\/kdbus\/0-system\/bus/m, 'status: the kernel bus address');
    t.match(status, /^BusID=[0-9a-f]{32}$/m, 'status: the bus id');
    const tree = await bc('tree', 'org.kdbusfs.Example');
    t.match(tree, /└─\/org\n\s+└─\/org\/kdbusfs\n\s+└─\/org\/kdbusfs\/Example/, 'tree: the child nodes down to the object');
    const intro = await bc('introspect', ...E.slice(0, 2));
    for (const line of [
      /^\.Echo\s+method\s+s\s+s\s+-$/m,
      /^\.Sum\s+method\s+ai\s+x\s+-$/m,
      /^\.Echoed\s+signal\s+s\s+-\s+-$/m,
      /^\.Count\s+property\s+u\s+0\s+emits-change$/m,
      /^\.Greeting\s+property\s+s\s+"hello"\s+emits-change writable$/m,
      /^org\.freedesktop\.DBus\.Peer\s+interface/m,
    ]) t.match(intro, line, `introspect: ${line.source}`);
    t.equal(await bc('call', ...E, 'Echo', 's', 'hi'), 's "hi"\n', 'call Echo s hi');
    t.equal(await bc('call', ...E, 'Sum', 'ai', '3', '1', '2', '40'), 'x 43\n', 'call Sum ai 3 1 2 40');
    t.equal(await bc('get-property', ...E, 'Greeting'), 's "hello"\n', 'get-property Greeting');
    t.equal(await bc('set-property', ...E, 'Greeting', 's', 'yo'), '', 'set-property Greeting s yo');
    t.equal(await bc('get-property', ...E, 'Greeting', 'Count'), 's "yo"\nu 1\n', 'get-property: the new Greeting, Count 1');
    const refused = await inside(busctl, ['set-property', ...E, 'Count', 'u', '5']).then(() => null, (e: { stderr: string }) => e.stderr);
    t.match(refused, /read-only/, 'set-property of the read-only Count fails with the service\'s error text');
  });

  t.test('a kdbusfs client and a service linked against sd-bus 2015', async (t) => {
    const c = spawn(enter[0]!, [...enter.slice(1), cService], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    t.teardown(() => { c.kill('SIGKILL'); });
    t.ok(await until(() => out.includes('ready') || c.exitCode !== null, 20_000, 50) && c.exitCode === null,
      `the sd-bus service owns org.kdbusfs.CService (${err.trim()})`);
    const r = JSON.parse((await inside(process.execPath, [join(root, 'test/client/sdbus-caller.mjs'), SYSTEM_BUS])).stdout);
    t.same(r.double, [42], 'Double(21) answered by sd-bus: 42');
    t.equal(r.name, 'written in C', 'Get of the Name property');
    t.same(r.all, { Name: 'written in C' }, 'GetAll');
    t.same(r.fire, [], 'Fire returns nothing');
    t.match(r.fired, { args: ['from node'] }, 'the Fired signal sd-bus broadcast arrives through the match rule');
    t.equal(r.fired.sender, r.owner, 'from the service\'s unique name');
    t.match(r.introspect, /<method name="Double">/, 'sd-bus\'s introspection XML');
  });
});
