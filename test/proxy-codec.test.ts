// The proxy's pure parts, in process: dbus1 marshalling in both byte orders
// (every type, against bytes libdbus writes, refusals of malformed input),
// the translation to the kdbus/GVariant form and back, SASL as the clients of
// today run it, the XML policy's decisions and its kdbus equivalent.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CodecError } from '../lib/client/codec-error.js';
import { MessageFlag, MessageType, type DBusMessage } from '../lib/client/dbus-message.js';
import { fromKdbus } from '../lib/client/kdbus-envelope.js';
import { Variant } from '../lib/client/variant.js';
import { decodeDbus1, encodeDbus1 } from '../lib/proxy/dbus1-marshal.js';
import { SaslServer } from '../lib/proxy/sasl.js';
import { toKdbus } from '../lib/proxy/translate.js';
import { kdbusPolicyOf } from '../lib/proxy/kdbus-policy.js';
import { busOwnerOf } from '../lib/proxy/bus-proxy.js';
import { RateLimitedLog } from '../lib/proxy/rate-limited-log.js';
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


const bc = (body: string): string => `<busconfig>${body}</busconfig>`;
const user = { pid: 0, uid: 1000, gid: 1000 };
const msg = (type: MessageType, extra: Partial<DBusMessage> = {}): DBusMessage => ({
  type, flags: 0, cookie: 1, path: '/', interface: 'org.kdbusfs.I', member: 'M', destination: 'org.kdbusfs.Service',
  sender: ':1.5', signature: '', body: [], ...(type !== MessageType.METHOD_CALL && type !== MessageType.SIGNAL && { replyCookie: 9 }), ...extra,
});

t.test('XML policy: at_console sections after user sections, before mandatory', async (t) => {
  const xml = bc(`
    <policy context="default"><deny own="org.kdbusfs.Seat"/></policy>
    <policy at_console="true"><allow own="org.kdbusfs.Seat"/><allow own="org.kdbusfs.Both"/></policy>
    <policy at_console="false"><deny own="org.kdbusfs.Both"/></policy>
    <policy user="1000"><deny own="org.kdbusfs.Both"/><allow own="org.kdbusfs.Local"/></policy>
    <policy context="mandatory"><deny own="org.kdbusfs.Local"/></policy>`);
  const atSeat = XmlPolicy.parse(xml, { atConsole: uid => uid === 1000 });
  const remote = XmlPolicy.parse(xml, { atConsole: () => false });
  t.equal(atSeat.ownDenied(user, 'org.kdbusfs.Seat'), null, 'at_console="true" applies to a user at the console');
  t.ok(remote.ownDenied(user, 'org.kdbusfs.Seat'), 'and not to one elsewhere');
  t.equal(atSeat.ownDenied(user, 'org.kdbusfs.Both'), null, 'at_console sections come after user sections (the user\'s deny is overridden)');
  t.ok(remote.ownDenied(user, 'org.kdbusfs.Both'), 'at_console="false" applies to a user elsewhere');
  t.ok(atSeat.ownDenied(user, 'org.kdbusfs.Local'), 'mandatory still comes last');
  t.throws(() => XmlPolicy.parse(bc('<policy at_console="maybe"><allow own="a.b"/></policy>')), /at_console="true\|false"/,
    'an at_console that is neither true nor false is refused');
});

t.test('XML policy: send_/receive_requested_reply on replies, which kdbus only ever delivers when requested', async (t) => {
  const p = XmlPolicy.parse(bc(`<policy context="default">
    <allow send_destination="*"/>
    <deny send_type="method_return"/>
    <deny send_type="error" send_requested_reply="true"/>
    <deny receive_type="method_return" receive_requested_reply="false"/>
    <deny receive_type="error" receive_requested_reply="true"/>
  </policy>`));
  t.equal(p.sendDenied(user, msg(MessageType.METHOD_RETURN)), null, 'a deny (requested_reply="false" by default) skips a requested reply');
  t.match(p.sendDenied(user, msg(MessageType.ERROR, { errorName: 'a.b.E' })), /Rejected send message/, 'send_requested_reply="true": denied');
  t.equal(p.receiveDenied(user, msg(MessageType.METHOD_RETURN), []), null, 'receive_requested_reply="false": skips it');
  t.ok(p.receiveDenied(user, msg(MessageType.ERROR, { errorName: 'a.b.E' }), []), 'receive_requested_reply="true": denied');
  const q = XmlPolicy.parse(bc(`<policy context="default">
    <allow send_destination="*"/>
    <deny send_type="method_return" send_requested_reply="true"/>
    <allow send_type="method_return" send_requested_reply="false" send_interface="org.kdbusfs.I"/>
    <deny send_requested_reply="true" send_type="method_call" send_member="M"/>
  </policy>`));
  t.equal(q.sendDenied(user, msg(MessageType.METHOD_RETURN)), null, 'a later allow (any requested_reply) lets a requested reply through again');
  t.ok(q.sendDenied(user, msg(MessageType.METHOD_RETURN, { interface: 'org.kdbusfs.Other' })),
    'send_requested_reply="true" denies a requested reply no later rule allows');
  t.ok(q.sendDenied(user, msg(MessageType.METHOD_CALL)), 'requested_reply means nothing for a call: the deny applies');
});

