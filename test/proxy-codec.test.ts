// The proxy's pure parts, in process: dbus1 marshalling in both byte orders
// (every type, against bytes libdbus writes, refusals of malformed input),
// the translation to the kdbus/GVariant form and back, SASL as the clients of
// today run it, and the XML policy's decisions.
import t from 'tap';
import { CodecError } from '../lib/client/codec-error.js';
import { MessageFlag, MessageType, type DBusMessage } from '../lib/client/dbus-message.js';
import { fromKdbus } from '../lib/client/kdbus-envelope.js';
import { Variant } from '../lib/client/variant.js';
import { decodeDbus1, encodeDbus1 } from '../lib/proxy/dbus1-marshal.js';
import { SaslServer } from '../lib/proxy/sasl.js';
import { toKdbus } from '../lib/proxy/translate.js';
import { XmlPolicy } from '../lib/proxy/xml-policy.js';

// dbus-send --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.Hello, as libdbus 1.14 wrote it
const LIBDBUS_HELLO = '6c01000100000000010000006e00000001016f00150000002f6f72672f667265656465736b746f702f4442757300000006017300'
  + '140000006f72672e667265656465736b746f702e444275730000000002017300140000006f72672e667265656465736b746f702e4442757300'
  + '000000030173000500000048656c6c6f000000';

const everyType: DBusMessage = {
  type: MessageType.METHOD_CALL, flags: 0, cookie: 7, path: '/a/b', interface: 'org.x.Y', member: 'Every', destination: ':1.42',
  signature: 'ybnqiuxtdsogva{sv}as(iay)h', unixFds: 1,
  body: [
    200, true, -2, 65535, -3, 4294967295, -(2n ** 63n), 2n ** 64n - 1n, 1.5, 'ünï', '/obj/path', 'a{sv}',
    new Variant('u', 7), new Map([['one', new Variant('s', 'x')], ['two', new Variant('ai', [1, 2])]]),
    ['a', '', 'c'], [-1, Buffer.from([1, 2, 3])], 0,
  ],
};

t.test('libdbus\'s Hello decodes', async (t) => {
  const m = decodeDbus1(Buffer.from(LIBDBUS_HELLO, 'hex'));
  t.match(m, {
    type: MessageType.METHOD_CALL, cookie: 1, path: '/org/freedesktop/DBus', destination: 'org.freedesktop.DBus',
    interface: 'org.freedesktop.DBus', member: 'Hello', signature: '', body: [],
  });
});

t.test('every type round-trips in both byte orders, and through the kdbus form', async (t) => {
  for (const le of [true, false]) {
    const bytes = encodeDbus1(everyType, le);
    t.equal(bytes[0], le ? 0x6c : 0x42, `endianness byte ${le ? "'l'" : "'B'"}`);
    const back = decodeDbus1(bytes);
    t.same(back, everyType, `${le ? 'little' : 'big'}-endian: the same message back`);
  }
  // to kdbus (GVariant) and back: what a kdbus receiver decodes is the same message
  const copy = decodeDbus1(encodeDbus1(everyType, false));
  const out = toKdbus(copy, [99], { size: 64, nHash: 1 });
  t.equal(out.memfd, -1, 'a small body goes inline');
  t.same(out.send.fds, [99], 'the fd goes as KDBUS_ITEM_FDS');
  t.equal(out.send.expectReply, true, 'a call expects its reply');
  const payload = Buffer.concat(out.send.payload as Buffer[]);
  const received = fromKdbus(payload, { flags: 1n, srcId: 5n, dstId: 42n, cookie: 7n, cookieReply: 0n, fdCount: 1 }, ':1.42');
  t.same(received.body, everyType.body, 'the body after GVariant');
  t.equal(received.sender, ':1.5', 'the sender is the kernel\'s word');
  const again = decodeDbus1(encodeDbus1(received));
  t.same(again.body, everyType.body, 'and back to dbus1');
});

