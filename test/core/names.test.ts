// Name-addressed routing in process (ipc/kdbus/names.c, connection.c
// kdbus_conn_move_messages): a message sent to a well-known name goes to its
// current owner; one queued at an activator moves to the connection that
// takes the name, and back to the activator when that owner lets go; a
// queued waiter inherits the name. Messages sent by id never move.
import t from 'tap';
import { HELLO_ACCEPT_FD, HELLO_ACTIVATOR, ITEM, KDBUS_DST_ID_NAME, MSG_NO_AUTO_START, NAME_ACTIVATOR,
  NAME_ALLOW_REPLACEMENT, NAME_IN_QUEUE, NAME_QUEUE, NAME_REPLACE_EXISTING } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { item, str } from '../helpers.js';
import { makeBus, type TestBus } from './client.js';

const SVC = 'org.example.Service';
const toSvc = (text: string) => ({ dst: KDBUS_DST_ID_NAME, dstName: SVC, payload: Buffer.from(text) });
const texts = (ms: { payload: Buffer }[]) => ms.map((m) => m.payload.toString());

/** An activator for SVC: a privileged HELLO with ACTIVATOR and the name. */
const activatorOf = (b: TestBus) =>
  b.connect({ flags: HELLO_ACTIVATOR | HELLO_ACCEPT_FD, items: [item(ITEM.NAME, str(SVC))] });

t.test('a message queued at an activator moves to the connection that takes the name', async (t) => {
  const b = makeBus(t);
  const activator = activatorOf(b);
  const client = b.connect();
  t.equal(b.bus.names.lookup(SVC)?.owner, activator.conn, 'the activator holds the name');
  t.equal(b.bus.names.lookup(SVC)!.flags & NAME_ACTIVATOR, NAME_ACTIVATOR);

  t.equal(client.send(toSvc('first')), 0);
  t.equal(client.send(toSvc('second')), 0);
  t.equal(client.send({ ...toSvc('no auto-start'), flags: MSG_NO_AUTO_START }), -errno.EADDRNOTAVAIL,
    'NO_AUTO_START refuses a name only an activator has');
  t.equal(activator.conn.queue.count, 2, 'both wait at the activator');
  const wakeups = activator.file.wakeups;
  t.ok(wakeups >= 2, "the activator's poller is told (that is how the service gets started)");

  const service = b.connect();
  t.equal(service.acquire(SVC).ret, 0);
  t.equal(b.bus.names.lookup(SVC)?.owner, service.conn);
  t.equal(activator.conn.queue.count, 0, 'the activator keeps nothing');
  t.equal(activator.conn.pool.slicesInUse(), 0, "and frees the payloads' slices");
  const got = service.drain();
  t.same(texts(got), ['first', 'second'], 'the new owner gets them, in order');
  t.same(got.map((m) => m.srcId), [client.id, client.id], 'still from the client');
  t.same(got.map((m) => m.dstName), [SVC, SVC]);
});

t.test('when the owner lets go, what was sent to the name goes back to the activator, and on', async (t) => {
  const b = makeBus(t);
  const activator = activatorOf(b);
  const client = b.connect();
  const first = b.connect();
  t.equal(first.acquire(SVC).ret, 0);
  t.equal(client.send(toSvc('to the name')), 0);
  t.equal(client.send({ dst: first.id, payload: Buffer.from('to the id') }), 0);

  t.equal(first.release(SVC), 0);
  t.equal(b.bus.names.lookup(SVC)?.owner, activator.conn, 'the name is back with its activator');
  t.same(texts(first.drain()), ['to the id'], 'a message sent by id stays');
  t.equal(activator.conn.queue.count, 1, 'the one sent to the name went back');

  const second = b.connect();
  t.equal(second.acquire(SVC).ret, 0);
  t.same(texts(second.drain()), ['to the name'], 'and on to the next owner');
});

t.test('a waiter queued for a name inherits it, and what is sent afterwards', async (t) => {
  const b = makeBus(t);
  const client = b.connect();
  const owner = b.connect();
  const waiter = b.connect();
  t.equal(owner.acquire(SVC).ret, 0);
  const queued = waiter.acquire(SVC, NAME_QUEUE);
  t.equal(queued.ret, 0);
  t.equal(queued.flags & NAME_IN_QUEUE, NAME_IN_QUEUE, 'the kernel says it waits');
  t.equal(b.connect().acquire(SVC).ret, -errno.EEXIST, 'without QUEUE a taken name is EEXIST');

  t.equal(client.send(toSvc('to the owner')), 0);
  owner.close();
  t.equal(b.bus.names.lookup(SVC)?.owner, waiter.conn, 'the disconnect passed the name on');
  t.equal(client.send(toSvc('to the heir')), 0);
  t.same(texts(waiter.drain()), ['to the heir'], 'a message queued at an ordinary owner dies with it');
});

t.test('replacement: ALLOW_REPLACEMENT lets REPLACE_EXISTING take the name', async (t) => {
  const b = makeBus(t);
  const client = b.connect();
  const old = b.connect();
  const usurper = b.connect();
  t.equal(old.acquire(SVC, NAME_ALLOW_REPLACEMENT | NAME_QUEUE).ret, 0);
  t.equal(usurper.acquire(SVC, NAME_REPLACE_EXISTING).ret, 0);
  t.equal(b.bus.names.lookup(SVC)?.owner, usurper.conn);
  t.equal(client.send(toSvc('new owner')), 0);
  t.same(texts(usurper.drain()), ['new owner']);
  t.equal(usurper.release(SVC), 0);
  t.equal(b.bus.names.lookup(SVC)?.owner, old.conn, 'the old owner had queued: it gets the name back');
  t.equal(usurper.release(SVC), -errno.ESRCH, 'releasing a name one does not hold');
});
