// End to end: the example service (dist/examples/echo-service.js, root)
// called by a kdbusfs/client D-Bus client (test/client/dbus-caller.mjs) in
// another process under uid 65534 on a real mount: the org.freedesktop.DBus
// calls answered locally, Echo and Sum, properties Get/Set/GetAll with
// PropertiesChanged, the Echoed signal through an AddMatch rule, D-Bus
// errors, introspection XML with child nodes, Peer; and the service's exit
// on SIGTERM.
import { spawn } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { nodeForOtherUid } from '../helpers.js';
import { needRootAndFuse, root, withTimeout } from '../harness.js';
import { mountWithBus, NOBODY, stageClient } from './kdbus-harness.js';
import { startEchoService } from './echo-service-process.js';

t.setTimeout(120_000);
needRootAndFuse();

const { dir: staged, agent } = stageClient();
const caller = join(staged, 'test/client/dbus-caller.mjs');
copyFileSync(join(root, 'test/client/dbus-caller.mjs'), caller);

/** Runs the caller as uid 65534; its one JSON line. */
function runCaller(busPath: string): Promise<any> {
  const child = spawn(...nodeForOtherUid(caller, busPath), { uid: NOBODY, gid: NOBODY, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  return withTimeout(new Promise((resolve, reject) => {
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out));
      else reject(new Error(`the caller exited ${code}: ${err}`));
    });
  }), 60_000, 'the D-Bus caller').finally(() => child.kill('SIGKILL'));
}

t.test('a Node client under another uid uses the example service', async (t) => {
  const { newAgent, bus } = await mountWithBus(t, agent, 'dbus');
  // anybody may talk to the service's name (a root connection otherwise refuses uid 65534)
  const holder = await newAgent('holder');
  await holder.do('connect', { bus: bus.path, opts: {
    kind: 'policy-holder', name: 'org.kdbusfs.Example', grants: [{ world: true, access: 'talk' }],
  } });
  const service = await startEchoService(t, bus.path);

  const r = await runCaller(bus.path);
  t.equal(r.uid, NOBODY, 'the caller runs as uid 65534');
  t.match(r.unique, /^:1\.\d+$/, 'Hello: a unique name :1.<kdbus id>');
  t.match(r.busId, /^[0-9a-f]{32}$/, 'GetId: the bus id, 32 hex digits');
  t.ok(r.listNames.includes('org.kdbusfs.Example'), 'ListNames has the service name');
  t.ok(r.listNames.includes(r.unique), 'ListNames has the caller itself');
  t.ok(r.listNames.includes('org.freedesktop.DBus'), 'ListNames has org.freedesktop.DBus, as sd-bus listed it');
  t.equal(r.nameHasOwner, true, 'NameHasOwner(org.kdbusfs.Example)');
  t.equal(r.nobodyHasOwner, false, 'NameHasOwner of an unowned name is false');
  t.equal(r.owner, service.unique, 'GetNameOwner: the service\'s unique name');
  t.equal(r.ownerUid, 0, 'GetConnectionUnixUser: root');
  t.equal(r.ownerPid, service.pid, 'GetConnectionUnixProcessID: the service\'s pid');
  t.match(r.credentials, { UnixUserID: 0, ProcessID: service.pid }, 'GetConnectionCredentials');
  t.same(r.noOwner.errorName, 'org.freedesktop.DBus.Error.NameHasNoOwner', 'GetNameOwner of an unowned name: NameHasNoOwner');

  t.same(r.echo, ['hi'], 'Echo(s) -> s');
  t.same(r.echoed, { body: ['hi'], sender: service.unique, path: '/org/kdbusfs/Example' },
    'the Echoed signal arrives through the AddMatch rule, from the service');
  t.equal(r.otherSenderSaw, 0, 'a rule naming another well-known sender does not get the signal');
  t.equal(r.removedAgain.errorName, 'org.freedesktop.DBus.Error.MatchRuleNotFound', 'RemoveMatch of a removed rule: MatchRuleNotFound');
  t.equal(r.sum, String(1 + 2 + 3 + 2147483647 - 10), 'Sum(ai) -> x, past 32 bits');
  t.equal(r.sumEmpty, '0', 'Sum of no numbers is 0');
  t.equal(r.count, 1, 'Count: one Echo so far');
  t.same(r.propertiesChanged, { changed: { Greeting: 'bonjour' }, invalidated: [] }, 'Set emits PropertiesChanged with the new value');
  t.equal(r.greeting, 'bonjour', 'Greeting reads back what was set');
  t.same(r.all, { Count: 1, Greeting: 'bonjour' }, 'GetAll');
  t.same(r.bigEcho, { length: 5 << 18, same: true }, 'a 1.25 MiB Echo (memfd bodies both ways) comes back whole');
  t.equal(r.readOnly.errorName, 'org.freedesktop.DBus.Error.PropertyReadOnly', 'Count is read-only');
  t.equal(r.wrongType.errorName, 'org.freedesktop.DBus.Error.InvalidArgs', 'Set with the wrong type: InvalidArgs');
  t.equal(r.unknownMethod.errorName, 'org.freedesktop.DBus.Error.UnknownMethod', 'an unknown method: UnknownMethod');
  t.equal(r.badArgs.errorName, 'org.freedesktop.DBus.Error.InvalidArgs', 'Echo with a wrong signature: InvalidArgs');
  t.equal(r.unknownObject.errorName, 'org.freedesktop.DBus.Error.UnknownObject', 'an unknown path: UnknownObject');
  t.equal(r.noService.errorName, 'org.freedesktop.DBus.Error.ServiceUnknown', 'an unowned destination: ServiceUnknown');

  t.match(r.introspect, /^<!DOCTYPE node PUBLIC/, 'introspection XML with its doctype');
  for (const part of [
    '<interface name="org.kdbusfs.Example">',
    '<method name="Echo">\n   <arg type="s" direction="in"/>\n   <arg type="s" direction="out"/>\n  </method>',
    '<method name="Sum">\n   <arg type="ai" direction="in"/>\n   <arg type="x" direction="out"/>\n  </method>',
    '<signal name="Echoed">\n   <arg type="s"/>\n  </signal>',
    '<property name="Count" type="u" access="read"/>',
    '<property name="Greeting" type="s" access="readwrite"/>',
    '<interface name="org.freedesktop.DBus.Properties">',
    '<interface name="org.freedesktop.DBus.Peer">',
  ]) t.ok(r.introspect.includes(part), `the XML has ${part.split('\n')[0]}`);
  t.match(r.introspectRoot, /<node name="org"\/>/, 'the root node lists its child "org"');
  t.same(r.ping, [], 'Peer.Ping answers');
  t.match(r.machineId, /^[0-9a-f]{32}$/, 'Peer.GetMachineId answers the machine id');

  service.child.kill('SIGTERM');
  const exit = await withTimeout(service.ended, 10_000, 'the service exiting');
  t.same(exit, { code: 0, signal: null }, 'SIGTERM: the service exits 0');
});
