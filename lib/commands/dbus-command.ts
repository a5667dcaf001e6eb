// What the D-Bus commands (call, emit, get-property, set-property,
// introspect, tree) share: busctl's options (--timeout, --expect-reply,
// --auto-start, --quiet, --json), a D-Bus connection to BUS for the length
// of the command, and D-Bus errors reported as failures (exit 1) that name
// the error.
import type { BusConnection } from '../client/index.js';
import type { Command } from './command-table.js';
import { DBusError } from '../client/dbus-error.js';
import { busAddress, findRoot, ROOT_OPTION, type BusAddress } from './bus-address.js';
import { openDBus } from './bus-connect.js';
import { ArgumentError } from './dbus-arguments.js';
import { HELP_OPTION, helpShown, parseBoolean, parseOptions, parseTimeout } from './options.js';
import { usage } from './usage-error.js';

export const DBUS_OPTIONS = {
  ...ROOT_OPTION,
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  'expect-reply': { type: 'string' },
  'auto-start': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  'no-legend': { type: 'boolean' },
  ...HELP_OPTION,
} as const;

export const DBUS_OPTIONS_HELP = `  --root DIR            the kdbus root (default $KDBUSFS_ROOT, else /sys/fs/kdbus)
  --json                the result as JSON ({"type": SIGNATURE, "data": ...})
  --timeout SECS        how long to wait for a reply (default 25; 500ms, 2min...)
  --auto-start BOOL     let the call start an activatable service (default yes)
  -q, --quiet           do not print the reply
  -h, --help            show this text`;

export interface DBusContext {
  bus: BusConnection;
  address: BusAddress;
  positionals: string[];
  json: boolean;
  quiet: boolean;
  legend: boolean;
  timeoutMs: number;
  expectReply: boolean;
  noAutoStart: boolean;
  /** the command's own string options (e.g. emit's --destination) */
  extra: Record<string, string | undefined>;
}

/**
 * A command's plan: from its arguments (after BUS), checked before any bus
 * is reached (bad arguments are usage errors, bus or no bus), what it does
 * once connected.
 */
export type DBusPlan = (positionals: string[]) => (c: DBusContext) => Promise<number>;

/** The message of a D-Bus error as busctl shows it: its text and its name. */
export function dbusErrorMessage(e: DBusError): string {
  return e.text ? `${e.text} (${e.errorName})` : e.errorName;
}

/**
 * A D-Bus command as the command table holds it: its words and help, how
 * many arguments it takes (min and max count BUS; no max: any number), its
 * plan and its own string options.
 */
export interface DBusCommand extends Omit<Command, 'run' | 'logsErrors'> {
  min: number;
  max?: number;
  plan: DBusPlan;
  extra?: string[];
}

export function dbusCommand(spec: DBusCommand): Command {
  const { name, synopsis, summary, help } = spec;
  return { name, synopsis, summary, help, run: (args) => runDBusCommand(args, spec) };
}

/** Parses args, plans, connects to BUS (the first positional), runs the plan, closes the connection. */
async function runDBusCommand(args: string[], { help, min, max, plan, extra = [] }: DBusCommand): Promise<number> {
  const own = Object.fromEntries(extra.map((name) => [name, { type: 'string' as const }]));
  const { values, positionals } = parseOptions(args, { ...DBUS_OPTIONS, ...own }, help);
  if (helpShown(values, help)) return 0;
  if (positionals.length < min) throw usage(`expects at least ${min} arguments (BUS first), got ${positionals.length}`, help);
  if (max !== undefined && positionals.length > max) throw usage(`expects at most ${max} arguments (BUS first), got ${positionals.length}`, help);
  const timeoutMs = values.timeout === undefined ? 25_000 : parseTimeout(values.timeout, help);
  const expectReply = values['expect-reply'] === undefined ? true : parseBoolean('expect-reply', values['expect-reply'], help);
  const autoStart = values['auto-start'] === undefined ? true : parseBoolean('auto-start', values['auto-start'], help);
  let body: (c: DBusContext) => Promise<number>;
  try {
    body = plan(positionals.slice(1));
  } catch (e) {
    if (e instanceof ArgumentError) throw usage(e.message, help);
    throw e;
  }
  const root = findRoot(values.root);
  const address = busAddress(positionals[0]!, root);
  const bus = await openDBus(address, root, { description: 'kdbusfs' });
  try {
    return await body({
      bus, address, positionals: positionals.slice(1), json: !!values.json, quiet: !!values.quiet,
      legend: !values['no-legend'], timeoutMs, expectReply, noAutoStart: !autoStart,
      extra: Object.fromEntries(extra.map((name) => [name, (values as Record<string, unknown>)[name] as string | undefined])),
    });
  } catch (e) {
    if (e instanceof DBusError) throw new Error(dbusErrorMessage(e));
    throw e;
  } finally {
    bus.close();
  }
}
