// A kdbusfs/client caller of test/client/sdbus-service.c (a service linked
// against sd-bus 2015), for dbus-sdbus-interop.test.ts: `node
// sdbus-caller.mjs BUS_PATH` calls Double and Fire, reads the Name property
// and waits for the Fired signal through a match rule; prints one JSON line.
import { BusConnection } from '../../dist/lib/client/index.js';

const bus = await BusConnection.connect(process.argv[2], { description: 'sdbus-caller' });
const c = bus.proxy('org.kdbusfs.CService', '/org/kdbusfs/CTest', 'org.kdbusfs.CTest');
const out = {};
out.double = await c.call('Double', 'i', 21);
out.name = await c.get('Name');
out.all = await c.getAll();
const fired = new Promise((resolve) => {
  const timer = setTimeout(() => resolve('timeout'), 5000);
  c.on('Fired', (args, m) => { clearTimeout(timer); resolve({ args, sender: m.sender }); });
});
out.fire = await c.call('Fire', 's', 'from node');
out.fired = await fired;
out.owner = bus.getNameOwner('org.kdbusfs.CService');
out.introspect = (await bus.call({
  destination: 'org.kdbusfs.CService', path: '/org/kdbusfs/CTest',
  interface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect',
})).body[0];
bus.close();
process.stdout.write(JSON.stringify(out) + '\n');
