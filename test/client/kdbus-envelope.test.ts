// D-Bus messages in kdbus messages (lib/client/kdbus-envelope.ts): the
// kdbus_msg fields and items the real sd-bus of February 2015 built for the
// same messages (bus_message_setup_kmsg; test/client/sdbus-reference/vectors.c
// prints "flags dst_id cookie cookie_reply|timeout has-timeout item-types"),
// and the checks and completions of a received one (bus_kernel_make_message).
import t from 'tap';
import { ITEM, KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, MSG_EXPECT_REPLY, MSG_NO_AUTO_START } from '../../lib/abi/kdbus.js';
import { DEFAULT_BLOOM_PARAMETERS, signalBloomFilter } from '../../lib/client/bloom.js';
import {
  encodeMessage, MessageFlag, methodCall, methodReturn, signal, type DBusMessage,
} from '../../lib/client/dbus-message.js';
import { fromKdbus, kdbusEnvelope, type ReceivedKdbusMessage } from '../../lib/client/kdbus-envelope.js';
import { Variant } from '../../lib/client/variant.js';
import { echoCall, echoedSignal } from './fixtures/example-messages.js';

const SDBUS_KMSG = {
  callEcho: '1 0 1 2715606303707 1 9 1 1',
  callEveryType: '1 2a 3 2715606303707 1 1 1',
  callFd: '1 ffffffffffffffff 4 2715606303707 1 1 1 4',
  returnSum: '0 7 5 1 1 1 1',
  signalEchoed: '4 ffffffffffffffff 7 0 0 1 1 7',
};

const echo = echoCall;
const messages: [keyof typeof SDBUS_KMSG, DBusMessage][] = [
  ['callEcho', echo],
  ['callEveryType', { ...methodCall({ destination: ':1.42', path: '/a/b', member: 'Every', signature: 'v', body: [new Variant('u', 7)] }), cookie: 3 }],
  ['callFd', { ...methodCall({ path: '/', member: 'Fd', signature: 'h', body: [0] }), cookie: 4, unixFds: 1 }],
  ['returnSum', { ...methodReturn({ ...echo, sender: ':1.7' }, { signature: 'x', body: [6n] }), cookie: 5 }],
  ['signalEchoed', echoedSignal],
];

t.test('envelopes carry what sd-bus put into kdbus_msg', async t => {
  for (const [name, m] of messages) {
    const [flags, dstId, cookie, cookieReply, hasTimeout, ...items] = SDBUS_KMSG[name].split(' ');
    const e = kdbusEnvelope(m, DEFAULT_BLOOM_PARAMETERS);
    t.equal(e.flags, BigInt(`0x${flags}`), `${name}: flags`);
    t.equal(e.dstId, BigInt(`0x${dstId}`), `${name}: dst_id`);
    t.equal(e.cookie, BigInt(cookie!), `${name}: cookie`);
    if (e.flags & MSG_EXPECT_REPLY) {
      t.equal(hasTimeout, '1', `${name}: sd-bus set a timeout`);
      t.equal(e.cookieReply, 0n, `${name}: the union is the sender's timeout`);
    } else {
      t.equal(e.cookieReply, BigInt(cookieReply!), `${name}: cookie_reply`);
    }
    const types = items.map(Number);
    t.equal(e.dstName !== undefined, types.includes(ITEM.DST_NAME), `${name}: destination name item`);
    t.equal(e.bloomFilter !== undefined, types.includes(ITEM.BLOOM_FILTER), `${name}: bloom filter item`);
    t.equal(e.fdCount > 0, types.includes(ITEM.FDS), `${name}: fds item`);
    t.strictSame(Buffer.concat([e.header, e.body]), encodeMessage(m), `${name}: payload`);
  }
  const sig = messages[4]![1];
  t.strictSame(kdbusEnvelope(sig, DEFAULT_BLOOM_PARAMETERS).bloomFilter, signalBloomFilter(sig, DEFAULT_BLOOM_PARAMETERS).bytes);
  t.equal(kdbusEnvelope(echo, DEFAULT_BLOOM_PARAMETERS).dstName, 'org.kdbusfs.Example');
  t.equal(kdbusEnvelope(echo, DEFAULT_BLOOM_PARAMETERS).dstId, KDBUS_DST_ID_NAME);
  t.equal(kdbusEnvelope({ ...echo, flags: MessageFlag.NO_AUTO_START }, DEFAULT_BLOOM_PARAMETERS).flags,
    MSG_EXPECT_REPLY | MSG_NO_AUTO_START);
});

t.test('received messages are checked against and completed from the kdbus header', async t => {
  const payload = encodeMessage(echo);
  const k: ReceivedKdbusMessage = {
    flags: MSG_EXPECT_REPLY, srcId: 7n, dstId: KDBUS_DST_ID_NAME, dstName: 'org.kdbusfs.Example',
    cookie: 1n, cookieReply: 0n, fdCount: 0,
  };
  const got = fromKdbus(payload, k, ':1.9');
  t.equal(got.sender, ':1.7', 'sender from src_id');
  t.equal(got.destination, 'org.kdbusfs.Example', 'destination from the name item');
  t.equal(fromKdbus(payload, { ...k, dstName: undefined }, ':1.9').destination, ':1.9', 'a name without its item is ours');
  t.equal(fromKdbus(payload, { ...k, dstName: undefined, dstId: 9n }, ':1.1').destination, ':1.9');
  t.equal(fromKdbus(payload, { ...k, dstName: undefined, dstId: KDBUS_DST_ID_BROADCAST }, ':1.1').destination, undefined);
  t.equal(fromKdbus(payload, { ...k, srcId: 0n }, ':1.1').sender, 'org.freedesktop.DBus', 'the kernel is the driver');
  t.throws(() => fromKdbus(payload, { ...k, cookie: 2n }, ':1.9'), /not the kdbus cookie/);
  t.throws(() => fromKdbus(payload, { ...k, flags: 0n }, ':1.9'), /EXPECT_REPLY/);
  t.throws(() => fromKdbus(payload, { ...k, flags: MSG_EXPECT_REPLY | MSG_NO_AUTO_START }, ':1.9'), /NO_AUTO_START/);
  t.throws(() => fromKdbus(payload, { ...k, fdCount: 1 }, ':1.9'), /declares 0 fds, 1 came/);
  const reply = encodeMessage({ ...methodReturn({ ...echo, sender: ':1.9' }), cookie: 2 });
  const r = { ...k, flags: 0n, cookie: 2n, cookieReply: 1n, dstName: undefined, dstId: 9n };
  t.equal(fromKdbus(reply, r, ':1.9').replyCookie, 1);
  t.throws(() => fromKdbus(reply, { ...r, cookieReply: 3n }, ':1.9'), /not the kdbus reply cookie 3/);
});
