// kdbusfs set-property BUS DEST PATH IFACE PROPERTY SIGNATURE ARGS...:
// org.freedesktop.DBus.Properties.Set with the value in busctl's form.
import { Variant } from '../client/variant.js';
import { ArgumentError, parseArguments } from './dbus-arguments.js';
import { DBUS_OPTIONS_HELP, dbusCommand, type DBusPlan } from './dbus-command.js';

const HELP = `Usage: kdbusfs set-property BUS DEST PATH INTERFACE PROPERTY SIGNATURE ARGUMENT... [options]

Sets PROPERTY of INTERFACE on object PATH of DEST to the value SIGNATURE
and ARGUMENTs give (as for \`kdbusfs call\`: one complete type), e.g.
  kdbusfs set-property 0-system org.example /org/example org.example Greeting s hi

Options:
${DBUS_OPTIONS_HELP}
`;

const setProperty: DBusPlan = (positionals) => {
  const [destination, path, iface, property, signature, ...words] = positionals as [string, string, string, string, string, ...string[]];
  const values = parseArguments(signature, words);
  if (values.length !== 1) throw new ArgumentError(`a property's signature is one complete type, not '${signature}'`);
  return async (c) => {
    await c.bus.call({
      destination, path, interface: 'org.freedesktop.DBus.Properties', member: 'Set', signature: 'ssv',
      body: [iface, property, new Variant(signature, values[0]!)], timeoutMs: c.timeoutMs, noAutoStart: c.noAutoStart,
    });
    return 0;
  };
};

export const setPropertyCommand = dbusCommand({
  name: 'set-property', synopsis: 'set-property BUS DEST PATH IFACE PROPERTY SIG ARG...',
  summary: 'set a property', help: HELP, min: 7, plan: setProperty,
});
