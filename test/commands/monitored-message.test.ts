// What a monitor makes of a received kdbus message (lib/commands/
// monitored-message.ts) and how it prints it (lib/commands/message-dump.ts):
// D-Bus messages decoded and completed from the kdbus header, kernel
// notifications as the messages sd-bus made of them (serial 0xffffffff, from
// org.freedesktop.DBus, the wire bytes sd-bus sealed), the rest as kdbus
// items and hex; the text as busctl monitor printed it; MATCH filtering.
import t from 'tap';
import {
  KDBUS_DST_ID_BROADCAST, MSG_EXPECT_REPLY, MSG_SIGNAL, NAME_IN_QUEUE, PAYLOAD_DBUS,
} from '../../lib/abi/kdbus.js';
import { decodeMessage, encodeMessage, methodCall, MessageFlag, signal, type DBusMessage } from '../../lib/client/dbus-message.js';
import type { Message, Notification } from '../../lib/client/message.js';
import { Variant } from '../../lib/client/variant.js';
import { dumpObserved, hexDump } from '../../lib/commands/message-dump.js';
import { observe, SYNTHETIC_SERIAL } from '../../lib/commands/monitored-message.js';
import { observedJson } from '../../lib/commands/message-json.js';
import { toJson } from '../../lib/commands/json-output.js';
import { parseMatches, passes } from '../../lib/commands/monitor.js';

function kmsg(o: Partial<Message>): Message {
  return {
    flags: 0n, priority: 0n, dstId: KDBUS_DST_ID_BROADCAST, srcId: 0n, payloadType: 0n, cookie: 0n, cookieReply: 0n,
    timeoutNs: 0n, expectReply: false, signal: false, noAutoStart: false, payload: [], memfds: [], fds: [], metadata: {},
    incompleteFds: false, offset: 0, peeked: false, free: () => undefined, ...o,
  };
}

const fromKernel = (n: Notification, o: Partial<Message> = {}): Message => kmsg({ notification: n, ...o });

/** A D-Bus message as a sender puts it on kdbus (header and body as two PAYLOAD parts). */
function sent(m: DBusMessage, src: bigint, o: Partial<Message> = {}): Message {
  const wire = encodeMessage(m);
  const expectReply = (m.flags & MessageFlag.NO_REPLY_EXPECTED) === 0;
  return kmsg({
    srcId: src, payloadType: PAYLOAD_DBUS, cookie: BigInt(m.cookie), payload: [wire.subarray(0, 24), wire.subarray(24)],
    flags: (expectReply ? MSG_EXPECT_REPLY : 0n) | (m.type === 4 ? MSG_SIGNAL : 0n), expectReply, ...o,
  });
}

