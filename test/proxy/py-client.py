# A python3-dbus client for the proxy's tests: connects to the bus at
# address argv[1] (where py-service.py owns org.kdbusfs.Py and the example
# service owns org.kdbusfs.Example) and prints one JSON object of what it saw:
# fd passing, a 1 MiB body both ways, name queueing through the driver,
# match rules with arg0 and path_namespace, D-Bus errors.
import json
import os
import sys

import dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

DBusGMainLoop(set_as_default=True)
address = sys.argv[1]
out = {}


def connect():
    return dbus.bus.BusConnection(address)


def pump(ms):
    loop = GLib.MainLoop()
    GLib.timeout_add(ms, loop.quit)
    loop.run()


def error_name(fn):
    try:
        fn()
    except dbus.DBusException as e:
        return e.get_dbus_name()
    return None


bus = connect()
driver = bus.get_object('org.freedesktop.DBus', '/org/freedesktop/DBus')
py = dbus.Interface(bus.get_object('org.kdbusfs.Py', '/org/kdbusfs/Py'), 'org.kdbusfs.Py')
example = dbus.Interface(bus.get_object('org.kdbusfs.Example', '/org/kdbusfs/Example'), 'org.kdbusfs.Example')

# fds: the read end of a pipe through the proxy, both ways over kdbus
r, w = os.pipe()
os.write(w, b'through the proxy')
os.close(w)
out['fd'] = str(py.Fd(dbus.types.UnixFd(r)))
os.close(r)

# 1 MiB: to a dbus1 service (both sides proxied) and to the kdbus-native service (memfd on kdbus)
big = bytes(range(256)) * 4096
size, total = py.Size(dbus.ByteArray(big), byte_arrays=True)
out['size'] = [int(size), int(total)]
text = 'x' * (1 << 20)
echoed = example.Echo(text)
out['bigEcho'] = [len(echoed), echoed == text]

# every type through a variant, there and back
value = dbus.Struct((dbus.Byte(255), dbus.Boolean(True), dbus.Int16(-2), dbus.UInt16(65535), dbus.Int32(-3),
                     dbus.UInt32(4294967295), dbus.Int64(-9007199254740993), dbus.UInt64(18446744073709551615),
                     dbus.Double(0.5), dbus.String('ünï'), dbus.ObjectPath('/a/b'), dbus.Signature('a{sv}'),
                     dbus.Array([dbus.Dictionary({dbus.String('k'): dbus.Array([dbus.Int32(1), dbus.Int32(2)], signature='i')}, signature='sv')], signature='a{sv}')),
                    signature=None)
back = py.Echo(value)


def plain(v):
    if isinstance(v, dbus.Dictionary):
        return [[plain(k), plain(x)] for k, x in sorted(v.items())]
    if isinstance(v, (dbus.Array, dbus.Struct, list, tuple)):
        return [plain(x) for x in v]
    return [type(v).__name__, v if not isinstance(v, float) else repr(v)]


out['types'] = [json.dumps(plain(x)) == json.dumps(plain(y)) for x, y in zip(back, value)]

# name queueing: RequestName flags and results, ListQueuedOwners, the queue moving on
a, b, c = connect(), connect(), connect()
q = 'org.kdbusfs.Queue'


def request(conn, flags):
    return int(conn.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                  'RequestName', 'su', (q, flags)))


def release(conn):
    return int(conn.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                  'ReleaseName', 's', (q,)))


acquired = []
b.add_signal_receiver(lambda n: acquired.append(str(n)), 'NameAcquired', 'org.freedesktop.DBus')
out['queue'] = {
    'first': request(a, 1),              # ALLOW_REPLACEMENT: PRIMARY_OWNER (1)
    'again': request(a, 1),              # ALREADY_OWNER (4)
    'noQueue': request(b, 4),            # DO_NOT_QUEUE: EXISTS (3)
    'queued': request(b, 0),             # IN_QUEUE (2)
    'replace': request(c, 2 | 4),        # REPLACE_EXISTING of an owner that allows it: PRIMARY_OWNER (1)
}
out['queue']['owners'] = [str(x) for x in driver.ListQueuedOwners(q, dbus_interface='org.freedesktop.DBus')]
out['queue']['uniques'] = [a.get_unique_name(), b.get_unique_name(), c.get_unique_name()]
out['queue']['releaseOwner'] = release(c)   # RELEASED (1): b, next in line, owns it
out['queue']['releaseNone'] = int(a.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                                  'ReleaseName', 's', ('org.kdbusfs.Nobody',)))   # NON_EXISTENT (2)
out['queue']['releaseQueued'] = release(a)   # RELEASED (1): a, replaced, waited in the queue
out['queue']['releaseNotOwner'] = release(bus)   # NOT_OWNER (3): neither owner nor queued
pump(300)
out['queue']['ownerAfter'] = str(driver.GetNameOwner(q, dbus_interface='org.freedesktop.DBus'))
out['queue']['acquired'] = [n for n in acquired if n == q]

# match rules: arg0 and path_namespace, signals from another dbus1 client and from the kdbus-native service
seen = []


def on_message(conn, msg):
    if msg.get_type() == 4 and msg.get_interface() in ('org.kdbusfs.T', 'org.kdbusfs.Example'):
        seen.append([msg.get_path(), str(msg.get_args_list()[0])])


bus.add_message_filter(on_message)
bus.add_match_string("type='signal',interface='org.kdbusfs.T',arg0='hit'")
bus.add_match_string("type='signal',interface='org.kdbusfs.T',path_namespace='/a'")
bus.add_match_string("type='signal',sender='org.kdbusfs.Example',arg0='native'")
emitter = connect()
for path, arg in [('/a/b', 'hit'), ('/c', 'hit'), ('/a', 'miss'), ('/c', 'miss'), ('/ab', 'miss')]:
    m = dbus.lowlevel.SignalMessage(path, 'org.kdbusfs.T', 'S')
    m.append(arg)
    emitter.send_message(m)
example.Echo('native')
example.Echo('other')
pump(700)
out['signals'] = seen

# errors clients expect
out['errors'] = {
    'unknownName': error_name(lambda: bus.call_blocking('org.kdbusfs.Nobody', '/', 'org.x.Y', 'Z', '', ())),
    'noOwner': error_name(lambda: driver.GetNameOwner('org.kdbusfs.Nobody', dbus_interface='org.freedesktop.DBus')),
    'badMatch': error_name(lambda: driver.AddMatch("type='nonsense'", dbus_interface='org.freedesktop.DBus')),
    'noMatch': error_name(lambda: driver.RemoveMatch("type='signal',member='Never'", dbus_interface='org.freedesktop.DBus')),
    'activationEnv': error_name(lambda: driver.UpdateActivationEnvironment({'A': 'b'}, dbus_interface='org.freedesktop.DBus')),
    'unknownMethod': error_name(lambda: driver.Frobnicate(dbus_interface='org.freedesktop.DBus')),
    'reserved': error_name(lambda: bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                                     'RequestName', 'su', ('org.freedesktop.DBus', 0))),
}
out['unique'] = bus.get_unique_name()
out['uid'] = int(driver.GetConnectionUnixUser(bus.get_unique_name(), dbus_interface='org.freedesktop.DBus'))
out['pid'] = int(driver.GetConnectionUnixProcessID(bus.get_unique_name(), dbus_interface='org.freedesktop.DBus'))
out['mypid'] = os.getpid()
print(json.dumps(out))