t.test('XML policy: eavesdrop, with no eavesdropping through the proxy', async (t) => {
  const p = XmlPolicy.parse(bc(`<policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <deny send_member="Watched" eavesdrop="true"/>
    <deny receive_member="Watched" eavesdrop="true"/>
    <deny receive_member="Hidden" eavesdrop="false"/>
  </policy>`));
  t.equal(p.sendDenied(user, msg(MessageType.METHOD_CALL)), null, 'allow eavesdrop="true" also allows direct sends');
  t.equal(p.sendDenied(user, msg(MessageType.METHOD_CALL, { member: 'Watched' })), null, 'deny eavesdrop="true" only denies eavesdropping');
  t.equal(p.receiveDenied(user, msg(MessageType.SIGNAL, { member: 'Watched' }), []), null, 'on the receive side too');
  t.ok(p.receiveDenied(user, msg(MessageType.SIGNAL, { member: 'Hidden' }), []), 'deny eavesdrop="false" applies always');
  t.throws(() => XmlPolicy.parse(bc('<policy context="default"><allow eavesdrop="yes"/></policy>')), /eavesdrop must be "true" or "false"/);
  t.throws(() => XmlPolicy.parse(bc('<policy context="default"><allow own="a.b" eavesdrop="true"/></policy>')), /mixed|eavesdrop/,
    'eavesdrop on an own rule is refused');
});

t.test('XML policy: attributes the proxy cannot apply refuse the file, saying which', async (t) => {
  t.throws(() => XmlPolicy.parse(bc('<policy context="default"><allow send_destination="a.b" send_broadcast="true"/></policy>')),
    /send_broadcast is not supported/);
  t.throws(() => XmlPolicy.parse(bc('<policy context="default"><deny receive_sender="a.b" max_fds="0"/></policy>')), /max_fds is not supported/);
  t.throws(() => XmlPolicy.parse(bc('<policy context="default"><allow send_destination="a.b" receive_sender="c.d"/></policy>')), /mixed/);
  t.throws(() => XmlPolicy.parse(bc('<policy><allow own="a.b"/></policy>')), /a policy needs/);
  t.doesNotThrow(() => XmlPolicy.parse(bc('<policy context="default"><allow user="*"/><deny own="a.b" log="true"/></policy>')),
    'connection rules and log= are read');
});

