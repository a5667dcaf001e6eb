// Interop with the real sd-bus of February 2015 (../shared/sd-bus-2015,
// built once into the user's cache dir): in a private mount namespace with
// kdbusfs on /sys/fs/kdbus and the bus 0-system (sd-bus's default system bus
// address), busctl 2015 talks to the example service (list, status, tree,
// introspect, call, get-property, set-property, monitor), and a kdbusfs/client caller
// calls a service linked against that sd-bus (test/client/sdbus-service.c),
// reads its properties and receives its signal through a match rule.
import { join } from 'node:path';
import t from 'tap';
import { root, run } from '../harness.js';
import { startEchoService } from './echo-service-process.js';
import { buildAgainstSdBus, buildSdBus, namespaceWithSystemBus, needSdBus2015, printed, startInside, SYSTEM_BUS } from './sdbus-2015.js';

needSdBus2015();

t.test('busctl 2015 and a service linked against sd-bus 2015, with kdbusfs on /sys/fs/kdbus', async (t) => {
  const { busctl, src } = await buildSdBus();
  const cService = await buildAgainstSdBus('test/client/sdbus-service.c', src);
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

  t.test('busctl monitor: a kdbus monitor connection sees the example service\'s traffic', async (t) => {
    // a pipe would hold busctl's output in stdio's buffer
    const mon = startInside(t, enter, 'stdbuf', ['-oL', busctl, 'monitor']);
    t.ok(await printed(mon, 'Monitoring bus message stream', 'err'), `busctl monitor is up (${mon.err.trim()})`);
    t.equal(await bc('call', ...E, 'Echo', 's', 'watched'), 's "watched"\n', 'a call while it watches');
    t.ok(await printed(mon, /Type=method_return[^‣]*STRING "watched"/), 'the reply appears');
    const blocks = mon.out.split('‣ ').filter(b => b.trim());
    const call = blocks.find(b => /Type=method_call/.test(b) && /Member=Echo\b/.test(b));
    t.match(call, /Destination=org\.kdbusfs\.Example\s+Path=\/org\/kdbusfs\/Example\s+Interface=org\.kdbusfs\.Example\s+Member=Echo/,
      'the call: destination, path, interface, member');
    t.match(call, /MESSAGE "s" \{\s+STRING "watched";/, 'the call\'s body');
    const cookie = /Cookie=(\d+)/.exec(call ?? '')?.[1];
    const signal = blocks.find(b => /Type=signal/.test(b) && /Member=Echoed\b/.test(b));
    t.match(signal, new RegExp(`Sender=${service.unique.replace('.', '\\.')}\\s+Path=/org/kdbusfs/Example`), 'the Echoed signal from the service');
    t.match(signal, /WellKnownNames=org\.kdbusfs\.Example/, 'with the names metadata the monitor asked for');
    t.match(signal, /MESSAGE "s" \{\s+STRING "watched";/, 'and its body');
    const reply = blocks.find(b => /Type=method_return/.test(b) && b.includes(`ReplyCookie=${cookie}`));
    t.match(reply, new RegExp(`Sender=${service.unique.replace('.', '\\.')}`), `the reply to cookie ${cookie} from the service`);
    t.ok(blocks.some(b => /Member=NameOwnerChanged/.test(b) && /STRING ":1\.\d+";\s+STRING "";\s+STRING ":1\.\d+";/.test(b)),
      'the kernel\'s ID_ADD of the calling busctl, as NameOwnerChanged');
  });

  t.test('a kdbusfs client and a service linked against sd-bus 2015', async (t) => {
    const c = startInside(t, enter, cService, []);
    t.ok(await printed(c, 'ready') && c.child.exitCode === null, `the sd-bus service owns org.kdbusfs.CService (${c.err.trim()})`);
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
