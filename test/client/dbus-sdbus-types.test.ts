// Every D-Bus type, fds and a 1 MiB body both ways between kdbusfs/client and
// sd-bus of February 2015, on kdbusfs at /sys/fs/kdbus in a private mount
// namespace: test/clients/sdbus-types.c serves org.kdbusfs.Types to a Node
// caller (types-caller.mjs), and calls the same interface of a Node service
// (types-service.mjs). Both sides compare against the same constants
// (every-type.mjs and the C file) exactly: y b n q i u x t d s o g h v,
// arrays (empty ones too), structs, dict entries, nested variants, in call
// arguments, replies, a property and a signal through a match rule.
import { join } from 'node:path';
import t from 'tap';
import { root, run } from '../harness.js';
import { buildAgainstSdBus, buildSdBus, namespaceWithSystemBus, needSdBus2015, printed, startInside, SYSTEM_BUS } from './sdbus-2015.js';

needSdBus2015();

t.test('every type, fds and 1 MiB between kdbusfs/client and sd-bus 2015', async (t) => {
  const { src } = await buildSdBus();
  const cTypes = await buildAgainstSdBus('test/clients/sdbus-types.c', src);
  const { enter } = await namespaceWithSystemBus(t);

  t.test('a Node client calls, reads and hears an sd-bus service', async (t) => {
    const service = startInside(t, enter, cTypes, ['serve']);
    t.ok(await printed(service, 'ready') && service.child.exitCode === null, `the sd-bus service owns org.kdbusfs.CTypes (${service.err.trim()})`);
    const r = JSON.parse((await run(enter[0]!, [...enter.slice(1), process.execPath, join(root, 'test/client/types-caller.mjs'), SYSTEM_BUS],
      { timeout: 30_000 })).stdout);
    t.equal(r.values, '', 'Values(): sd-bus\'s reply decodes to exactly the constants');
    t.equal(r.check, '', 'Check(constants): sd-bus reads exactly the constants Node marshalled');
    t.equal(r.property, '', 'Get of the struct property All: the constants');
    t.equal(r.signal, '', 'the Values signal sd-bus broadcast, through a match rule: the constants');
    t.equal(r.readFd, 'from node', 'an fd (h) from Node: sd-bus reads what Node wrote into it');
    t.same(r.makeFd, { fds: 1, text: 'from sd-bus?' }, 'an fd (h) from sd-bus: Node reads what sd-bus wrote into it');
    t.same(r.big, { length: 1 << 20, same: true, inMemfd: true }, '1 MiB from sd-bus arrives whole, in a memfd');
    t.same(r.takeBig, { result: [1 << 20, true], inMemfd: true }, '1 MiB to sd-bus (sent in a memfd, as sd-bus would) arrives whole');
  });

  t.test('an sd-bus client calls, reads and hears a Node service', async (t) => {
    const service = startInside(t, enter, process.execPath, [join(root, 'test/client/types-service.mjs'), SYSTEM_BUS, 'org.kdbusfs.NodeTypes']);
    t.ok(await printed(service, 'ready'), `the Node service owns org.kdbusfs.NodeTypes (${service.err.trim()})`);
    const caller = await run(enter[0]!, [...enter.slice(1), cTypes, 'call', 'org.kdbusfs.NodeTypes'], { timeout: 30_000 })
      .catch((e: { stdout: string; stderr: string }) => e);
    const lines = caller.stdout.trim().split('\n');
    for (const check of ['Values', 'Check', 'property All', 'signal Values', 'ReadFd', 'MakeFd', 'Big', 'TakeBig']) {
      const line = lines.find(l => l.endsWith(` ${check}`) || l.includes(` ${check}: `)) ?? `missing (${caller.stderr.trim()})`;
      t.equal(line, `ok ${check}`, `sd-bus: ${check}`);
    }
    t.equal(lines.at(-1), 'done', 'the sd-bus caller ran to the end');
    t.ok(await printed(service, 'memfd received 1') && service.out.includes('memfd sent 1'),
      `the 1 MiB bodies went through memfds both ways (${service.out.trim().replace(/\n/g, '; ')})`);
  });
});
