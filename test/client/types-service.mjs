// The Node side of org.kdbusfs.Types (see test/clients/sdbus-types.c), for
// dbus-sdbus-types.test.ts: `node types-service.mjs BUS_PATH NAME` owns NAME
// and exports /org/kdbusfs/Types until SIGTERM. Prints "ready", then a line
// "memfd received N" or "memfd sent N" for every message whose body went
// through memfds.
import { closeSync } from 'node:fs';
import { BusConnection, readMemfd, ReplyWithFds, sealedMemfd, Variant } from '../../dist/lib/client/index.js';
import { differences, IFACE, PATH, pattern, SIG, values } from './every-type.mjs';

const bus = await BusConnection.connect(process.argv[2], { description: 'types-service' });
bus.kdbus.on('message', (m) => { if (m.memfds.length) console.log(`memfd received ${m.memfds.length}`); });
const ksend = bus.kdbus.send.bind(bus.kdbus);
bus.kdbus.send = (o) => {
  if (o.memfds?.length) console.log(`memfd sent ${o.memfds.length}`);
  return ksend(o);
};
const fdOf = (index, m) => m.fds[index];
const closeAll = (m) => { for (const fd of m.fds) closeSync(fd); };
const object = bus.export(PATH, {
  [IFACE]: {
    methods: {
      Values: { out: SIG, call: () => values(Variant) },
      Check: { in: SIG, out: 's', call: (args) => differences(Variant, args) },
      Emit: { call: () => { object.emit(IFACE, 'Values', ...values(Variant)); } },
      ReadFd: {
        in: 'h', out: 's',
        call: ([i], m) => {
          try { return readMemfd(fdOf(i, m)).toString(); } finally { closeAll(m); }
        },
      },
      MakeFd: { in: 's', out: 'h', call: ([text]) => new ReplyWithFds(0, [sealedMemfd(Buffer.from(text))]) },
      Big: { in: 'u', out: 'ay', call: ([n]) => pattern(n) },
      TakeBig: { in: 'ay', out: 'ub', call: ([b]) => [b.length, b.equals(pattern(b.length))] },
    },
    properties: { All: { type: `(${SIG})`, get: () => values(Variant) } },
    signals: { Values: SIG },
  },
});
bus.requestName(process.argv[3], 4 /* DO_NOT_QUEUE */);
console.log('ready');
process.on('SIGTERM', () => { bus.close(); process.exit(0); });
