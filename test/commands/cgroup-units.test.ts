// A cgroup path's unit, user unit, slice, session and owner uid, as sd-bus
// of 2015 derived them (lib/commands/cgroup-units.ts), and the cgroup root
// they are taken relative to.
import t from 'tap';
import { cgroupRoot, cgroupUnits } from '../../lib/commands/cgroup-units.js';

t.test('units, slices, sessions and owners', async (t) => {
  t.same(cgroupUnits('/user.slice/user-1000.slice/session-c2.scope'),
    { unit: 'session-c2.scope', slice: 'user-1000.slice', session: 'c2', ownerUid: 1000 }, 'a login session');
  t.same(cgroupUnits('/user.slice/user-42.slice/user@42.service/dbus.socket'),
    { unit: 'user@42.service', userUnit: 'dbus.socket', slice: 'user-42.slice', ownerUid: 42 }, 'a user manager\'s unit');
  t.same(cgroupUnits('/user.slice/user-42.slice/session-1.scope/app.slice/x.service/sub'),
    { unit: 'session-1.scope', userUnit: 'x.service', slice: 'user-42.slice', session: '1', ownerUid: 42 },
    'below a session scope, after more slices, a user unit; child cgroups of a unit change nothing');
  t.same(cgroupUnits('/system.slice/getty@tty1.service'), { unit: 'getty@tty1.service', slice: 'system.slice' }, 'an instance');
  t.same(cgroupUnits('/system.slice/getty@.service'), { slice: 'system.slice' }, 'a template is no unit');
  t.same(cgroupUnits('/system.slice/_cpu.service'), { unit: 'cpu.service', slice: 'system.slice' }, 'escaped with "_"');
  t.same(cgroupUnits('/system.slice/foo.bar'), { slice: 'system.slice' }, 'an unknown unit type');
  t.same(cgroupUnits('/system.slice/a b.service'), { slice: 'system.slice' }, 'a character no unit name has');
  t.same(cgroupUnits('/a.slice/b.slice/c.service'), { unit: 'c.service', slice: 'b.slice' }, 'the innermost leading slice');
  t.same(cgroupUnits('/.slice/x.service'), {}, '".slice" alone is no slice (nor a unit)');
  t.same(cgroupUnits('/x.service/y.slice'), { unit: 'x.service' }, 'slices count only before the unit');
  t.same(cgroupUnits('/user.slice/user-0x10.slice/session-.scope'), { unit: 'session-.scope', slice: 'user-0x10.slice',
    ownerUid: 16 }, 'an owner uid as strtoull read it (0x hex); "session-.scope" a unit but no session');
  for (const bad of ['user-.slice', 'user-65535.slice', 'user-4294967295.slice', 'user-4294967296.slice', 'user-1x.slice']) {
    t.notOk('ownerUid' in cgroupUnits(`/user.slice/${bad}/session-1.scope`), `no owner uid from ${bad}`);
  }
  t.same(cgroupUnits(''), {}, 'an empty path');
});

t.test('relative to the root', async (t) => {
  t.same(cgroupUnits('/lxc/c1/system.slice/a.service', '/lxc/c1'), { unit: 'a.service', slice: 'system.slice' }, 'below the root');
  t.same(cgroupUnits('/lxc/c1', '/lxc/c1'), {}, 'the root itself');
  t.same(cgroupUnits('/lxc/c10/a.service', '/lxc/c1'), {}, 'a component, not a string prefix');
  t.same(cgroupUnits('/system.slice/a.service', ''), { unit: 'a.service', slice: 'system.slice' }, 'an empty root: no shift');
  t.equal(cgroupRoot('10:name=systemd:/lxc/c1/system.slice\n0::/x\n'), '/lxc/c1', 'systemd\'s hierarchy, less /system.slice');
  t.equal(cgroupRoot('1:name=systemd:/system.slice\n'), '', 'PID 1 in /system.slice: the empty root');
  t.equal(cgroupRoot('0::/init.scope\n'), '/init.scope', 'the unified hierarchy alone');
  t.equal(cgroupRoot('3:cpu:/a\n'), '/', 'no systemd hierarchy: /');
  t.type(cgroupRoot(), 'string', 'this host\'s');
});
