// Broadcast routing in process (ipc/kdbus/bus.c kdbus_bus_broadcast,
// match.c): a SIGNAL to KDBUS_DST_ID_BROADCAST goes to every ordinary
// connection, the sender excepted, one of whose match entries accepts it: a
// bloom mask whose bits the filter has (per generation), a sender id, a name
// the sender owns. Kernel notifications take the same way, matched by their
// own rules.
import t from 'tap';
import { ITEM, KDBUS_DST_ID_BROADCAST, KDBUS_MATCH_ID_ANY, MSG_SIGNAL } from '../../lib/abi/kdbus.js';
import { errno } from '../../lib/core/errors.js';
import { makeBus, rule } from './client.js';

const WORDS = 8; // the test bus's bloom: 64 bytes
/** A bloom filter or mask of WORDS words with the given first words set. */
const bits = (...first: bigint[]): bigint[] => [...first, ...Array<bigint>(WORDS - first.length).fill(0n)];
const signal = (filter: bigint[], generation = 0n) =>
  ({ dst: KDBUS_DST_ID_BROADCAST, flags: MSG_SIGNAL, bloom: { generation, words: filter } });

t.test('a signal reaches exactly the connections whose bloom masks it covers', async (t) => {
  const { connect } = makeBus(t);
  const sender = connect();
  const wantsBit0 = connect();
  const wantsBit1 = connect();
  const wantsBoth = connect();
  const noMatch = connect();
  t.equal(wantsBit0.matchAdd(1n, [rule.bloomMask(...bits(0x1n))]), 0);
  t.equal(wantsBit1.matchAdd(1n, [rule.bloomMask(...bits(0x2n))]), 0);
  t.equal(wantsBoth.matchAdd(1n, [rule.bloomMask(...bits(0x3n))]), 0);
  t.equal(sender.matchAdd(1n, [rule.bloomMask(...bits())]), 0, 'the sender matches everything');

  t.equal(sender.send({ ...signal(bits(0x1n)), payload: Buffer.from('bit 0') }), 0);
  t.equal(sender.send({ ...signal(bits(0x3n)), payload: Buffer.from('bits 0 and 1') }), 0);
  t.equal(sender.send({ ...signal(bits(0x0n, 0x1n)), payload: Buffer.from('word 1') }), 0);

  const got = (c: typeof sender) => c.drain().map((m) => m.payload.toString());
  t.same(got(wantsBit0), ['bit 0', 'bits 0 and 1']);
  t.same(got(wantsBit1), ['bits 0 and 1']);
  t.same(got(wantsBoth), ['bits 0 and 1'], 'a mask needs all its bits');
  t.same(got(noMatch), [], 'no match, no broadcast');
  t.same(got(sender), [], 'never to the sender itself');
});

t.test('the broadcast arrives with the sender and the broadcast address', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(b.matchAdd(5n, []), 0, 'an entry without rules matches every broadcast');
  t.equal(a.send({ ...signal(bits(0x10n)), cookie: 99n }), 0);
  const [m] = b.drain();
  t.equal(m?.srcId, a.id);
  t.equal(m?.dstId, KDBUS_DST_ID_BROADCAST);
  t.equal(m?.cookie, 99n);
  t.equal(m!.flags & MSG_SIGNAL, MSG_SIGNAL);
});

t.test('bloom generations: a newer filter is held against the mask of its generation', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  // two generations: generation 0 wants bit 0, generation 1 wants bit 1
  t.equal(b.matchAdd(1n, [rule.bloomMask(...bits(0x1n), ...bits(0x2n))]), 0);
  t.equal(a.send({ ...signal(bits(0x2n), 1n), payload: Buffer.from('gen 1, bit 1') }), 0);
  t.equal(a.send({ ...signal(bits(0x1n), 1n), payload: Buffer.from('gen 1, bit 0') }), 0);
  t.equal(a.send({ ...signal(bits(0x2n), 7n), payload: Buffer.from('gen 7, bit 1') }), 0);
  t.equal(a.send({ ...signal(bits(0x1n), 0n), payload: Buffer.from('gen 0, bit 0') }), 0);
  t.same(b.drain().map((m) => m.payload.toString()), ['gen 1, bit 1', 'gen 7, bit 1', 'gen 0, bit 0'],
    'generations past the last one use the last mask');
});

