// D-Bus match rules (lib/client/match-rule.ts): parsing with D-Bus's quoting,
// matching messages, and the kdbus matches they become, compared with the
// KDBUS_CMD_MATCH_ADD commands the real sd-bus of February 2015 issued for the
// same rules on a bus with its default bloom parameters (64 bytes, 8 hashes;
// test/client/sdbus-reference/vectors.c prints them as "RULE#N ITEMS-HEX").
import t from 'tap';
import { ITEM, KDBUS_MATCH_ID_ANY } from '../../lib/abi/kdbus.js';
import { DEFAULT_BLOOM_PARAMETERS } from '../../lib/client/bloom.js';
import { uniqueNameId } from '../../lib/client/dbus-names.js';
import { MessageType, methodCall, signal, type DBusMessage } from '../../lib/client/dbus-message.js';
import {
  formatMatchRule, kdbusMatch, matchesMessage, parseMatchRule, type KdbusMatch, type NotificationMatch,
} from '../../lib/client/match-rule.js';

const SDBUS_MATCHES = `
type='signal',sender='org.kdbusfs.Example',interface='org.kdbusfs.Example',member='Echoed',path='/org/kdbusfs/Example'#0 500000000000000008000000000000006000000020020000010000004054200010040000004000000000000004000000800000000900200100000040000100801000880000008008000040000104004024000000000000000e000000000000006f72672e6b6462757366732e4578616d706c650000000000
sender=':1.42',path_namespace='/org/kdbusfs',arg0='hello'#0 18000000000000000d000000000000002a000000000000005000000000000000080000000000000002000000000000000010000000000000200000800000000000000022020000000802000002000081000004000000000000000800000000000000000002010000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#0 5000000000000000080000000000000020000000000001048000100000008010000020000000000000020000000020000004000000000000000001001000000000000002000400000400000000000000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#1 30000000000000000080000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#2 30000000000000000180000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#3 30000000000000000280000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#4 20000000000000000380000000000000ffffffffffffffff0000000000000000
arg1path='/s/',arg2namespace='p.q',destination=':1.3'#5 20000000000000000480000000000000ffffffffffffffff0000000000000000
path_namespace='/'#0 
path_namespace='/'#1 30000000000000000080000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
path_namespace='/'#2 30000000000000000180000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
path_namespace='/'#3 30000000000000000280000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
path_namespace='/'#4 20000000000000000380000000000000ffffffffffffffff0000000000000000
path_namespace='/'#5 20000000000000000480000000000000ffffffffffffffff0000000000000000
type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.foo.Bar'#0 50000000000000000800000000000000020000000000000400000004401000205004000000000000000000800004100200000020022020210000000000000080110000400a0002000002000401000082
type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.foo.Bar'#1 3c000000000000000080000000000000ffffffffffffffff0000000000000000ffffffffffffffff00000000000000006f72672e666f6f2e4261720000000000
type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.foo.Bar'#2 3c000000000000000180000000000000ffffffffffffffff0000000000000000ffffffffffffffff00000000000000006f72672e666f6f2e4261720000000000
type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.foo.Bar'#3 3c000000000000000280000000000000ffffffffffffffff0000000000000000ffffffffffffffff00000000000000006f72672e666f6f2e4261720000000000
type='signal',member='NameOwnerChanged',arg0=':1.5',arg1=':1.5',arg2=''#0 50000000000000000800000000000000000a4400000408002000001042100020180440000000000021000000000410042000100002202005000000000000009012000040000002c00000400000000080
type='signal',member='NameOwnerChanged',arg0=':1.5',arg1=':1.5',arg2=''#1 2000000000000000048000000000000005000000000000000000000000000000
type='signal',interface='org.freedesktop.DBus'#0 50000000000000000800000000000000020000000000000000000004401000001004000000000000000000000000000200000000000020210000000000000080110000000a0000000000000400000000
type='signal',interface='org.freedesktop.DBus'#1 30000000000000000080000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
type='signal',interface='org.freedesktop.DBus'#2 30000000000000000180000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
type='signal',interface='org.freedesktop.DBus'#3 30000000000000000280000000000000ffffffffffffffff0000000000000000ffffffffffffffff0000000000000000
type='signal',interface='org.freedesktop.DBus'#4 20000000000000000380000000000000ffffffffffffffff0000000000000000
type='signal',interface='org.freedesktop.DBus'#5 20000000000000000480000000000000ffffffffffffffff0000000000000000
`;

