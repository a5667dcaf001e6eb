// `kdbusfs monitor BUS [MATCH...]`: a kdbus monitor connection (HELLO_MONITOR:
// every message on the bus, kernel notifications included) printing each
// message as busctl monitor did, or with --pcap writing it as busctl capture
// did. Match rules are D-Bus match rules, tested here against each message
// (a monitor's traffic is never filtered by the kernel). What loads the
// native addon is imported when the command runs (--help works without it).
import { closeSync, openSync, writeSync } from 'node:fs';
import { ATTACH_ALL } from '../abi/kdbus.js';
import { CodecError } from '../client/codec-error.js';
import type { Connection } from '../client/connection.js';
import { isBusName, isWellKnownName } from '../client/dbus-names.js';
import { KdbusClientError } from '../client/errors.js';
import { matchesMessage, parseMatchRule, type MatchRule } from '../client/match-rule.js';
import type { Message } from '../client/message.js';
import { busAddress, findRoot, ROOT_OPTION } from './bus-address.js';
import { cgroupRoot } from './cgroup-units.js';
import { colourOn } from './colour.js';
import type { Command } from './command-table.js';
import { onStopSignal } from './hold.js';
import type { Observed } from './monitored-message.js';
import { printJson } from './json-output.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { DEFAULT_SNAPLEN, pcapFileHeader, pcapRecord } from './pcap.js';
import { usage } from './usage-error.js';

const HELP = `Usage: kdbusfs monitor BUS [MATCH...] [--json | --pcap FILE|- [--snaplen BYTES]] [--root ROOT]

Watches every message on BUS through a kdbus monitor connection and prints
each one as busctl monitor does: its header, sender and destination, the
kernel's timestamp and the sender's credentials, and its body value by value.
Kernel notifications appear as the messages sd-bus made of them
(NameOwnerChanged from org.freedesktop.DBus, NoReply errors); anything that is
no D-Bus message is shown as its kdbus header, items and a hex dump. Runs
until SIGINT or SIGTERM, or until the bus goes away.

BUS is a bus name under the root (0-system) or a path (a bus directory or
its bus file). The root is --root, else \$KDBUSFS_ROOT, else /sys/fs/kdbus.

Each MATCH is a D-Bus match rule (type='signal',interface='org.example.I');
a message is shown when any of them matches it, every message without any.
A bare bus name means sender='NAME', as busctl monitor took it.

Monitors need privilege as in kdbus: CAP_IPC_OWNER, or the bus owner's uid.

Options:
  --json            one JSON object per message instead (numbers as numbers,
                    the body as busctl --json prints one)
  --pcap FILE|-     write a pcap capture instead of text (link type DBUS, 231):
                    one record per message holding its D-Bus serialization,
                    as busctl capture wrote them; - is standard output
                    (refused on a terminal). Wireshark and tshark read it.
  --snaplen BYTES   record at most BYTES of each message (default ${DEFAULT_SNAPLEN},
                    busctl capture's)
  --root ROOT       the kdbus root
  -h, --help        show this text

Exit status: 0 stopped by a signal or the bus going away, 1 failure (refused,
no such bus), 2 usage.
`;

/** Where captured messages go. */
interface Sink {
  write(o: Observed): void;
  close(): void;
}

async function jsonSink(): Promise<Sink> {
  const { observedJson } = await import('./message-json.js');
  return { write: (o) => printJson(observedJson(o)), close: () => undefined };
}

async function textSink(): Promise<Sink> {
  const { dumpObserved } = await import('./message-dump.js');
  const colour = colourOn();
  const root = cgroupRoot();
  return { write: (o) => { process.stdout.write(dumpObserved(o, colour, root)); }, close: () => undefined };
}

/** Messages sd-bus had no D-Bus message for were never in a busctl capture: neither are they here. */
function pcapSink(target: string, snaplen: number): Sink {
  const toStdout = target === '-';
  const fd = toStdout ? -1 : openSync(target, 'w', 0o600);
  const put = (b: Buffer): void => {
    if (toStdout) process.stdout.write(b);
    else writeSync(fd, b);
  };
  put(pcapFileHeader(snaplen));
  return {
    write: (o) => {
      if (o.kind !== 'dbus') return;
      const ts = o.kmsg.metadata.timestamp?.realtimeNs;
      put(pcapRecord([o.wire], ts !== undefined ? ts / 1000n : BigInt(Date.now()) * 1000n, snaplen));
    },
    close: () => { if (!toStdout) closeSync(fd); },
  };
}

