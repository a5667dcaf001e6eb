// A D-Bus client of the example service for dbus-service.test.ts, run in a
// process of its own (under another uid): `node dbus-caller.mjs BUS_PATH`
// talks to org.kdbusfs.Example through kdbusfs/client's D-Bus layer and
// prints one JSON line with what it saw. Bigints are printed as strings.
import { BusConnection, DBusError } from '../../dist/lib/client/index.js';

const NAME = 'org.kdbusfs.Example';
const PATH = '/org/kdbusfs/Example';
const [busPath] = process.argv.slice(2);

/** Resolves with the first value a subscription hands over, or 'timeout'. */
function first(subscribe, ms = 5000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    subscribe((v) => { clearTimeout(timer); resolve(v); });
  });
}

async function failure(p) {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return e instanceof DBusError ? { errorName: e.errorName, text: e.text } : { other: String(e) };
  }
}

const bus = await BusConnection.connect(busPath, { description: 'dbus-caller' });
const out = { uid: process.getuid(), unique: bus.hello() };
out.busId = bus.getId();
out.listNames = bus.listNames();
out.nameHasOwner = bus.nameHasOwner(NAME);
out.nobodyHasOwner = bus.nameHasOwner('org.kdbusfs.Nobody');
out.owner = bus.getNameOwner(NAME);
out.ownerUid = bus.getConnectionUnixUser(NAME);
out.ownerPid = bus.getConnectionUnixProcessID(NAME);
out.credentials = bus.getConnectionCredentials(NAME);
out.noOwner = await failure((async () => bus.getNameOwner('org.kdbusfs.Nobody'))());

const example = bus.proxy(NAME, PATH, NAME);
let echoedRule;
const echoed = first((got) => {
  echoedRule = `type='signal',sender='${NAME}',interface='${NAME}',member='Echoed'`;
  bus.addMatch(echoedRule, (m) => got({ body: m.body, sender: m.sender, path: m.path }));
});
// a rule for the same signal from another name: the kernel delivers the signal (the first rule matches), this handler must not see it
out.otherSenderSaw = 0;
bus.addMatch(`type='signal',sender='org.kdbusfs.Other',interface='${NAME}',member='Echoed'`, () => { out.otherSenderSaw++; });
out.echo = await example.call('Echo', 's', 'hi');
out.echoed = await echoed;
bus.removeMatch(echoedRule);
out.removedAgain = await failure((async () => bus.removeMatch(echoedRule))());
out.sum = String((await example.call('Sum', 'ai', [1, 2, 3, 2147483647, -10]))[0]);
out.sumEmpty = String((await example.call('Sum', 'ai', []))[0]);
out.count = await example.get('Count');

const changed = first((got) => example.onPropertiesChanged((c, inv) => got({ changed: c, invalidated: inv })));
await example.set('Greeting', 's', 'bonjour');
out.propertiesChanged = await changed;
out.greeting = await example.get('Greeting');
out.all = await example.getAll();
out.readOnly = await failure(example.set('Count', 'u', 7));
out.wrongType = await failure(example.set('Greeting', 'u', 7));
out.unknownMethod = await failure(example.call('Nope'));
out.badArgs = await failure(example.call('Echo', 'u', 1));
out.unknownObject = await failure(bus.proxy(NAME, '/nowhere', NAME).call('Echo', 's', 'x'));
out.noService = await failure(bus.proxy('org.kdbusfs.Nobody', PATH, NAME).call('Echo', 's', 'x'));

// past MEMFD_MIN_SIZE: the call's and the reply's bodies travel in sealed memfds
const big = 'kdbus'.repeat(1 << 18);
const bigReply = (await example.call('Echo', 's', big))[0];
out.bigEcho = { length: bigReply.length, same: bigReply === big };

const call = (path, iface, member, signature = '', body = []) =>
  bus.call({ destination: NAME, path, interface: iface, member, signature, body }).then((r) => r.body);
out.introspect = (await call(PATH, 'org.freedesktop.DBus.Introspectable', 'Introspect'))[0];
out.introspectRoot = (await call('/', 'org.freedesktop.DBus.Introspectable', 'Introspect'))[0];
out.ping = await call(PATH, 'org.freedesktop.DBus.Peer', 'Ping');
out.machineId = (await call('/', 'org.freedesktop.DBus.Peer', 'GetMachineId'))[0];
bus.close();
process.stdout.write(JSON.stringify(out, (_k, v) => (typeof v === 'bigint' ? String(v) : v)) + '\n');
