// In process: the pieces of the bus commands that need no bus: finding the
// root and the bus (--root, $KDBUSFS_ROOT, /sys/fs/kdbus; names and
// paths), the policy file format, introspection XML, busctl's tree drawing,
// the command table's dispatch.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { busAddress, findRoot } from '../../lib/commands/bus-address.js';
import { findCommand, type Command } from '../../lib/commands/command-table.js';
import { parseIntrospection } from '../../lib/commands/introspection-xml.js';
import { parsePolicy, PolicyFileError } from '../../lib/commands/policy-file.js';
import { drawTree } from '../../lib/commands/tree.js';

t.test('the root: --root, then $KDBUSFS_ROOT, then /sys/fs/kdbus', async (t) => {
  t.equal(findRoot('/a/b', { KDBUSFS_ROOT: '/env' }), '/a/b');
  t.equal(findRoot(undefined, { KDBUSFS_ROOT: '/env' }), '/env');
  t.equal(findRoot(undefined, { KDBUSFS_ROOT: '' }), '/sys/fs/kdbus', 'an empty variable is no root');
  t.equal(findRoot(undefined, {}), '/sys/fs/kdbus');
});

t.test('a bus by name or by path', async (t) => {
  t.same(busAddress('0-system', '/r'), { name: '0-system', dir: '/r/0-system', endpoint: '/r/0-system/bus' });
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-cli-addr-'));
  mkdirSync(join(dir, '0-x'));
  writeFileSync(join(dir, '0-x', 'bus'), '');
  t.same(busAddress(join(dir, '0-x'), '/r'), { name: '0-x', dir: join(dir, '0-x'), endpoint: join(dir, '0-x/bus') }, 'a bus directory');
  t.same(busAddress(join(dir, '0-x/0-ep'), '/r'), { name: '0-x', dir: join(dir, '0-x'), endpoint: join(dir, '0-x/0-ep') },
    'an endpoint file: its bus is the directory');
});

t.test('policy files', async (t) => {
  const p = parsePolicy([
    '# who may do what',
    'org.example.Service  own  user:0 user:1000',
    'org.example.Service  talk world   # anybody',
    'org.example.*        see  group:0',
    '',
  ].join('\n'));
  t.same(p, [
    { name: 'org.example.Service', grants: [{ user: 0, access: 'own' }, { user: 1000, access: 'own' }, { world: true, access: 'talk' }] },
    { name: 'org.example.*', grants: [{ group: 0, access: 'see' }] },
  ]);
  t.same(parsePolicy('a.b talk user:root'), [{ name: 'a.b', grants: [{ user: 0, access: 'talk' }] }], 'user names are looked up');
  const bad = (text: string, why: RegExp): void => {
    t.throws(() => parsePolicy(text, 'f'), { constructor: PolicyFileError, message: why }, text);
  };
  bad('a.b write world', /f:1: the access must be see, talk or own/);
  bad('nodots talk world', /not a well-known name/);
  bad('a.b talk', /say who gets talk/);
  bad('a.b talk everyone', /not user:UID, group:GID or world/);
  bad('a.b talk user:no-such-user-here', /no user named/);
});

t.test('introspection XML', async (t) => {
  const node = parseIntrospection(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
 <interface name="a.B">
  <annotation name="org.freedesktop.DBus.Deprecated" value="true"/>
  <method name="M"><arg type="s" direction="in"/><arg type="i" direction="in"/><arg type="as" direction="out"/>
   <annotation name="org.freedesktop.DBus.Method.NoReply" value="true"/></method>
  <signal name="S"><arg type="u"/></signal>
  <property name="P" type="s" access="readwrite"/>
  <property name="C" type="u" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
 </interface>
 <node name="child"/><node name="other&amp;"/>
</node>`);
  t.same(node.children, ['child', 'other&']);
  t.same(node.interfaces[0], {
    name: 'a.B', flags: ['deprecated'], members: [
      { kind: 'method', name: 'M', signature: 'si', result: 'as', flags: ['no-reply'] },
      { kind: 'signal', name: 'S', signature: 'u', flags: [] },
      { kind: 'property', name: 'P', signature: 's', writable: true, readable: true, flags: ['emits-change'] },
      { kind: 'property', name: 'C', signature: 'u', writable: false, readable: true, flags: ['const'] },
    ],
  });
  t.throws(() => parseIntrospection('<html/>'), /no <node>/);
});

t.test('busctl tree drawing', async (t) => {
  t.same(drawTree(['/', '/a', '/a/b', '/a/c', '/d']), ['├─/a', '│ ├─/a/b', '│ └─/a/c', '└─/d']);
  t.same(drawTree(['/']), ['Only root object discovered.']);
  t.same(drawTree([]), ['No objects discovered.']);
});

t.test('the command table: one- and two-word commands', async (t) => {
  const c = (name: string): Command => ({ name, synopsis: name, summary: '', help: '', run: () => 0 });
  const table = [c('list'), c('bus make')];
  t.equal(findCommand(table, ['bus', 'make', 'x'])?.command.name, 'bus make');
  t.same(findCommand(table, ['bus', 'make', 'x'])?.args, ['x']);
  t.equal(findCommand(table, ['list'])?.command.name, 'list');
  t.equal(findCommand(table, ['bus']), null);
  t.equal(findCommand(table, ['nope']), null);
});