t.test('XML policy: who may connect, as dbus-daemon\'s bus_policy_allow_unix_user', async (t) => {
  // a user database of its own: alice (1000) is also in wheel (10) by /etc/group; bob (1001); carol (1002)
  const etc = mkdtempSync(join(tmpdir(), 'kdbusfs-xml-etc-'));
  writeFileSync(join(etc, 'passwd'), 'root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\ncarol:x:1002:1002::/:/bin/sh\n');
  writeFileSync(join(etc, 'group'), 'root:x:0:\nwheel:x:10:alice\nalice:x:1000:\nbob:x:1001:\ncarol:x:1002:\n');
  const load = (body: string): XmlPolicy => XmlPolicy.parse(bc(body), { etc });
  const allowed = (p: XmlPolicy, uid: number, owner = 0): boolean => p.connectDenied(uid, owner) === null;

  const none = load('<policy context="default"><allow own="*"/></policy>');
  t.ok(allowed(none, 0), 'no connection rule: the bus\'s owner may connect');
  t.notOk(allowed(none, 1000), 'and nobody else (dbus-daemon\'s default: the user it runs as)');
  t.ok(allowed(none, 1000, 1000), 'the owner is the bus\'s, not root: a user\'s bus lets that user in');
  t.notOk(allowed(none, 0, 1000), 'and not root');
  t.match(none.connectDenied(1000, 0), /uid 1000 may not connect/, 'the reason names the uid');

  const star = load('<policy context="default"><allow user="*"/></policy>');
  t.ok(allowed(star, 1001), 'user="*": everyone (the Debian system.conf rule)');
  t.match(star.connectDenied(4242, 0), /not in the user database/, 'a uid the user database does not know is refused even so (dbus-daemon cannot get its groups)');

  const byName = load('<policy context="default"><allow user="alice"/></policy>');
  t.ok(allowed(byName, 1000), 'user by name');
  t.notOk(allowed(byName, 1001), 'only that user');
  t.ok(allowed(load('<policy context="default"><allow user="1001"/></policy>'), 1001), 'user by number');
  t.notOk(allowed(load('<policy context="default"><allow user="4242"/></policy>'), 0, 1), 'a number the database does not know matches nobody (dbus-daemon drops the rule)');
  t.notOk(allowed(load('<policy context="default"><allow user="mallory"/></policy>'), 1000), 'an unknown name matches nobody');

  const byGroup = load('<policy context="default"><allow group="wheel"/></policy>');
  t.ok(allowed(byGroup, 1000), 'group by name: a member by /etc/group');
  t.notOk(allowed(byGroup, 1001), 'a user not in the group');
  t.ok(allowed(load('<policy context="default"><allow group="1001"/></policy>'), 1001), 'group by number: the user\'s primary group');
  t.ok(allowed(load('<policy context="default"><allow group="*"/></policy>'), 1002), 'group="*": everyone');

  const order = load(`<policy context="default"><allow user="*"/><deny group="wheel"/><allow user="alice"/><deny user="bob"/></policy>`);
  t.ok(allowed(order, 1000), 'the last matching rule decides: alice allowed again after her group was denied');
  t.notOk(allowed(order, 1001), 'a deny after an allow');
  t.ok(allowed(order, 1002), 'carol: only the first rule matched');
  const denyOwner = load('<policy context="default"><deny user="root"/></policy>');
  t.notOk(allowed(denyOwner, 0), 'a rule can refuse even the bus\'s owner');

  const mandatory = load(`<policy context="mandatory"><deny user="carol"/></policy>
    <policy context="default"><allow user="*"/></policy>
    <policy context="default"><allow user="carol"/></policy>`);
  t.notOk(allowed(mandatory, 1002), 'mandatory comes after every default section, whatever the file\'s order');
  t.ok(allowed(mandatory, 1001), 'and only for whom it matches');
  const consoleRule = load('<policy context="default"><allow user="*"/></policy><policy at_console="true"><deny user="*"/></policy>');
  t.ok(allowed(consoleRule, 1000), 'a connection rule in an at_console section is read and never used, as dbus-daemon');
  t.throws(() => load('<policy user="alice"><allow user="bob"/></policy>'), /cannot be per-user/, 'in a user section it refuses the file, as dbus-daemon');
  t.throws(() => load('<policy group="wheel"><deny group="*"/></policy>'), /cannot be per-group/, 'in a group section too');
  t.throws(() => load('<policy context="default"><allow user="alice" group="wheel"/></policy>'), /user and group in one rule/);
});

t.test('the bus\'s owner: the UID- of its name, the creator\'s euid kdbus checked', async (t) => {
  t.equal(busOwnerOf('0-system'), 0);
  t.equal(busOwnerOf('1000-user'), 1000);
  t.throws(() => busOwnerOf('system'), /no UID- prefix/);
});

t.test('RateLimitedLog: a burst per window, then a count of what was left out', async (t) => {
  let now = 0;
  const lines: string[] = [];
  const log = new RateLimitedLog(l => lines.push(l), 3, 1000, () => now);
  for (let i = 0; i < 10; i++) log.line(`refused ${i}`);
  t.same(lines, ['refused 0', 'refused 1', 'refused 2'], 'three lines in the first window');
  now = 999;
  log.line('late');
  t.equal(lines.length, 3, 'still the first window');
  now = 1000;
  log.line('next');
  t.same(lines.slice(3), ['8 similar lines suppressed', 'next'], 'the next window says how many went unlogged');
  now = 5000;
  log.line('quiet');
  t.same(lines.slice(5), ['quiet'], 'nothing suppressed: no count line');
});