/** The rules of the MATCH arguments (a bare bus name: sender='NAME'). */
export function parseMatches(args: string[]): MatchRule[] {
  return args.map((a) => parseMatchRule(!a.includes('=') && isBusName(a) ? `sender='${a}'` : a));
}

/**
 * Whether o passes: no rules, or one that matches. A well-known sender
 * matches a message from a connection that owned it when it sent (the
 * kernel's OWNED_NAME metadata), as it did for busctl.
 */
export function passes(rules: MatchRule[], o: Observed): boolean {
  if (!rules.length) return true;
  if (o.kind !== 'dbus') return false;
  const owned = o.kmsg.metadata.ownedNames?.map((n) => n.name) ?? [];
  return rules.some((r) => {
    if (r.sender !== undefined && isWellKnownName(r.sender) && owned.includes(r.sender)) {
      return matchesMessage(r, { ...o.message, sender: r.sender });
    }
    return matchesMessage(r, o.message);
  });
}

function refusal(e: unknown, endpoint: string): Error {
  if (e instanceof KdbusClientError) {
    if (e.code === 'EPERM' || e.code === 'EACCES') {
      return new Error(`monitors need privilege (CAP_IPC_OWNER / bus owner): ${endpoint} refused a monitor to uid ${process.getuid?.()}`);
    }
    if (e.code === 'EOPNOTSUPP') return new Error(`${endpoint}: kdbus allows no monitors on custom endpoints`);
    if (e.code === 'ENOENT') return new Error(`${endpoint}: no such bus`);
  }
  return e as Error;
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    ...HELP_OPTION, ...ROOT_OPTION, json: { type: 'boolean' }, pcap: { type: 'string' }, snaplen: { type: 'string' },
  }, HELP);
  if (helpShown(values, HELP)) return 0;
  const [bus, ...matchArgs] = positionals;
  if (bus === undefined) throw usage('monitor needs a BUS', HELP);
  let rules: MatchRule[];
  try {
    rules = parseMatches(matchArgs);
  } catch (e) {
    if (e instanceof CodecError) throw usage(e.message, HELP);
    throw e;
  }
  const snaplen = values.snaplen === undefined ? DEFAULT_SNAPLEN : Number(values.snaplen);
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0xffff_ffff) {
    throw usage(`--snaplen takes a number of bytes, not '${values.snaplen}'`, HELP);
  }
  if (values.json && values.pcap !== undefined) throw usage('--json and --pcap exclude each other', HELP);
  if (values.snaplen !== undefined && values.pcap === undefined) throw usage('--snaplen goes with --pcap', HELP);
  if (values.pcap === '-' && process.stdout.isTTY) {
    throw usage('--pcap - refuses to write binary capture data to a terminal: redirect standard output', HELP);
  }
  const { endpoint } = busAddress(bus, findRoot(values.root));
  const { Connection } = await import('../client/connection.js');
  const { observe } = await import('./monitored-message.js');
  let conn: Connection;
  try {
    conn = Connection.open(endpoint, {
      kind: 'monitor', attachRecv: ATTACH_ALL, acceptFds: true, description: 'kdbusfs-monitor', receive: 'copy',
    });
  } catch (e) {
    throw refusal(e, endpoint);
  }
  const sink = values.pcap !== undefined ? pcapSink(values.pcap, snaplen) : values.json ? await jsonSink() : await textSink();
  const me = `:1.${conn.id}`;
  process.stderr.write(`Monitoring bus message stream on ${endpoint}.\n`);
  return new Promise<number>((resolve) => {
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      conn.close();
      sink.close();
      resolve(code);
    };
    const take = (m: Message): void => {
      const o = observe(m, me);
      if (passes(rules, o)) sink.write(o);
    };
    conn.on('message', take);
    conn.on('notification', (_n, m: Message) => take(m));
    conn.on('dropped', (n: number) => process.stderr.write(`kdbusfs monitor: the kernel dropped ${n} messages for this monitor\n`));
    conn.on('hangup', () => {
      process.stderr.write('Connection terminated, exiting.\n');
      finish(0);
    });
    // a reader that went away (`| head`) ends the watch, as SIGPIPE ended busctl's
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') finish(0);
    });
    onStopSignal(() => finish(0));
  });
}

export const monitorCommand: Command = {
  name: 'monitor',
  synopsis: 'monitor BUS [MATCH...]',
  summary: 'print (or capture as pcap) every message on a bus',
  help: HELP,
  run,
};
