// Interop with sd-bus of February 2015 (../shared/sd-bus-2015, built once
// into the user's cache dir, as test/client/dbus-sdbus-interop.test.ts
// builds it): in a private mount namespace with kdbusfs on /sys/fs/kdbus
// (the default root) and the bus 0-system (test/client/sdbus-2015.ts), `kdbusfs call`, get-property,
// introspect and tree against a service linked against sd-bus 2015
// (test/client/sdbus-service.c) and against the example service print
// exactly what busctl 2015 prints for the same commands.
import { spawn } from 'node:child_process';
import t from 'tap';
import { cli, run, until } from '../harness.js';
import { startEchoService } from '../client/echo-service-process.js';
import { buildAgainstSdBus, buildSdBus, namespaceWithSystemBus, needSdBus2015, SYSTEM_BUS } from '../client/sdbus-2015.js';

needSdBus2015();

t.test('kdbusfs and busctl 2015 print the same', async (t) => {
  const { busctl, src } = await buildSdBus();
  const cService = await buildAgainstSdBus('test/client/sdbus-service.c', src);
  const { enter } = await namespaceWithSystemBus(t);
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