interface RawItem { type: number; payload: Buffer }

function items(data: Buffer): RawItem[] {
  const out: RawItem[] = [];
  for (let off = 0; off < data.length;) {
    const size = Number(data.readBigUInt64LE(off));
    out.push({ type: Number(data.readBigUInt64LE(off + 8)), payload: data.subarray(off + 16, off + size) });
    off += (size + 7) & ~7;
  }
  return out;
}

const cString = (b: Buffer): string => b.subarray(0, b.indexOf(0)).toString();

/** sd-bus's commands for one rule, read into the shape kdbusMatch returns. */
function sdbusMatch(commands: Buffer[]): KdbusMatch {
  const result: KdbusMatch = { rule: {}, notifications: [] };
  for (const item of items(commands[0]!)) {
    if (item.type === ITEM.ID) result.rule.senderId = item.payload.readBigUInt64LE(0);
    else if (item.type === ITEM.BLOOM_MASK) result.rule.bloomMask = Buffer.from(item.payload);
    else if (item.type === ITEM.NAME) result.rule.senderName = cString(item.payload);
    else throw new Error(`unexpected item ${item.type}`);
  }
  for (const command of commands.slice(1)) {
    const [item] = items(command);
    const p = item!.payload;
    if (item!.type === ITEM.ID_ADD || item!.type === ITEM.ID_REMOVE) {
      result.notifications.push({ itemType: item!.type, id: p.readBigUInt64LE(0) });
    } else {
      const n: NotificationMatch = {
        itemType: item!.type as typeof ITEM.NAME_ADD, oldId: p.readBigUInt64LE(0), newId: p.readBigUInt64LE(16),
      };
      if (p.length > 32) n.name = cString(p.subarray(32));
      result.notifications.push(n);
    }
  }
  return result;
}

t.test('rules become the kdbus matches sd-bus installed', async t => {
  const byRule = new Map<string, Buffer[]>();
  for (const line of SDBUS_MATCHES.trim().split('\n')) {
    const m = /^(.*)#(\d+) ?([0-9a-f]*)$/.exec(line)!;
    if (!byRule.has(m[1]!)) byRule.set(m[1]!, []);
    byRule.get(m[1]!)![Number(m[2])] = Buffer.from(m[3]!, 'hex');
  }
  t.equal(byRule.size, 7);
  for (const [rule, commands] of byRule) {
    t.strictSame(kdbusMatch(parseMatchRule(rule), DEFAULT_BLOOM_PARAMETERS), sdbusMatch(commands), rule);
  }
});

t.test('kdbus matches for sender kinds and NameOwnerChanged forms', async t => {
  const match = (rule: string): KdbusMatch => kdbusMatch(parseMatchRule(rule), DEFAULT_BLOOM_PARAMETERS);
  t.strictSame(match("sender=':1.9'").rule, { senderId: 9n }, 'a unique sender is an id');
  t.strictSame(match("sender='a.b'").rule, { senderName: 'a.b' }, 'a well-known sender is a name');
  t.strictSame(match("sender='a.b'").notifications, [], 'no notification comes from a.b');
  t.strictSame(match("destination=':1.1'").rule, {}, 'destination is not in the bloom');
  t.strictSame(match("member='NameOwnerChanged',arg0='a.b',arg1=':1.2',arg2=':1.3'").notifications,
    [{ itemType: ITEM.NAME_CHANGE, oldId: 2n, newId: 3n, name: 'a.b' }], 'an owner change only');
  t.strictSame(match("member='NameOwnerChanged',arg0=':1.4',arg1='',arg2=':1.4'").notifications,
    [{ itemType: ITEM.ID_ADD, id: 4n }], 'a new unique name');
  t.strictSame(match("member='NameOwnerChanged',arg0=':1.4',arg2=':1.5'").notifications, [],
    'a unique name never passes to another');
  t.strictSame(match("member='NameOwnerChanged',arg1='a.b'").notifications, [], 'owners are unique names');
  t.strictSame(match("member='NameOwnerChanged',arg1=':1.x'").notifications, [], 'sd-bus skipped an unreadable old owner');
  t.throws(() => match("member='NameOwnerChanged',arg2=':1.x'"), /not a kdbus unique name/,
    'and failed on an unreadable new owner');
  t.strictSame(match("type='method_call'").notifications, [], 'only signals stand for notifications');
  t.equal(uniqueNameId(':1.18446744073709551615'), 18446744073709551615n);
  t.throws(() => uniqueNameId(':1.18446744073709551616'), /64-bit/);
  t.equal(uniqueNameId(':2.5'), null);
  t.strictSame(KDBUS_MATCH_ID_ANY, 0xffff_ffff_ffff_ffffn);
});

