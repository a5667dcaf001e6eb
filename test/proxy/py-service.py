# A python3-dbus service for the proxy's tests: owns the name given as argv[2]
# on the bus at address argv[1], exports /org/kdbusfs/Py with interface
# org.kdbusfs.Py (Echo, Fd, Size, Ping signal on Shout, Vanish exits unanswered) and prints "ready"
# once it owns the name. Runs until killed.
import os
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

IFACE = 'org.kdbusfs.Py'


class Service(dbus.service.Object):
    @dbus.service.method(IFACE, in_signature='v', out_signature='v')
    def Echo(self, value):
        return value

    @dbus.service.method(IFACE, in_signature='h', out_signature='s')
    def Fd(self, fd):
        f = fd.take()
        data = os.read(f, 100)
        os.close(f)
        return data.decode()

    @dbus.service.method(IFACE, in_signature='ay', out_signature='ut')
    def Size(self, data):
        return dbus.UInt32(len(data)), dbus.UInt64(sum(data))

    @dbus.service.method(IFACE, in_signature='s', out_signature='')
    def Shout(self, text):
        self.Ping(text)

    @dbus.service.method(IFACE, in_signature='', out_signature='')
    def Vanish(self):
        os._exit(0)  # without a reply: the caller learns of it from the bus

    @dbus.service.signal(IFACE, signature='s')
    def Ping(self, text):
        pass


DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(sys.argv[1])
name = dbus.service.BusName(sys.argv[2], bus)
Service(bus, '/org/kdbusfs/Py')
print('ready', bus.get_unique_name(), flush=True)
GLib.MainLoop().run()