t.test('XML policy onto kdbus policy: what kdbus can hold for kdbus-native clients', async (t) => {
  const p = XmlPolicy.parse(bc(`
    <policy context="default">
      <allow own="*"/>
      <allow send_destination="*"/>
      <allow own="org.kdbusfs.Open"/>
      <allow send_destination="org.kdbusfs.Talk"/>
      <allow send_destination="org.kdbusfs.Narrow" send_member="One"/>
      <allow send_destination="org.kdbusfs.Partly"/>
      <deny send_destination="org.kdbusfs.Partly" send_member="Reset"/>
      <allow own_prefix="org.kdbusfs.Tree"/>
      <deny own="org.kdbusfs.Tree.Closed"/>
      <allow own_prefix="org.kdbusfs.Grove"/>
      <allow own="org.kdbusfs.NotForBob"/>
    </policy>
    <policy user="0"><allow own="org.kdbusfs.Root"/></policy>
    <policy user="1000"><deny own="org.kdbusfs.NotForBob"/></policy>
    <policy group="100"><allow send_destination="org.kdbusfs.Staff"/></policy>
    <policy at_console="true"><allow own="org.kdbusfs.Console"/></policy>
    <policy context="mandatory"><deny send_destination="org.kdbusfs.Talk" send_type="method_return"/></policy>`), { atConsole: () => false });
  const entries = new Map(kdbusPolicyOf(p).map(e => [e.name, e.grants]));
  t.same(entries.get('org.kdbusfs.Open'), [{ world: true, access: 'own' }], 'own= in the default context: OWN for the world');
  t.same(entries.get('org.kdbusfs.Talk'), [{ world: true, access: 'own' }],
    'own="*" makes every named name ownable (a deny of replies does not touch TALK)');
  t.same(entries.get('org.kdbusfs.Grove'), [{ world: true, access: 'own' }], 'own_prefix: the name itself');
  t.same(entries.get('org.kdbusfs.Grove.*'), [{ world: true, access: 'own' }], 'and one level below, as a kdbus wildcard');
  t.same(entries.get('org.kdbusfs.Tree'), [{ world: true, access: 'own' }], 'own_prefix with a deny below it: the name itself');
  t.same(entries.get('org.kdbusfs.Tree.*'), [{ world: true, access: 'talk' }],
    'but below it only TALK (send_destination="*"): OWN would reach the denied name');
  t.same(entries.get('org.kdbusfs.Root'), [{ world: true, access: 'own' }], 'own="*" reaches org.kdbusfs.Root for everyone already');
  t.same(entries.get('org.kdbusfs.NotForBob'), [{ world: true, access: 'talk' }],
    'a user section denying it: no OWN, kdbus cannot grant "everyone but 1000"');

  const strict = XmlPolicy.parse(bc(`
    <policy context="default">
      <allow send_destination="org.kdbusfs.Talk"/>
      <allow send_destination="org.kdbusfs.Narrow" send_member="One"/>
      <allow send_destination="org.kdbusfs.Partly"/>
      <deny send_destination="org.kdbusfs.Partly" send_member="Reset"/>
    </policy>
    <policy user="0"><allow own="org.kdbusfs.Root"/><allow send_destination="org.kdbusfs.Partly"/></policy>
    <policy group="100"><allow send_destination="org.kdbusfs.Staff"/><allow own="org.kdbusfs.Talk"/></policy>
    <policy at_console="true"><allow own="org.kdbusfs.Console"/></policy>`), { atConsole: () => true });
  const s = new Map(kdbusPolicyOf(strict).map(e => [e.name, e.grants]));
  t.same(s.get('org.kdbusfs.Talk'), [{ world: true, access: 'talk' }, { group: 100, access: 'own' }],
    'send_destination: TALK for the world, OWN for a group allowed to own it');
  t.same(s.get('org.kdbusfs.Root'), [{ user: 0, access: 'own' }], 'a user section: that uid');
  t.same(s.get('org.kdbusfs.Staff'), [{ group: 100, access: 'talk' }], 'a group section: that gid');
  t.notOk(s.has('org.kdbusfs.Narrow'), 'a send rule narrowed to a member is not TALK');
  t.same(s.get('org.kdbusfs.Partly'), [{ user: 0, access: 'talk' }],
    'a member denied to the world: no TALK for it, but a later user section allowing the whole name');
  t.notOk(s.has('org.kdbusfs.Console'), 'at_console sections stay in the proxy (who is at the console changes)');
});