t.test('replies and signals never expect a reply on kdbus, whatever their flags', async (t) => {
  const reply: DBusMessage = { type: MessageType.METHOD_RETURN, flags: 0, cookie: 3, replyCookie: 9, destination: ':1.4', signature: 's', body: ['x'] };
  const out = toKdbus(reply, [], { size: 64, nHash: 1 });
  t.equal(out.send.expectReply, undefined);
  t.equal(out.send.cookieReply, 9n, 'the reply cookie is the call\'s serial');
  t.equal(reply.flags & MessageFlag.NO_REPLY_EXPECTED, MessageFlag.NO_REPLY_EXPECTED);
  const sig: DBusMessage = { type: MessageType.SIGNAL, flags: 0, cookie: 4, path: '/p', interface: 'a.b', member: 'C', signature: '', body: [] };
  const s = toKdbus(sig, [], { size: 64, nHash: 1 });
  t.equal(s.send.broadcast, true, 'a signal without destination is a broadcast');
  t.equal(s.send.bloom?.length, 64, 'with the bus\'s bloom filter');
  t.throws(() => toKdbus({ ...sig, unixFds: 2 }, [1], { size: 64, nHash: 1 }), CodecError, 'fds declared and fds given must agree');
});

t.test('malformed dbus1 input is refused, never read past', async (t) => {
  const good = encodeDbus1(everyType);
  const bad = (what: string, mutate: (b: Buffer) => Buffer): void => {
    t.throws(() => decodeDbus1(mutate(Buffer.from(good))), CodecError, what);
  };
  bad('truncated', b => b.subarray(0, b.length - 1));
  bad('endianness byte', b => { b[0] = 0x78; return b; });
  bad('protocol version 2', b => { b[3] = 2; return b; });
  bad('serial 0', b => { b.writeUInt32LE(0, 8); return b; });
  bad('a boolean 2', b => { const at = b.indexOf(Buffer.from([1, 0, 0, 0]), 16 + 112); b[at] = 2; return b; });
  bad('header fields longer than the message', b => { b.writeUInt32LE(0x7fff_fff0, 12); return b; });
  const sig: DBusMessage = { type: MessageType.SIGNAL, flags: 1, cookie: 1, path: '/p', interface: 'a.b', member: 'C', signature: 'as', body: [['x']] };
  const s = encodeDbus1(sig);
  const arrayLen = s.length - 2 - 4 - 4; // 'as' body: u32 array length, u32 string length, "x\0"
  const huge = Buffer.from(s);
  huge.writeUInt32LE(0xffff_fff0, arrayLen);
  t.throws(() => decodeDbus1(huge), CodecError, 'an array longer than the message');
  const sigWithoutMember = Buffer.from(encodeDbus1({ ...sig, member: undefined as unknown as string }, true));
  t.throws(() => decodeDbus1(sigWithoutMember), CodecError, 'a signal without a member');
});