t.test('sender id and sender name rules', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const x = connect();
  const byId = connect();
  const byName = connect();
  t.equal(byId.matchAdd(1n, [rule.senderId(a.id)]), 0);
  t.equal(byName.matchAdd(1n, [rule.senderName('org.example.Sender')]), 0);

  t.equal(a.send({ ...signal(bits()), payload: Buffer.from('a, nameless') }), 0);
  t.equal(x.send({ ...signal(bits()), payload: Buffer.from('x, nameless') }), 0);
  t.equal(x.acquire('org.example.Sender').ret, 0);
  t.equal(x.send({ ...signal(bits()), payload: Buffer.from('x, named') }), 0);
  t.same(byId.drain().map((m) => m.payload.toString()), ['a, nameless']);
  t.same(byName.drain().map((m) => m.payload.toString()), ['x, named']);
});

t.test('MATCH_REMOVE stops delivery; rules all have to hold', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(b.matchAdd(3n, [rule.senderId(a.id), rule.bloomMask(...bits(0x4n))]), 0);
  t.equal(a.send({ ...signal(bits(0x1n)), payload: Buffer.from('right sender, wrong bits') }), 0);
  t.equal(a.send({ ...signal(bits(0x4n)), payload: Buffer.from('both hold') }), 0);
  t.same(b.drain().map((m) => m.payload.toString()), ['both hold']);
  t.equal(b.conn.matches.size, 1);
  t.equal(b.matchRemove(3n), 0);
  t.equal(b.conn.matches.size, 0);
  t.equal(b.matchRemove(3n), -errno.ENOENT, 'no entry with that cookie any more');
  t.equal(a.send(signal(bits(0x4n))), 0);
  t.same(b.drain(), [], 'nothing after the match is gone');
});

t.test('malformed broadcasts and unwanted unicast signals are refused', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  t.equal(a.send({ dst: KDBUS_DST_ID_BROADCAST, bloom: { generation: 0n, words: bits() } }), -errno.EBADMSG,
    'a broadcast must be a SIGNAL');
  t.equal(a.send({ dst: KDBUS_DST_ID_BROADCAST, flags: MSG_SIGNAL }), -errno.EBADMSG, 'a SIGNAL needs a bloom filter');
  t.equal(a.send({ ...signal(bits()), bloom: { generation: 0n, words: [0n] } }), -errno.EDOM,
    "a filter must have the bus's bloom size");
  t.equal(a.send({ ...signal(bits()), dst: b.id }), -errno.EPERM, 'a unicast signal needs a match at the receiver');
  t.equal(b.matchAdd(1n, [rule.senderId(a.id)]), 0);
  t.equal(a.send({ ...signal(bits()), dst: b.id }), 0);
  t.equal(b.drain().length, 1);
});

t.test('kernel notifications are broadcast to matching connections', async (t) => {
  const { connect } = makeBus(t);
  const watcher = connect();
  t.equal(watcher.matchAdd(1n, [rule.idChange(ITEM.ID_ADD, KDBUS_MATCH_ID_ANY)]), 0);
  t.equal(watcher.matchAdd(2n, [rule.nameChange(ITEM.NAME_ADD, KDBUS_MATCH_ID_ANY, KDBUS_MATCH_ID_ANY,
    'org.example.Watched')]), 0);
  const other = connect();
  t.equal(other.acquire('org.example.Ignored').ret, 0);
  t.equal(other.acquire('org.example.Watched').ret, 0);
  const seen = watcher.drain();
  t.same(seen.map((m) => m.notification), [ITEM.ID_ADD, ITEM.NAME_ADD]);
  t.same(seen.map((m) => m.srcId), [0n, 0n], 'from the kernel');
  t.equal(seen[0]!.items[0]!.data.readBigUInt64LE(0), other.id, 'ID_ADD names the new id');
  t.equal(seen[1]!.items[0]!.data.readBigUInt64LE(16), other.id, 'NAME_ADD names the new owner');
});