t.test('parsing follows D-Bus quoting', async t => {
  const r = parseMatchRule("type='signal',sender='org.a',interface='org.a.B',member='C',path='/p',destination=':1.1',"
    + "arg0='it'\\''s',arg1=plain,arg2='a,b\\c',arg3='',arg10path='/x/',arg0namespace='org.a'");
  t.strictSame(r, {
    type: MessageType.SIGNAL, sender: 'org.a', interface: 'org.a.B', member: 'C', path: '/p', destination: ':1.1',
    args: new Map([[0, "it's"], [1, 'plain'], [2, 'a,b\\c'], [3, '']]), argPaths: new Map([[10, '/x/']]),
    argNamespaces: new Map([[0, 'org.a']]),
  });
  t.strictSame(parseMatchRule(formatMatchRule(r)), r, 'formatted rules read back');
  t.strictSame(parseMatchRule(" member='A', path_namespace='/a'"),
    { member: 'A', pathNamespace: '/a', args: new Map(), argPaths: new Map(), argNamespaces: new Map() },
    'spaces before keys are skipped');
  t.strictSame(parseMatchRule(''), { args: new Map(), argPaths: new Map(), argNamespaces: new Map() }, 'the empty rule');
  const bad: [string, RegExp][] = [
    ["type='signal',type='error'", /given twice/],
    ["type='nothing'", /unknown message type/],
    ["colour='red'", /unknown key/],
    ["arg64='x'", /unknown key/],
    ["arg05='x'", /unknown key/],
    ["arg1x='x'", /unknown key/],
    ["member='a", /unterminated quote/],
    ['member', /without '='/],
    ["path='a'", /not an object path/],
    ["path='/a',path_namespace='/'", /exclude each other/],
    ["interface='nodot'", /not an interface name/],
    ["member='a.b'", /not a member name/],
    ["sender='no'", /not a bus name/],
    ["eavesdrop='true'", /monitor/],
  ];
  for (const [text, why] of bad) t.throws(() => parseMatchRule(text), why, text);
});

t.test('messages match the way D-Bus defines', async t => {
  const m: DBusMessage = {
    ...signal({ path: '/org/a/b', interface: 'org.a', member: 'Changed', signature: 'sos', body: ['org.a.x', '/p/q', 'z'] }),
    cookie: 1, sender: ':1.3',
  };
  const yes = ['', "type='signal'", "sender=':1.3'", "interface='org.a',member='Changed'", "path='/org/a/b'",
    "path_namespace='/org/a'", "path_namespace='/'", "path_namespace='/org/a/b'", "arg0='org.a.x'", "arg2='z'",
    "arg0namespace='org.a'", "arg0namespace='org.a.x'", "arg1path='/p/q'", "arg1path='/p/'", "arg0path='org.a.x'"];
  const no = ["type='method_call'", "sender=':1.4'", "member='Other'", "path='/org/a'", "path_namespace='/org/ab'",
    "arg0='org.a'", "arg1='/p/q'", "arg3='z'", "arg0namespace='org.a.x.y'", "arg0namespace='or'",
    "arg1path='/p'", "destination=':1.1'"];
  for (const rule of yes) t.ok(matchesMessage(parseMatchRule(rule), m), `matches ${rule || '(empty)'}`);
  for (const rule of no) t.notOk(matchesMessage(parseMatchRule(rule), m), `does not match ${rule}`);
  const call = { ...methodCall({ path: '/', member: 'M', signature: 'a{sv}s', body: [new Map(), 'x'] }), cookie: 2 };
  t.ok(matchesMessage(parseMatchRule("arg1='x'"), call), 'arguments counted past containers');
  t.notOk(matchesMessage(parseMatchRule("arg0path='/'"), call), 'a dict is no path');
  t.ok(matchesMessage(parseMatchRule("arg1path='x'"), call), 'argNpath takes strings too');
});
