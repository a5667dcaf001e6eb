// kdbusfs status BUS [ID|NAME]: a connection's CONN_INFO with every
// metadata item decoded, or, without ID|NAME, the bus itself
// (BUS_CREATOR_INFO: its id128, flags, bloom parameters and its creator).
// Printed as busctl status prints credentials: KEY=VALUE lines.
import { ATTACH_ALL } from '../abi/kdbus.js';
import type { Info, Metadata } from '../client/index.js';
import { KdbusClientError } from '../client/errors.js';
import { busAddress, findRoot, ROOT_OPTION } from './bus-address.js';
import { openKdbus } from './bus-connect.js';
import { capabilityNames } from './capabilities.js';
import { cgroupRoot, cgroupUnits } from './cgroup-units.js';
import { colours } from './colour.js';
import type { Command } from './command-table.js';
import { printJson } from './json-output.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { usage } from './usage-error.js';

const HELP = `Usage: kdbusfs status BUS [ID|NAME] [options]

With ID (a connection id, 5 or :1.5) or NAME (a well-known name): what the
bus tells of that connection (KDBUS_CMD_CONN_INFO with every metadata item:
credentials, pids, supplementary groups, comm, exe, command line, cgroup,
capabilities, security label, audit ids, description, owned names). Without:
the bus (KDBUS_CMD_BUS_CREATOR_INFO): its name, id128, flags, bloom filter
size and hash count (from HELLO), and what it kept of its creator (what its
maker asked the bus to keep: \`kdbusfs bus make\` keeps everything). Items the bus or the
connection did not let through are left out.

Options:
  --root DIR     the kdbus root (default $KDBUSFS_ROOT, else /sys/fs/kdbus)
  --json         one JSON document (numbers as numbers)
  -h, --help     show this text
`;

/** A connection id (5, :1.5) or a well-known name. */
export function connectionTarget(arg: string): bigint | string {
  const m = /^(?::1\.)?(\d+)$/.exec(arg);
  return m ? BigInt(m[1]!) : arg;
}

function metadataLines(md: Metadata): [string, string][] {
  const out: [string, string][] = [];
  const add = (k: string, v: unknown): void => { if (v !== undefined) out.push([k, String(v)]); };
  const derived = md.cgroup === undefined ? {} : cgroupUnits(md.cgroup, cgroupRoot());
  if (md.pids) { add('PID', md.pids.pid); add('PPID', md.pids.ppid); add('TID', md.pids.tid); }
  if (md.creds) {
    const c = md.creds;
    add('UID', c.uid); add('EUID', c.euid); add('SUID', c.suid); add('FSUID', c.fsuid);
  }
  add('OwnerUID', derived.ownerUid);
  if (md.creds) {
    const c = md.creds;
    add('GID', c.gid); add('EGID', c.egid); add('SGID', c.sgid); add('FSGID', c.fsgid);
  }
  if (md.auxGroups) add('SupplementaryGIDs', md.auxGroups.join(' '));
  add('Comm', md.pidComm); add('TIDComm', md.tidComm); add('Exe', md.exe);
  if (md.cmdline) add('CommandLine', md.cmdline.join(' '));
  add('Label', md.seclabel); add('Description', md.description); add('CGroup', md.cgroup);
  add('Unit', derived.unit); add('UserUnit', derived.userUnit); add('Slice', derived.slice); add('Session', derived.session);
  if (md.audit) { add('AuditLoginUID', md.audit.loginUid); add('AuditSessionID', md.audit.sessionId); }
  if (md.ownedNames) add('WellKnownNames', md.ownedNames.map((n) => n.name).join(' '));
  if (md.caps) {
    const c = md.caps;
    add('EffectiveCapabilities', capabilityNames(c.effective, c.lastCap).join(' '));
    add('PermittedCapabilities', capabilityNames(c.permitted, c.lastCap).join(' '));
    add('InheritableCapabilities', capabilityNames(c.inheritable, c.lastCap).join(' '));
    add('BoundingCapabilities', capabilityNames(c.bounding, c.lastCap).join(' '));
  }
  if (md.timestamp) {
    add('TimestampSeqnum', md.timestamp.seqnum);
    add('TimestampMonotonic', md.timestamp.monotonicNs);
    add('TimestampRealtime', md.timestamp.realtimeNs);
  }
  return out;
}

function metadataJson(md: Metadata): Record<string, unknown> {
  return {
    ...md,
    ownedNames: md.ownedNames?.map((n) => ({ name: n.name, flags: n.flags })),
    caps: md.caps && {
      lastCap: md.caps.lastCap,
      effective: capabilityNames(md.caps.effective, md.caps.lastCap),
      permitted: capabilityNames(md.caps.permitted, md.caps.lastCap),
      inheritable: capabilityNames(md.caps.inheritable, md.caps.lastCap),
      bounding: capabilityNames(md.caps.bounding, md.caps.lastCap),
      effectiveMask: md.caps.effective, permittedMask: md.caps.permitted,
      inheritableMask: md.caps.inheritable, boundingMask: md.caps.bounding,
    },
  };
}

function print(lines: [string, string][]): void {
  const c = colours();
  process.stdout.write(lines.map(([k, v]) => `${k}=${c.highlight(v)}\n`).join(''));
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { ...ROOT_OPTION, json: { type: 'boolean' }, ...HELP_OPTION }, HELP);
  if (helpShown(values, HELP)) return 0;
  if (positionals.length < 1 || positionals.length > 2) throw usage('status takes BUS and at most one ID or NAME', HELP);
  const root = findRoot(values.root);
  const address = busAddress(positionals[0]!, root);
  const conn = await openKdbus(address, root, { description: 'kdbusfs-status' });
  try {
    if (positionals.length === 1) {
      const info = conn.busCreatorInfo(ATTACH_ALL);
      const busId = conn.busId.toString('hex');
      if (values.json) {
        printJson({
          bus: info.busName ?? address.name, path: address.endpoint, id128: busId, flags: info.flags,
          bloom: info.bloom ?? conn.bloom, creator: metadataJson(info.metadata),
        });
        return 0;
      }
      print([
        ['BusName', info.busName ?? address.name], ['BusAddress', `kernel:path=${address.endpoint}`], ['BusID', busId],
        ['BusFlags', `0x${info.flags.toString(16)}`],
        ['BloomSize', String((info.bloom ?? conn.bloom).size)], ['BloomHashes', String((info.bloom ?? conn.bloom).nHash)],
        ...metadataLines(info.metadata).map(([k, v]) => [`Creator${k}`, v] as [string, string]),
      ]);
      return 0;
    }
    const target = connectionTarget(positionals[1]!);
    let info: Info;
    try {
      info = conn.connInfo(target, ATTACH_ALL);
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) {
        throw new Error(typeof target === 'string' ? `no connection owns the name '${target}' on ${address.name}`
          : `no connection :1.${target} on ${address.name}`);
      }
      throw e;
    }
    if (values.json) {
      printJson({ id: info.id, unique: `:1.${info.id}`, flags: info.flags, metadata: metadataJson(info.metadata) });
      return 0;
    }
    print([['UniqueName', `:1.${info.id}`], ['ConnectionFlags', `0x${info.flags.toString(16)}`], ...metadataLines(info.metadata)]);
    return 0;
  } finally {
    conn.close();
  }
}

export const statusCommand: Command = {
  name: 'status', synopsis: 'status BUS [ID|NAME]', summary: 'a connection\'s credentials and metadata, or the bus\'s', help: HELP, run,
};
