// kdbusfs list [BUS]: the buses of a root, or the connections and names of
// one bus as busctl list shows them (from NAME_LIST and CONN_INFO).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Connection } from '../client/index.js';
import { ATTACH, HELLO_ACTIVATOR, HELLO_MONITOR, HELLO_POLICY_HOLDER } from '../abi/kdbus.js';
import { busAddress, findRoot, ROOT_OPTION } from './bus-address.js';
import { openKdbus } from './bus-connect.js';
import type { Command } from './command-table.js';
import { printJson } from './json-output.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { formatTable } from './table.js';
import { usage } from './usage-error.js';
import { userName } from './users.js';

const HELP = `Usage: kdbusfs list [BUS] [options]

Without BUS: the buses under the root, with the uid that made each, its
connections and its well-known names (a bus this user may not connect to
shows '-'). With BUS (a name such as 0-system, or a path): every connection
and name on it, as \`busctl list\` shows them: one line per unique name
(:1.ID) and per well-known name, with the owner's pid, process name, user,
unique name and description, and its ROLE: owner, queued (waiting in the
name's queue), activator, policy-holder or monitor. The connection this
command makes to read the bus is left out.

Options:
  --root DIR     the kdbus root (default $KDBUSFS_ROOT, else /sys/fs/kdbus)
  --json         one JSON document (numbers as numbers)
  --no-legend    no header line
  -h, --help     show this text
`;

interface ConnectionRow {
  name: string;
  id: bigint;
  role: 'owner' | 'queued' | 'activator' | 'policy-holder' | 'monitor' | 'connection';
  pid?: number;
  comm?: string;
  uid?: number;
  description?: string;
  nameFlags?: bigint;
  connFlags: bigint;
}

function connRole(flags: bigint): ConnectionRow['role'] {
  if (flags & HELLO_ACTIVATOR) return 'activator';
  if (flags & HELLO_POLICY_HOLDER) return 'policy-holder';
  if (flags & HELLO_MONITOR) return 'monitor';
  return 'connection';
}

/** Every connection and name of the bus but `self`. */
export function busNames(conn: Connection): ConnectionRow[] {
  const owners = new Map<string, bigint>();
  for (const e of conn.listNames({ names: true })) if (e.name !== undefined) owners.set(e.name, e.ownerId);
  const entries = conn.listNames({ unique: true, names: true, activators: true, queued: true });
  const ids = new Map<bigint, bigint>();
  for (const e of entries) if (e.ownerId !== conn.id) ids.set(e.ownerId, e.connFlags);
  const info = new Map<bigint, Pick<ConnectionRow, 'pid' | 'comm' | 'uid' | 'description'>>();
  for (const id of ids.keys()) {
    try {
      const md = conn.connInfo(id, ATTACH.CREDS | ATTACH.PIDS | ATTACH.PID_COMM | ATTACH.CONN_DESCRIPTION).metadata;
      info.set(id, { pid: md.pids?.pid, comm: md.pidComm, uid: md.creds?.euid, description: md.description });
    } catch {
      info.set(id, {}); // gone between the list and its info
    }
  }
  const rows: ConnectionRow[] = [];
  for (const [id, flags] of ids) rows.push({ name: `:1.${id}`, id, role: connRole(flags), connFlags: flags, ...info.get(id) });
  for (const e of entries) {
    if (e.name === undefined || e.ownerId === conn.id) continue;
    const role = e.connFlags & HELLO_ACTIVATOR ? 'activator' : owners.get(e.name) === e.ownerId ? 'owner' : 'queued';
    rows.push({ name: e.name, id: e.ownerId, role, connFlags: e.connFlags, nameFlags: e.nameFlags, ...info.get(e.ownerId) });
  }
  // busctl's order: unique names first (by id), then names
  return rows.sort((a, b) => {
    const ua = a.name.startsWith(':');
    const ub = b.name.startsWith(':');
    if (ua !== ub) return ua ? -1 : 1;
    if (ua) return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : a.role.localeCompare(b.role);
  });
}

interface BusRow { name: string; path: string; uid: number; connections?: number; names?: string[] }

async function listBuses(root: string): Promise<BusRow[]> {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (e) {
    throw new Error(`cannot read the root ${root}: ${(e as Error).message}`);
  }
  const rows: BusRow[] = [];
  for (const name of entries.sort()) {
    const dir = join(root, name);
    let uid: number;
    try {
      if (!statSync(dir).isDirectory()) continue;
      uid = statSync(join(dir, 'bus')).uid;
    } catch {
      continue; // not a bus (control) or gone
    }
    const row: BusRow = { name, path: dir, uid };
    try {
      const conn = await openKdbus(busAddress(name, root), root);
      try {
        const all = busNames(conn);
        row.connections = all.filter((r) => r.name.startsWith(':')).length;
        row.names = [...new Set(all.filter((r) => !r.name.startsWith(':') && r.role === 'owner').map((r) => r.name))];
      } finally {
        conn.close();
      }
    } catch {
      // not ours to look into: shown without counts
    }
    rows.push(row);
  }
  return rows;
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    ...ROOT_OPTION, json: { type: 'boolean' }, 'no-legend': { type: 'boolean' }, ...HELP_OPTION,
  }, HELP);
  if (helpShown(values, HELP)) return 0;
  if (positionals.length > 1) throw usage('list takes at most one BUS', HELP);
  const root = findRoot(values.root);
  const legend = !values['no-legend'];
  if (positionals.length === 0) {
    const buses = await listBuses(root);
    if (values.json) {
      printJson(buses);
      return 0;
    }
    process.stdout.write(formatTable(
      [{ title: 'BUS' }, { title: 'USER' }, { title: 'CONNECTIONS', right: true }, { title: 'NAMES' }],
      buses.map((b) => [b.name, userName(b.uid), b.connections === undefined ? '-' : String(b.connections),
        b.names === undefined ? '-' : b.names.join(' ') || '-']),
      legend,
    ));
    return 0;
  }
  const address = busAddress(positionals[0]!, root);
  const conn = await openKdbus(address, root, { description: 'kdbusfs-list' });
  let rows: ConnectionRow[];
  try {
    rows = busNames(conn);
  } finally {
    conn.close();
  }
  if (values.json) {
    printJson(rows.map((r) => ({
      name: r.name, id: r.id, unique: `:1.${r.id}`, role: r.role, pid: r.pid, comm: r.comm, uid: r.uid,
      user: r.uid === undefined ? undefined : userName(r.uid), description: r.description,
      connFlags: r.connFlags, nameFlags: r.nameFlags,
    })));
    return 0;
  }
  const dash = (v: unknown): string => (v === undefined ? '-' : String(v));
  process.stdout.write(formatTable(
    [{ title: 'NAME' }, { title: 'PID', right: true }, { title: 'PROCESS' }, { title: 'USER' }, { title: 'CONNECTION' },
      { title: 'ROLE' }, { title: 'DESCRIPTION' }],
    rows.map((r) => [r.name, dash(r.pid), dash(r.comm), r.uid === undefined ? '-' : userName(r.uid), `:1.${r.id}`,
      r.role === 'connection' ? '-' : r.role, dash(r.description)]),
    legend,
  ));
  return 0;
}

export const listCommand: Command = {
  name: 'list', synopsis: 'list [BUS]', summary: 'the buses of the root, or the connections and names of BUS', help: HELP, run,
};
