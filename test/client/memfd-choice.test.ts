// In process: which D-Bus bodies BusConnection puts into a sealed memfd, as
// sd-bus 2015 chose (bus-message.c, message seal: a body part larger than
// MEMFD_MIN_SIZE, 512 KiB, of a message with a destination; broadcasts
// always as PAYLOAD_VEC), and what the memfd holds. The kdbus connection
// under it is a fake that records the SEND options.
import { EventEmitter } from 'node:events';
import t from 'tap';
import { BusConnection, MEMFD_MIN_SIZE } from '../../lib/client/bus-connection.js';
import type { SendOptions } from '../../lib/client/connection.js';
import { memfdSeals, readMemfd, SEALS_KDBUS } from '../../lib/client/memfd.js';

interface Sent { o: SendOptions; memfd?: { seals: number; data: Buffer } }

function fakeBus(): { bus: BusConnection; sent: Sent[] } {
  const sent: Sent[] = [];
  // the memfd is closed once SEND returned: look at it while "sending"
  const record = (o: SendOptions): void => {
    const m = o.memfds?.[0];
    sent.push({ o, ...(m && { memfd: { seals: memfdSeals(m.fd), data: readMemfd(m.fd, 0, m.size) } }) });
  };
  const kdbus = Object.assign(new EventEmitter(), {
    id: 5n, bloom: { size: 64, nHash: 8 },
    send: (o: SendOptions) => { record(o); return 1n; },
    call: (o: SendOptions) => { record(o); return new Promise(() => undefined); },
  });
  const Ctor = BusConnection as unknown as new (k: typeof kdbus) => BusConnection;
  return { bus: new Ctor(kdbus), sent };
}

const bytes = (n: number): Buffer => Buffer.alloc(n, 0x5a);
const call = (bus: BusConnection, n: number): void => {
  void bus.call({ destination: ':1.7', path: '/p', interface: 'a.b', member: 'M', signature: 'ay', body: [bytes(n)] });
};

t.test('bodies past 512 KiB with a destination go in a sealed memfd, others inline', async (t) => {
  const { bus, sent } = fakeBus();
  call(bus, MEMFD_MIN_SIZE);
  t.notOk(sent[0]!.o.memfds, 'a call body of exactly 512 KiB: PAYLOAD_VEC');
  t.equal((sent[0]!.o.payload as Buffer[])[1]!.length, MEMFD_MIN_SIZE, 'the body as the second vec');
  call(bus, MEMFD_MIN_SIZE + 1);
  t.equal(sent[1]!.o.memfds?.length, 1, 'one byte more: PAYLOAD_MEMFD');
  t.equal((sent[1]!.o.payload as Buffer[]).length, 1, 'the header alone stays a vec');
  t.equal(sent[1]!.memfd!.seals, SEALS_KDBUS, 'the memfd is sealed as kdbus requires');
  t.ok(sent[1]!.memfd!.data.equals(bytes(MEMFD_MIN_SIZE + 1)), 'and holds the body');
  bus.emitSignal({ path: '/p', interface: 'a.b', member: 'S', signature: 'ay', body: [bytes(MEMFD_MIN_SIZE * 2)] });
  t.ok(sent[2]!.o.broadcast && !sent[2]!.o.memfds, 'a 1 MiB broadcast signal (no destination): PAYLOAD_VEC');
  bus.emitSignal({ path: '/p', interface: 'a.b', member: 'S', signature: 'ay', body: [bytes(MEMFD_MIN_SIZE * 2)], destination: ':1.7' });
  t.equal(sent[3]!.o.memfds?.length, 1, 'the same signal unicast to a destination: PAYLOAD_MEMFD');
});
