// kdbusfs emit BUS PATH IFACE MEMBER [SIGNATURE [ARGS...]]: a signal,
// broadcast (with its bloom filter, as sd-bus sent signals) or, with
// --destination, unicast.
import { parseArguments } from './dbus-arguments.js';
import { DBUS_OPTIONS_HELP, dbusCommand, type DBusPlan } from './dbus-command.js';

const HELP = `Usage: kdbusfs emit BUS PATH INTERFACE MEMBER [SIGNATURE [ARGUMENT...]] [options]

Emits signal MEMBER of INTERFACE from object PATH on BUS: a broadcast that
every connection whose match accepts it receives, or, with --destination
NAME, a unicast to NAME. Arguments as for \`kdbusfs call\`.

Options:
${DBUS_OPTIONS_HELP}
  --destination NAME    send to NAME only
`;

const emit: DBusPlan = (positionals) => {
  const [path, iface, member, signature = '', ...words] = positionals as [string, string, string, string?, ...string[]];
  const body = parseArguments(signature, words);
  return async (c) => {
    const destination = c.extra.destination;
    c.bus.emitSignal({ path, interface: iface, member, signature, body, ...(destination !== undefined && { destination }) });
    return 0;
  };
};

export const emitCommand = dbusCommand({
  name: 'emit', synopsis: 'emit BUS PATH IFACE MEMBER [SIG [ARG...]]',
  summary: 'emit a signal', help: HELP, min: 4, plan: emit, extra: ['destination'],
});
