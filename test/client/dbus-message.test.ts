// Protocol-2 D-Bus messages (lib/client/dbus-message.ts) against the bytes
// the real sd-bus of February 2015 sealed for the same messages
// (test/client/sdbus-reference/vectors.c prints them), round trips, and
// refusals of malformed messages.
import t from 'tap';
import { CodecError } from '../../lib/client/codec-error.js';
import {
  decodeMessage, encodeMessage, encodeMessageParts, errorReply, errorText, methodCall, methodReturn,
  MessageFlag, MessageType, readFixedHeader, signal, type DBusMessage,
} from '../../lib/client/dbus-message.js';
import { Variant } from '../../lib/client/variant.js';
import { echoCall, echoedSignal } from './fixtures/example-messages.js';

const SDBUS = {
  callEcho: '6c01000206000000010000008100000001000000000000002f6f72672f6b6462757366732f4578616d706c6500006f0003000000000000004563686f0000730002000000000000006f72672e6b6462757366732e4578616d706c65000073000006000000000000006f72672e6b6462757366732e4578616d706c6500007300000800000000000000730000671f2f4e6e7c0000000000000068656c6c6f00',
  callEmpty: '6c01000200000000020000002100000001000000000000002f00006f00000000030000000000000050696e670000730c1f00000000000000',
  callEveryType: '6c0100027d000000030000006900000001000000000000002f612f6200006f00030000000000000045766572790000730200000000000000612e62000073000006000000000000003a312e3432000073080000000000000079626e716975787464736f6776617b73767d617328696179290000670f202e406400000000000000c801feffffff00006079feff00286bee000efad5feffffff000008c5a1d8ccf9000000000000f83f74657874002f6f626a2f7061746800617b73767d0000000007000000007500006f6e650000000000310000730400000074776f00000000000100000002000000006169040d240000010000000102036e6e463d372d',
  callFd: '6c01000204000000040000004200000001000000000000002f00006f00000000030000000000000046640000730000000800000000000000680000670000000009000000000000000100000000750c1d2c3e00000000000000000000',
  callFixedTail: '6c010002050000000b0000003000000001000000000000002f00006f0000000003000000000000004669786564000073080000000000000075790000670c202d0100000002',
  returnSum: '6c02010208000000050000002f0000000500000000000000010000000075000006000000000000003a312e37000073000800000000000000780000670e1f2c000600000000000000',
  error: '6c0301020800000006000000580000000500000000000000010000000075000006000000000000003a312e370000730004000000000000006f72672e6b6462757366732e4572726f722e4661696c656400007300000000000800000000000000730000670e1f43546e6f206c75636b00',
  signalEchoed: '6c04010206000000070000006800000001000000000000002f6f72672f6b6462757366732f4578616d706c6500006f0002000000000000006f72672e6b6462757366732e4578616d706c65000073000003000000000000004563686f6564000073000000000000000800000000000000730000671f3e516468656c6c6f00',
  signalNameOwnerChanged: '6c04010214000000080000007200000001000000000000002f6f72672f667265656465736b746f702f4442757300006f02000000000000006f72672e667265656465736b746f702e444275730000730003000000000000004e616d654f776e65724368616e67656400007300000000000800000000000000737373000067203f5b6e0000000000006f72672e666f6f2e42617200003a312e35000d0c',
};

const echo = echoCall;
const received = { ...echo, sender: ':1.7' };

const messages: [keyof typeof SDBUS, DBusMessage][] = [
  ['callEcho', echo],
  ['callEmpty', { ...methodCall({ path: '/', member: 'Ping' }), cookie: 2 }],
  ['callEveryType', {
    ...methodCall({
      destination: ':1.42', path: '/a/b', interface: 'a.b', member: 'Every',
      signature: 'ybnqiuxtdsogva{sv}as(iay)',
      body: [200, true, -2, 65535, -100000, 4000000000, -5000000000n, 18000000000000000000n, 1.5, 'text',
        '/obj/path', 'a{sv}', new Variant('u', 7),
        new Map([['one', new Variant('s', '1')], ['two', new Variant('ai', [1, 2])]]), [],
        [1, Buffer.from([1, 2, 3])]],
    }),
    cookie: 3,
  }],
  ['callFd', { ...methodCall({ path: '/', member: 'Fd', signature: 'h', body: [0] }), cookie: 4, unixFds: 1 }],
  ['callFixedTail', { ...methodCall({ path: '/', member: 'Fixed', signature: 'uy', body: [1, 2] }), cookie: 11 }],
  ['returnSum', { ...methodReturn(received, { signature: 'x', body: [6n] }), cookie: 5 }],
  ['error', { ...errorReply(received, 'org.kdbusfs.Error.Failed', 'no luck'), cookie: 6 }],
  ['signalEchoed', echoedSignal],
  ['signalNameOwnerChanged', {
    ...signal({
      path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged',
      signature: 'sss', body: ['org.foo.Bar', '', ':1.5'],
    }),
    cookie: 8,
  }],
];

t.test('messages encode to the bytes sd-bus 2015 sealed, and decode from them', async t => {
  for (const [name, m] of messages) {
    t.equal(encodeMessage(m).toString('hex'), SDBUS[name], `${name}: same bytes as sd-bus`);
    t.strictSame(decodeMessage(Buffer.from(SDBUS[name], 'hex')), m, `${name}: sd-bus's bytes decode to the message`);
  }
});