t.test('kernel notifications become sd-bus\'s messages', async (t) => {
  const add = observe(fromKernel({ type: 'id-add', id: 7n, flags: 0n }), ':1.1');
  if (add.kind !== 'dbus') throw new Error('not a D-Bus message');
  t.match(add.message, {
    type: 4, cookie: SYNTHETIC_SERIAL, sender: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged', signature: 'sss', body: [':1.7', '', ':1.7'],
  }, 'ID_ADD: NameOwnerChanged(":1.7", "", ":1.7")');
  const wire = decodeMessage(add.wire);
  t.equal(wire.sender, undefined, 'its serialization has no sender field (sd-bus set it aside)');
  t.equal(wire.cookie, 0xffffffff, 'serial 0xffffffff');
  t.equal(wire.flags, MessageFlag.NO_REPLY_EXPECTED);

  const gone = observe(fromKernel({ type: 'id-remove', id: 7n, flags: 0n }), ':1.1');
  t.match(gone, { kind: 'dbus', message: { body: [':1.7', ':1.7', ''] } }, 'ID_REMOVE');
  const change = observe(fromKernel({ type: 'name-change', name: 'a.b', oldId: 3n, oldFlags: 0n, newId: 4n, newFlags: 0n }), ':1.1');
  t.match(change, { kind: 'dbus', message: { body: ['a.b', ':1.3', ':1.4'] } }, 'NAME_CHANGE');
  const queued = observe(fromKernel({ type: 'name-change', name: 'a.b', oldId: 3n, oldFlags: NAME_IN_QUEUE, newId: 4n, newFlags: NAME_IN_QUEUE }), ':1.1');
  t.match(queued, { kind: 'kdbus', why: /queue or activator/ }, 'a change between queued owners: no message (sd-bus made none)');
  const toQueue = observe(fromKernel({ type: 'name-change', name: 'a.b', oldId: 3n, oldFlags: 0n, newId: 4n, newFlags: NAME_IN_QUEUE }), ':1.1');
  t.match(toQueue, { kind: 'dbus', message: { body: ['a.b', ':1.3', ''] } }, 'the owner left for a queued one: the name lost its owner');

  const dead = observe(fromKernel({ type: 'reply-dead', cookie: 9n }, { dstId: 5n, cookieReply: 9n }), ':1.1');
  if (dead.kind !== 'dbus') throw new Error('not a D-Bus message');
  t.match(dead.message, {
    type: 3, replyCookie: 9, destination: ':1.5', errorName: 'org.freedesktop.DBus.Error.NoReply', body: ['Method call peer died'],
  }, 'REPLY_DEAD: a NoReply error to the caller');
  t.match(observe(fromKernel({ type: 'reply-timeout', cookie: 9n }, { dstId: 5n }), ':1.1'),
    { kind: 'dbus', message: { body: ['Method call timed out'] } }, 'REPLY_TIMEOUT');
  t.match(observe(fromKernel({ type: 'reply-dead', cookie: 0n }, { dstId: 5n }), ':1.1'), { kind: 'kdbus', why: /no message can say/ },
    'a reply notification no message can carry (cookie 0): kept as kdbus');
});

t.test('D-Bus messages: decoded, sender and destination the kernel\'s', async (t) => {
  const call = { ...methodCall({ destination: 'org.x.Y', path: '/p', interface: 'org.x.Y', member: 'Do', signature: 's', body: ['hi'] }), cookie: 3 };
  const o = observe(sent(call, 12n, { dstId: 0n, dstName: 'org.x.Y' }), ':1.1');
  if (o.kind !== 'dbus') throw new Error('not a D-Bus message');
  t.match(o.message, { sender: ':1.12', destination: 'org.x.Y', member: 'Do', body: ['hi'] });
  t.same(o.wire, encodeMessage(call), 'the wire bytes: the parts joined');
  const wrongCookie = observe(sent(call, 12n, { cookie: 4n }), ':1.1');
  t.match(wrongCookie, { kind: 'kdbus', why: /serial 3 is not the kdbus cookie 4/ }, 'a malformed message stays kdbus, saying why');
  const other = observe(kmsg({ srcId: 2n, payloadType: 0x1234n, payload: [Buffer.from('x')] }), ':1.1');
  t.match(other, { kind: 'kdbus', why: /payload type 0x1234, not D-Bus/ });
});

