// A kdbusfs/client caller of test/clients/sdbus-types.c serving on sd-bus
// 2015, for dbus-sdbus-types.test.ts: `node types-caller.mjs BUS_PATH`
// exchanges every D-Bus type (a call's reply, a call's arguments, a
// property, a signal through a match rule), fds both ways and 1 MiB both
// ways; prints one JSON line of what differed ('' when nothing) and which
// bodies travelled in memfds.
import { BusConnection, readMemfd, sealedMemfd, Variant } from '../../dist/lib/client/index.js';
import { BIG, differences, IFACE, PATH, pattern, SIG, values } from './every-type.mjs';

const bus = await BusConnection.connect(process.argv[2], { description: 'types-caller' });
// what went through memfds, seen on the kdbus connection under the D-Bus layer
const memfds = { sent: [], received: [] };
const kcall = bus.kdbus.call.bind(bus.kdbus);
bus.kdbus.call = async (o) => {
  memfds.sent.push(o.memfds?.length ?? 0);
  const m = await kcall(o);
  memfds.received.push(m.memfds.length);
  return m;
};
const DEST = 'org.kdbusfs.CTypes';
const c = bus.proxy(DEST, PATH, IFACE);
const out = {};
out.values = differences(Variant, await c.call('Values'));
out.check = (await c.call('Check', SIG, ...values(Variant)))[0];
out.property = differences(Variant, await c.get('All'));
const signal = new Promise((resolve) => {
  const timer = setTimeout(() => resolve('no signal within 5 s'), 5000);
  c.on('Values', (args) => { clearTimeout(timer); resolve(differences(Variant, args)); });
});
await c.call('Emit');
out.signal = await signal;

const mine = sealedMemfd(Buffer.from('from node'));
out.readFd = (await bus.call({ destination: DEST, path: PATH, interface: IFACE, member: 'ReadFd', signature: 'h', body: [0], fds: [mine] })).body[0];
const made = await bus.call({ destination: DEST, path: PATH, interface: IFACE, member: 'MakeFd', signature: 's', body: ['from sd-bus?'] });
out.makeFd = { fds: made.fds.length, text: readMemfd(made.fds[made.body[0]]).toString() };

const big = (await c.call('Big', 'u', BIG))[0];
out.big = { length: big.length, same: big.equals(pattern(BIG)), inMemfd: memfds.received.at(-1) === 1 };
out.takeBig = { result: await c.call('TakeBig', 'ay', pattern(BIG)), inMemfd: memfds.sent.at(-1) === 1 };
bus.close();
process.stdout.write(JSON.stringify(out) + '\n');