t.test('builders set what sd-bus set', async t => {
  const ret = methodReturn(received);
  t.equal(ret.type, MessageType.METHOD_RETURN);
  t.equal(ret.replyCookie, 1, 'a reply answers the call\'s cookie');
  t.equal(ret.destination, ':1.7', 'and goes to its sender');
  t.equal(ret.flags, MessageFlag.NO_REPLY_EXPECTED);
  const err = errorReply(received, 'org.x.Error.Y', 'why');
  t.equal(errorText(err), 'why');
  t.equal(errorText(errorReply(received, 'org.x.Error.Y')), undefined);
  t.equal(signal({ path: '/', interface: 'a.b', member: 'C' }).flags, MessageFlag.NO_REPLY_EXPECTED);
  t.throws(() => methodReturn(ret), /only a method call/);
  t.throws(() => encodeMessage(methodCall({ path: '/', member: 'X' })), /cookie 0/, 'a message needs its cookie');
});

t.test('header and body come apart at an 8-byte boundary', async t => {
  const { header, body } = encodeMessageParts(echo);
  t.equal(header.length % 8, 0);
  t.equal(body.toString(), 'hello\0');
  const h = readFixedHeader(header);
  t.equal(h.messageSize, header.length + body.length);
  t.equal(h.bodySize, 6);
  t.equal(h.cookie, 1);
  t.equal(h.version, 2);
});

t.test('round trips', async t => {
  const big = Buffer.alloc(1 << 20, 7);
  const cases: DBusMessage[] = [
    { ...methodCall({ path: '/p', member: 'Big', signature: 'ay', body: [big] }), cookie: 0xffff_ffff },
    { ...methodCall({ path: '/p', member: 'M', flags: MessageFlag.NO_AUTO_START | MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION,
      signature: 'a{sv}(ai)', body: [new Map([['k', new Variant('(sv)', ['x', new Variant('b', false)])]]), [[]]] }),
      cookie: 9, sender: ':1.1', unixFds: 3 },
    { ...signal({ path: '/', interface: 'a.b', member: 'S', destination: 'a.well.known' }), cookie: 10 },
  ];
  for (const m of cases) t.strictSame(decodeMessage(encodeMessage(m)), m, `${m.member} round-trips`);
});

t.test('malformed messages are refused', async t => {
  const good = Buffer.from(SDBUS.callEcho, 'hex');
  const edit = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  const fieldsEnd = 16 + good.readUInt32LE(12);
  const bad: [string, Buffer, RegExp][] = [
    ['shorter than the fixed header', good.subarray(0, 15), /shorter than the fixed header/],
    ['truncated', good.subarray(0, good.length - 1), /header says/],
    ['trailing byte', Buffer.concat([good, Buffer.from([0])]), /header says/],
    ['big-endian', edit(b => { b[0] = 0x42; }), /endianness/],
    ['version 1', edit(b => { b[3] = 1; }), /protocol version 1/],
    ['type 0', edit(b => { b[1] = 0; }), /unknown message type 0/],
    ['type 5', edit(b => { b[1] = 5; }), /unknown message type 5/],
    ['serial 0', edit(b => b.writeUInt32LE(0, 8)), /serial 0/],
    ['body size lies', edit(b => b.writeUInt32LE(5, 4)), /header says/],
    ['fields size lies', edit(b => b.writeUInt32LE(b.readUInt32LE(12) - 1, 12)), /malformed|header says/],
    ['nonzero padding', edit(b => { b[fieldsEnd] = 1; }), /padding byte/],
    ['field offsets corrupt', edit(b => { b[fieldsEnd - 1] = 0xf0; }), /malformed GVariant/],
    ['path field as a string', edit(b => { b[16 + 8 + '/org/kdbusfs/Example'.length + 2] = 0x73; }), /has type 's', not 'o'/],
    ['body not a string', edit(b => { b[b.length - 1] = 0x21; }), /not NUL-terminated/],
  ];
  for (const [what, data, why] of bad) t.throws(() => decodeMessage(data), why, what);

  const call = { ...methodCall({ path: '/', member: 'M' }), cookie: 1 };
  const refusedToEncode: [string, DBusMessage, RegExp][] = [
    ['call without member', { ...call, member: undefined }, /needs a path and a member/],
    ['signal without interface', { ...call, type: MessageType.SIGNAL }, /needs a path, an interface and a member/],
    ['return without reply serial', { ...call, type: MessageType.METHOD_RETURN }, /needs a reply serial/],
    ['error without name', { ...call, type: MessageType.ERROR, replyCookie: 1 }, /reply serial and an error name/],
    ['local path', { ...call, path: '/org/freedesktop/DBus/Local' }, /DBus.Local/],
    ['bad member', { ...call, member: '1x' }, /invalid member name/],
    ['bad destination', { ...call, destination: 'nodots' }, /invalid destination/],
    ['bad signature', { ...call, signature: 'a', body: [] }, /invalid signature/],
    ['body/signature mismatch', { ...call, signature: 's', body: [1] }, /cannot encode 1/],
    ['flags', { ...call, flags: 256 }, /do not fit a byte/],
  ];
  for (const [what, m, why] of refusedToEncode) t.throws(() => encodeMessage(m), why, what);
  t.throws(() => decodeMessage(Buffer.alloc(0)), CodecError);
});
