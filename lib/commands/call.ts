// kdbusfs call BUS DEST PATH IFACE METHOD [SIGNATURE [ARGS...]]: a method
// call, its reply printed as busctl call prints it (`s "text"`).
import { methodCall, MessageFlag, MessageType } from '../client/dbus-message.js';
import { kdbusEnvelope } from '../client/kdbus-envelope.js';
import type { DBusValue } from '../client/variant.js';
import { parseArguments } from './dbus-arguments.js';
import { DBUS_OPTIONS_HELP, dbusCommand, type DBusContext, type DBusPlan } from './dbus-command.js';
import { formatLine, jsonBody } from './dbus-values.js';
import { printJson } from './json-output.js';

const HELP = `Usage: kdbusfs call BUS DEST PATH INTERFACE METHOD [SIGNATURE [ARGUMENT...]] [options]

Calls METHOD of INTERFACE on object PATH of DEST (a well-known or unique
name) on BUS and prints the reply as busctl does: its signature, then its
values (strings quoted, an array as its length then its elements, a variant
as its signature then its value). Arguments follow busctl's form: one word
per basic value, an array's element count before its elements, a variant's
signature before its value, e.g.
  kdbusfs call 0-system org.example /org/example org.example.Sum Add ai 3 1 2 3
Put \`--\` before arguments that start with '-' (negative numbers).
An error reply exits 1 and names the error.

Options:
${DBUS_OPTIONS_HELP}
  --expect-reply BOOL   wait for a reply (default yes); no: send and exit 0
`;

interface MethodCall { destination: string; path: string; interface: string; member: string; signature: string; body: DBusValue[] }

/** Sends the call with NO_REPLY_EXPECTED: put on the bus, nothing waited for. */
function sendNoReply(c: DBusContext, o: MethodCall): void {
  const m = methodCall({ ...o, flags: MessageFlag.NO_REPLY_EXPECTED | (c.noAutoStart ? MessageFlag.NO_AUTO_START : 0) });
  m.cookie = 1;
  const env = kdbusEnvelope(m, c.bus.kdbus.bloom);
  c.bus.kdbus.send({
    ...(env.dstName !== undefined ? { name: env.dstName } : { dst: env.dstId }),
    payload: [env.header, env.body], cookie: env.cookie, noAutoStart: c.noAutoStart,
  });
}

const call: DBusPlan = (positionals) => {
  const [destination, path, iface, member, signature = '', ...words] = positionals as [string, string, string, string, string?, ...string[]];
  const body = parseArguments(signature, words);
  const o: MethodCall = { destination, path, interface: iface, member, signature, body };
  return (c) => callWith(c, o);
};

async function callWith(c: DBusContext, o: MethodCall): Promise<number> {
  if (!c.expectReply) {
    sendNoReply(c, o);
    return 0;
  }
  const reply = await c.bus.call({ ...o, timeoutMs: c.timeoutMs, noAutoStart: c.noAutoStart });
  if (reply.type !== MessageType.METHOD_RETURN) throw new Error('the reply is not a method return');
  if (c.quiet) return 0;
  if (c.json) printJson(jsonBody(reply.signature, reply.body));
  else if (reply.signature) process.stdout.write(`${formatLine(reply.signature, reply.body)}\n`);
  return 0;
}

export const callCommand = dbusCommand({
  name: 'call', synopsis: 'call BUS DEST PATH IFACE METHOD [SIG [ARG...]]',
  summary: 'call a method and print its reply', help: HELP, min: 5, plan: call,
});