t.test('SASL: the exchanges of sd-bus, libdbus and GDBus', async (t) => {
  const guid = 'a'.repeat(32);
  // sd-bus: everything at once, EXTERNAL without an identity (DATA), fds, BEGIN, then a message
  const sd = new SaslServer(1000, guid);
  const step = sd.feed(Buffer.from('\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nlXYZ'));
  t.equal(step.reply, `DATA\r\nOK ${guid}\r\nAGREE_UNIX_FD\r\n`);
  t.equal(step.begin?.rest.toString(), 'lXYZ', 'what follows BEGIN is the message stream');
  t.equal(sd.unixFd, true);
  // libdbus: the uid in hex, line by line
  const lib = new SaslServer(1000, guid);
  t.equal(lib.feed(Buffer.from('\0')).reply, '');
  t.equal(lib.feed(Buffer.from('AUTH EXTERNAL 31303030\r\n')).reply, `OK ${guid}\r\n`);
  t.equal(lib.feed(Buffer.from('BEGIN\r\n')).begin?.rest.length, 0);
  t.equal(lib.unixFd, false, 'no fds unless negotiated');
  // GDBus asks for the mechanisms first
  const g = new SaslServer(0, guid);
  t.equal(g.feed(Buffer.from('\0AUTH\r\n')).reply, 'REJECTED EXTERNAL\r\n', 'the one mechanism offered is EXTERNAL');
  t.equal(g.feed(Buffer.from('AUTH ANONYMOUS\r\n')).reply, 'REJECTED EXTERNAL\r\n', 'ANONYMOUS is refused');
  t.equal(g.feed(Buffer.from('AUTH EXTERNAL 31303030\r\n')).reply, 'REJECTED EXTERNAL\r\n', 'another uid (1000 for uid 0) is refused');
  t.equal(g.feed(Buffer.from('AUTH EXTERNAL 30\r\n')).reply, `OK ${guid}\r\n`, 'uid 0 for uid 0');
  // garbage
  t.ok(new SaslServer(0, guid).feed(Buffer.from('AUTH EXTERNAL\r\n')).fail, 'no NUL byte first');
  t.ok(new SaslServer(0, guid).feed(Buffer.from('\0BEGIN\r\n')).fail, 'BEGIN before authentication');
  const long = new SaslServer(0, guid);
  t.ok(long.feed(Buffer.concat([Buffer.from('\0'), Buffer.alloc(17 * 1024, 0x41)])).fail, 'a line without end longer than 16 KiB');
});

t.test('XML policy: dbus-daemon\'s order, last match wins, system-style defaults', async (t) => {
  const p = XmlPolicy.parse(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="org.kdbusfs.RootOnly"/>
  </policy>
  <policy context="default">
    <allow own_prefix="org.kdbusfs.Open"/>
    <allow send_destination="org.kdbusfs.Service"/>
    <deny send_destination="org.kdbusfs.Service" send_member="Secret"/>
    <deny receive_sender="org.kdbusfs.Noisy"/>
  </policy>
  <policy context="mandatory">
    <deny own="org.kdbusfs.Open.Closed"/>
  </policy>
</busconfig>`);
  const root = { pid: 0, uid: 0, gid: 0 };
  const user = { pid: 0, uid: 1000, gid: 1000 };
  t.equal(p.ownDenied(root, 'org.kdbusfs.RootOnly'), null, 'a user section allows root');
  t.match(p.ownDenied(user, 'org.kdbusfs.RootOnly'), /not allowed to own/, 'and nobody else: owning is denied by default');
  t.equal(p.ownDenied(user, 'org.kdbusfs.Open.Thing'), null, 'own_prefix');
  t.match(p.ownDenied(user, 'org.kdbusfs.Open.Closed'), /not allowed/, 'mandatory comes last and wins');
  const call = (member: string, destination = 'org.kdbusfs.Service'): DBusMessage => ({
    type: MessageType.METHOD_CALL, flags: 0, cookie: 1, path: '/', member, destination, signature: '', body: [],
  });
  t.equal(p.sendDenied(user, call('Open')), null, 'an allowed destination');
  t.match(p.sendDenied(user, call('Secret')), /Rejected send message/, 'the later deny of one member wins');
  t.match(p.sendDenied(user, call('Open', 'org.kdbusfs.Other')), /Rejected/, 'sending is denied by default');
  t.equal(p.sendDenied(user, call('Hello', 'org.freedesktop.DBus')), null, 'the driver is always reachable');
  const sig: DBusMessage = { type: MessageType.SIGNAL, flags: 1, cookie: 1, path: '/', interface: 'a.b', member: 'C', sender: ':1.9', signature: '', body: [] };
  t.equal(p.receiveDenied(user, sig, ['org.kdbusfs.Quiet']), null, 'receiving is allowed by default');
  t.ok(p.receiveDenied(user, sig, ['org.kdbusfs.Noisy']), 'a sender by one of its names');
  t.throws(() => XmlPolicy.parse('<policy/>'), /busconfig/, 'a file that is not a busconfig');
});

