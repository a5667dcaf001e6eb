// Interop with sd-bus of February 2015 (../shared/sd-bus-2015, built once
// into the user's cache dir, as test/client/dbus-sdbus-interop.test.ts
// builds it): in a private mount namespace with kdbusfs on /sys/fs/kdbus
// (the default root) and the bus 0-system, `kdbusfs call`, get-property,
// introspect and tree against a service linked against sd-bus 2015
// (test/client/sdbus-service.c) and against the example service print
// exactly what busctl 2015 prints for the same commands.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, needRootAndFuse, root, run, until, withTimeout, type Tap } from '../harness.js';
import { startEchoService } from '../client/echo-service-process.js';

const shared = join(root, '../shared/sd-bus-2015');
if (!existsSync(join(shared, 'build.sh'))) {
  t.plan(0, `the sd-bus 2015 tree is missing (${shared}): nothing to interoperate with`);
  process.exit(0);
}
needRootAndFuse();
// the first build takes minutes; later runs reuse it
t.setTimeout(1_500_000);

const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kdbusfs');
const SYSTEM_BUS = '/sys/fs/kdbus/0-system/bus';

/** busctl and the C service, built (once) against sd-bus 2015. */
async function buildSdBus(): Promise<{ busctl: string; cService: string }> {
  const build = join(cache, 'sd-bus-2015');
  mkdirSync(cache, { recursive: true });
  await run('bash', [join(shared, 'build.sh'), build], { timeout: 1_400_000, maxBuffer: 64 << 20 });
  const src = join(build, 'src');
  const source = join(root, 'test/client/sdbus-service.c');
  const cService = join(cache, 'cli-sdbus-service');
  if (!existsSync(cService) || statSync(cService).mtimeMs < statSync(source).mtimeMs) {
    await run('gcc', ['-O1', '-Wall', '-Werror', `-I${join(src, 'src/systemd')}`, '-o', cService, source,
      join(src, '.libs/libsystemd-internal.a'), join(src, '.libs/libsystemd-shared.a'), '-lcap', '-lm', '-lrt', '-pthread'],
    { timeout: 120_000 });
  }
  return { busctl: join(src, 'busctl'), cService };
}

/** A private mount namespace with kdbusfs on /sys/fs/kdbus and the world-accessible bus 0-system; enter runs in it. */
async function namespaceWithSystemBus(t: Tap): Promise<string[]> {
  const script = `
    node "$1" mount & srv=$!
    for i in $(seq 400); do [ -e /sys/fs/kdbus/control ] && break; sleep 0.05; done
    node "$1" bus make system --world & bus=$!
    for i in $(seq 400); do [ -e ${SYSTEM_BUS} ] && break; sleep 0.05; done
    trap 'kill $bus; kill -TERM $srv; wait $srv; exit 0' TERM
    [ -e ${SYSTEM_BUS} ] && echo ready
    wait`;
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli],
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
  return ['nsenter', '-t', String(holder.pid), '-m', '--'];
}

t.test('kdbusfs and busctl 2015 print the same', async (t) => {
  const { busctl, cService } = await buildSdBus();
  const enter = await namespaceWithSystemBus(t);
  const inside = async (cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r = await run(enter[0]!, [...enter.slice(1), ...cmd], { timeout: 60_000, env: { ...process.env, KDBUSFS_ROOT: '' } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const f = e as { code: number; stdout: string; stderr: string };
      return { code: f.code, stdout: f.stdout, stderr: f.stderr };
    }
  };
  const both = (args: string[]) => Promise.all([
    inside([process.execPath, cli, args[0]!, '0-system', ...args.slice(1)]),
    inside([busctl, '--no-pager', ...args]),
  ]);

  const c = spawn(enter[0]!, [...enter.slice(1), cService], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  t.teardown(() => { c.kill('SIGKILL'); });
  t.ok(await until(() => out.includes('ready') || c.exitCode !== null, 20_000, 50) && c.exitCode === null,
    `the sd-bus service owns org.kdbusfs.CService (${err.trim()})`);
  await startEchoService(t, SYSTEM_BUS, enter);

  const C = ['org.kdbusfs.CService', '/org/kdbusfs/CTest', 'org.kdbusfs.CTest'];
  const E = ['org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example'];
  for (const args of [
    ['call', ...C, 'Double', 'i', '21'],
    ['call', ...C, 'Fire', 's', 'bang'],
    ['get-property', ...C, 'Name'],
    ['introspect', ...C.slice(0, 2)],
    ['introspect', ...C],
    ['tree', 'org.kdbusfs.CService'],
    ['call', ...E, 'Sum', 'ai', '4', '1', '2', '3', '4'],
    ['call', ...E, 'Echo', 's', 'tab\tquote" end'],
    ['get-property', ...E, 'Count', 'Greeting'],
    ['introspect', ...E.slice(0, 2)],
    ['tree', 'org.kdbusfs.Example'],
  ]) {
    const [ours, theirs] = await both(args);
    t.equal(theirs.code, 0, `busctl ${args.join(' ')} works (${theirs.stderr.trim()})`);
    t.same({ code: ours.code, stdout: ours.stdout }, { code: theirs.code, stdout: theirs.stdout }, `kdbusfs ${args.join(' ')}: as busctl`);
  }
  const double = await inside([process.execPath, cli, 'call', '0-system', ...C, 'Double', '--json', 'i', '--', '-21']);
  t.same(JSON.parse(double.stdout), { type: 'i', data: [-42] }, '--json against the sd-bus service');
});
