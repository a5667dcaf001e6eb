// kdbusfs get-property BUS DEST PATH IFACE PROPERTY...: each property's
// value through org.freedesktop.DBus.Properties.Get, one line each as
// busctl prints them (`u 3`).
import { Variant } from '../client/variant.js';
import { DBUS_OPTIONS_HELP, dbusCommand, type DBusContext } from './dbus-command.js';
import { formatLine, jsonValue } from './dbus-values.js';
import { printJson } from './json-output.js';

const HELP = `Usage: kdbusfs get-property BUS DEST PATH INTERFACE PROPERTY... [options]

Reads each PROPERTY of INTERFACE on object PATH of DEST and prints it as
busctl does: its signature, then its value. With --json, one JSON document
per property ({"type": SIGNATURE, "data": VALUE}).

Options:
${DBUS_OPTIONS_HELP}
`;

async function getProperty(c: DBusContext): Promise<number> {
  const [destination, path, iface, ...properties] = c.positionals as [string, string, string, ...string[]];
  for (const property of properties) {
    const reply = await c.bus.call({
      destination, path, interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: [iface, property],
      timeoutMs: c.timeoutMs, noAutoStart: c.noAutoStart,
    });
    const v = reply.body[0];
    if (reply.signature !== 'v' || !(v instanceof Variant)) throw new Error(`Get of ${property} answered '${reply.signature}', not a variant`);
    if (c.quiet) continue;
    if (c.json) printJson(jsonValue(v));
    else process.stdout.write(`${formatLine(v.signature, [v.value])}\n`);
  }
  return 0;
}

export const getPropertyCommand = dbusCommand({
  name: 'get-property', synopsis: 'get-property BUS DEST PATH IFACE PROPERTY...',
  summary: 'print property values', help: HELP, min: 5, plan: () => getProperty,
});