t.test('the text, as busctl monitor printed it', async (t) => {
  const call = { ...methodCall({ destination: ':1.4', path: '/p', interface: 'org.x.Y', member: 'Do', signature: 'a{sv}(id)ayb',
    body: [new Map([['k', new Variant('as', ['a', 'b'])]]), [-5, 2.5], Buffer.from([1, 2]), true] }), cookie: 3 };
  const o = observe(sent(call, 12n, {
    dstId: 4n,
    metadata: {
      timestamp: { seqnum: 9n, monotonicNs: 2_000_000n, realtimeNs: 3_000_000n },
      creds: { uid: 0, euid: 0, suid: 0, fsuid: 0, gid: 5, egid: 5, sgid: 5, fsgid: 5 },
      pids: { pid: 100, tid: 101, ppid: 1 }, pidComm: 'node', description: 'd',
      ownedNames: [{ name: 'org.x.Z', flags: 0n }],
      caps: { lastCap: 40, effective: 0b1011n | (1n << 21n), permitted: 0n, inheritable: 0n, bounding: 0n },
    },
  }), ':1.1');
  t.equal(dumpObserved(o), [
    '\u2023 Type=method_call  Endian=l  Flags=0  Version=2  Priority=0 Cookie=3',
    '  Sender=:1.12  Destination=:1.4  Path=/p  Interface=org.x.Y  Member=Do',
    '  Monotonic=2000  Realtime=3000  SequenceNumber=9',
    '  PID=100  TID=101',
    '  UID=0  EUID=0  SUID=0  FSUID=0  GID=5  EGID=5  SGID=5  FSGID=5',
    '  Comm=node',
    '  Description=d',
    '  UniqueName=:1.12  WellKnownNames=org.x.Z',
    '  EffectiveCapabilities=cap_chown cap_dac_override cap_fowner ',
    '          cap_sys_admin',
    '  PermittedCapabilities=',
    '  InheritableCapabilities=',
    '  BoundingCapabilities=',
    '  MESSAGE "a{sv}(id)ayb" {',
    '          ARRAY "{sv}" {',
    '                  DICT_ENTRY "sv" {',
    '                          STRING "k";',
    '                          VARIANT "as" {',
    '                                  ARRAY "s" {',
    '                                          STRING "a";',
    '                                          STRING "b";',
    '                                  };',
    '                          };',
    '                  };',
    '          };',
    '          STRUCT "id" {',
    '                  INT32 -5;',
    '                  DOUBLE 2.5;',
    '          };',
    '          ARRAY "y" {',
    '                  BYTE 1;',
    '                  BYTE 2;',
    '          };',
    '          BOOLEAN true;',
    '  };',
    '', '',
  ].join('\n'));
  t.match(dumpObserved(o, true), /\x1b\[1;39mmethod_call\x1b\[0m/, 'colour when asked');
  const err = observe(fromKernel({ type: 'reply-dead', cookie: 9n }, { dstId: 5n }), ':1.1');
  t.match(dumpObserved(err), /Cookie=-1 {2}ReplyCookie=9\n {2}Sender=org\.freedesktop\.DBus {2}Destination=:1\.5\n {2}ErrorName=org\.freedesktop\.DBus\.Error\.NoReply {2}ErrorMessage="Method call peer died"\n/,
    'an error: its name and message');
  const raw = observe(kmsg({ srcId: 2n, dstId: 3n, payloadType: 7n, cookie: 1n, payload: [Buffer.from('0123456789abcdefXY')] }), ':1.1');
  t.match(dumpObserved(raw), /Type=kdbus {2}PayloadType=0x7 .*\n {2}SrcId=2 {2}DstId=3\n {2}Why=payload type 0x7, not D-Bus\n(.|\n)* {2}PAYLOAD 18 bytes \{\n {10}00000000 {2}30 31/, 'kdbus: header, why, hex');
  t.equal(hexDump(Buffer.from('AB\0'), ''), `00000000  ${'41 42 00'.padEnd(47)}  |AB.|\n`, 'hex columns as wide for a short line');
});

t.test('what the cgroup tells (Unit, UserUnit, Slice, Session, OwnerUID), where busctl monitor printed it', async (t) => {
  const sig = { ...signal({ path: '/p', interface: 'org.x.Y', member: 'S' }), cookie: 4 };
  const from = (cgroup: string, root?: string): string[] => dumpObserved(observe(sent(sig, 12n, {
    metadata: { creds: { uid: 1000, euid: 1000, suid: 1000, fsuid: 1000, gid: 100, egid: 100, sgid: 100, fsgid: 100 }, cgroup },
  }), ':1.1'), false, root).split('\n').slice(2, 5);
  t.same(from('/user.slice/user-1000.slice/session-4.scope'), [
    '  UID=1000  EUID=1000  SUID=1000  FSUID=1000  OwnerUID=1000  GID=100  EGID=100  SGID=100  FSGID=100',
    '  CGroup=/user.slice/user-1000.slice/session-4.scope  Unit=session-4.scope  Slice=user-1000.slice  Session=4',
    '  UniqueName=:1.12  WellKnownNames=',
  ], 'a login session: its scope, slice, session and the owner of the user slice');
  t.same(from('/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service')[1],
    '  CGroup=/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service  Unit=user@1000.service  ' +
    'UserUnit=foo.service  Slice=user-1000.slice', 'a user manager\'s unit: the user unit below it');
  t.same(from('/system.slice/dbus.service'), [
    '  UID=1000  EUID=1000  SUID=1000  FSUID=1000  GID=100  EGID=100  SGID=100  FSGID=100',
    '  CGroup=/system.slice/dbus.service  Unit=dbus.service  Slice=system.slice',
    '  UniqueName=:1.12  WellKnownNames=',
  ], 'a system service: its unit and slice, no owner');
  t.same(from('/machine.slice/machine-x.scope/system.slice/dbus.service', '/machine.slice/machine-x.scope')[1],
    '  CGroup=/machine.slice/machine-x.scope/system.slice/dbus.service  Unit=dbus.service  Slice=system.slice',
    'taken relative to the cgroup root (a container\'s)');
  t.same(from('/')[1], '  CGroup=/', 'the root cgroup tells nothing more');
});

t.test('--json: the same facts, numbers as numbers', async (t) => {
  const call = { ...methodCall({ destination: ':1.4', path: '/p', member: 'Do', signature: 'tv', body: [2n ** 63n, new Variant('s', 'x')] }), cookie: 3 };
  const line = toJson(observedJson(observe(sent(call, 12n, { dstId: 4n, metadata: { timestamp: { seqnum: 1n, monotonicNs: 5000n, realtimeNs: 7000n } } }), ':1.1')));
  t.equal(line, '{"kind":"dbus","synthetic":false,"type":"method_call","flags":0,"priority":0,"cookie":3,"sender":":1.12",'
    + '"destination":":1.4","path":"/p","member":"Do","size":' + encodeMessage(call).length + ','
    + '"timestamp":{"monotonicUs":5,"realtimeUs":7,"seqnum":1},"metadata":{},'
    + '"body":{"type":"tv","data":[9223372036854775808,{"type":"s","data":"x"}]}}', 'a call, 64-bit values exact');
  const raw = JSON.parse(toJson(observedJson(observe(kmsg({ srcId: 2n, payloadType: 7n, payload: [Buffer.from('hi')] }), ':1.1'))));
  t.match(raw, { kind: 'kdbus', why: /payload type 0x7/, payloadType: 7, srcId: 2, payload: '6869' }, 'a raw message, its payload in hex');
});

t.test('MATCH arguments', async (t) => {
  const sig = observe(sent({ ...signal({ path: '/p', interface: 'org.x.Y', member: 'Hey', signature: 's', body: ['v'] }), cookie: 2 }, 12n,
    { metadata: { ownedNames: [{ name: 'org.x.Owner', flags: 0n }] } }), ':1.1');
  t.ok(passes([], sig), 'no rules: everything');
  t.ok(passes(parseMatches(["type='signal',member='Hey'"]), sig), 'a matching rule');
  t.notOk(passes(parseMatches(["member='Other'"]), sig), 'a rule that does not match');
  t.ok(passes(parseMatches(["member='Other'", "arg0='v'"]), sig), 'any of several rules');
  t.ok(passes(parseMatches(['org.x.Owner']), sig), 'a bare name: sender=, matching a name the sender owned');
  t.ok(passes(parseMatches([':1.12']), sig), 'a unique name');
  t.notOk(passes(parseMatches(['org.x.Nobody']), sig), 'a name it did not own');
  t.notOk(passes(parseMatches(["type='signal'"]), observe(kmsg({ payloadType: 7n }), ':1.1')), 'kdbus messages only without rules');
  t.throws(() => parseMatches(["eavesdrop='true'"]), /eavesdrop/, 'rules are checked');
});
