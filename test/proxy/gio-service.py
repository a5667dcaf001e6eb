# A GLib (GDBus, not libdbus) service for the proxy's tests: connects to the
# bus at address argv[1], owns org.kdbusfs.Gio, exports /org/kdbusfs/Gio with
# Greet(s) -> s, which also emits the Greeted(s) signal, and prints "ready"
# once it owns the name. Runs until killed.
import sys

from gi.repository import Gio, GLib

XML = '''<node>
  <interface name="org.kdbusfs.Gio">
    <method name="Greet"><arg type="s" direction="in"/><arg type="s" direction="out"/></method>
    <signal name="Greeted"><arg type="s"/></signal>
  </interface>
</node>'''


def on_call(conn, sender, path, iface, method, params, invocation):
    who = params.unpack()[0]
    conn.emit_signal(None, path, iface, 'Greeted', GLib.Variant('(s)', (who,)))
    invocation.return_value(GLib.Variant('(s)', ('hello ' + who,)))


flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
info = Gio.DBusNodeInfo.new_for_xml(XML)
conn.register_object('/org/kdbusfs/Gio', info.interfaces[0], on_call, None, None)
loop = GLib.MainLoop()


def acquired(c, name):
    print('ready', c.get_unique_name(), flush=True)


Gio.bus_own_name_on_connection(conn, 'org.kdbusfs.Gio', Gio.BusNameOwnerFlags.NONE, acquired, lambda c, n: loop.quit())
loop.run()
