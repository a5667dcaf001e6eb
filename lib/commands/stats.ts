// `kdbusfs stats [ROOT]`: what the running server knows and no kdbus ABI
// shows, read from its stats socket (lib/stats-socket.ts), as tables or
// --json, once or every few seconds with --watch.
import { realpathSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { NAME_ACTIVATOR, NAME_ALLOW_REPLACEMENT, NAME_IN_QUEUE, NAME_QUEUE, NAME_REPLACE_EXISTING } from '../abi/kdbus.js';
import type { BusStats, ServerStats, UserStats } from '../server-stats.js';
import { STATS_DIR, statsSocketPath } from '../stats-socket.js';
import { findRoot, ROOT_OPTION } from './bus-address.js';
import type { Command } from './command-table.js';
import { onStopSignal } from './hold.js';
import { printJson } from './json-output.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { usage } from './usage-error.js';

const HELP = `Usage: kdbusfs stats [ROOT | --root ROOT] [--json] [--watch [--interval SECONDS]]

Shows what the kdbusfs server of ROOT knows and no kdbus ABI shows, per bus
and per connection: receive queue depths (in all and per sending uid), pool
size and bytes in use, pending replies (waited for, parked synchronous calls,
owed to others), matches, names, fds held in queued messages, messages lost;
per well-known name its owner and the connections queued for it (first in
line first, with the KDBUS_NAME_* flags each asked with);
per user the quota use against kdbusfs's limits; and the server's census
(what SIGUSR2 writes to its log).

The server serves them on a root-only unix socket per mount,
${STATS_DIR}/<ROOT escaped as by systemd-escape --path>.sock
(e.g. ${STATS_DIR}/sys-fs-kdbus.sock). Needs root.

ROOT is the kdbus root (a kdbusfs mount point): the argument, else
\$KDBUSFS_ROOT, else /sys/fs/kdbus.

Options:
  --json              the statistics as one JSON document per line (numbers as numbers)
  --watch             refresh until SIGINT
  --interval SECONDS  how often --watch refreshes (default 2)
  -h, --help          show this text

Exit status: 0 shown, 1 failure (not root, no server serves ROOT), 2 usage.
`;

const READ_DEADLINE_MS = 5000;

/** Reads one answer from the stats socket at path. */
export function readStats(path: string): Promise<ServerStats> {
  return new Promise((done, fail) => {
    const sock = connect(path);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      fail(new Error(`${path}: no answer within ${READ_DEADLINE_MS} ms`));
    }, READ_DEADLINE_MS);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ServerStats | { error: string };
        if ('error' in answer) fail(new Error(`the server could not gather its statistics: ${answer.error}`));
        else done(answer);
      } catch (e) {
        fail(new Error(`${path}: not a statistics answer (${(e as Error).message})`));
      }
    });
  });
}

/** The stats socket of root: by its path as given, or as resolved (a symlinked root). */
function socketOf(root: string): string[] {
  const paths = [statsSocketPath(resolve(root))];
  try {
    const real = realpathSync(root);
    if (real !== resolve(root)) paths.push(statsSocketPath(real));
  } catch { /* no such directory: the connect says so */ }
  return paths;
}

async function fetchStats(root: string): Promise<ServerStats> {
  let last: Error | null = null;
  for (const path of socketOf(root)) {
    try {
      return await readStats(path);
    } catch (e) {
      last = e as Error;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        last = new Error(`no kdbusfs server serves statistics for ${root} (nothing at ${path}: is a kdbusfs mounted there?)`);
        continue;
      }
      if (code === 'EACCES') last = new Error(`${path}: statistics are root's only`);
      break;
    }
  }
  throw last!;
}

// ---------------------------------------------------------------- text

function size(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? String(n) : `${v >= 10 || Number.isInteger(v) ? Math.round(v) : v.toFixed(1)}${units[i]}`;
}

/** Rows as columns, each as wide as its widest cell, left-aligned. */
function table(header: string[], rows: string[][], indent = '  '): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

const NAME_FLAG_WORDS: [number, string][] = [
  [Number(NAME_REPLACE_EXISTING), 'replace-existing'], [Number(NAME_ALLOW_REPLACEMENT), 'allow-replacement'],
  [Number(NAME_QUEUE), 'queue'], [Number(NAME_IN_QUEUE), 'in-queue'], [Number(NAME_ACTIVATOR), 'activator'],
];

/** KDBUS_NAME_* flags as words (0: -), unknown bits in hex. */
export function nameFlagsText(flags: number): string {
  const words = NAME_FLAG_WORDS.filter(([bit]) => flags & bit).map(([, w]) => w);
  const rest = NAME_FLAG_WORDS.reduce((f, [bit]) => f & ~bit, flags);
  if (rest) words.push(`0x${rest.toString(16)}`);
  return words.join(',') || '-';
}

function nameQueuesText(b: BusStats): string {
  if (!b.nameQueues.length) return '';
  const rows = b.nameQueues.map((q) => [
    q.name, `:1.${q.owner.id}`, nameFlagsText(q.owner.flags), q.activator === null ? '-' : `:1.${q.activator}`,
    q.waiters.map((w) => `:1.${w.id}(${nameFlagsText(w.flags)})`).join(' ') || '-',
  ]);
  return table(['NAME', 'OWNER', 'FLAGS', 'ACTIVATOR', 'QUEUED (first in line first)'], rows);
}

function busText(b: BusStats): string {
  const head = `BUS ${b.name} (id ${b.id}, uid ${b.uid}, endpoints ${b.endpoints.join(' ')}): ${b.connections.length} connections, `
    + `${b.monitors} monitors, ${b.names} names, ${b.nameWaiters} waiting for names, ${b.queued} queued, `
    + `${b.pendingNotifications} notifications pending, ${b.policyEntries} policy entries\n`;
  if (!b.connections.length) return head;
  const rows = b.connections.map((c) => [
    `:1.${c.id}`, c.kind, String(c.uid), c.pid === null ? '-' : String(c.pid), c.comm ?? '-',
    String(c.queue.messages), size(c.queue.bytes),
    Object.entries(c.queue.bySender).map(([u, n]) => `${u}:${n}`).join(',') || '-',
    `${size(c.pool.used)}/${size(c.pool.size)}`, String(c.pool.slices),
    `${c.replies.waiting}/${c.replies.parkedCalls}/${c.replies.owed}`, String(c.matches), String(c.heldFds),
    String(c.queue.lost), c.names.join(',') || '-', c.description ?? '-',
  ]);
  return head + table(['ID', 'KIND', 'UID', 'PID', 'COMM', 'QUEUED', 'BYTES', 'BY-UID', 'POOL', 'SLICES',
    'REPLIES W/P/O', 'MATCHES', 'FDS', 'LOST', 'NAMES', 'DESCRIPTION'], rows) + nameQueuesText(b);
}

function usersText(users: UserStats[]): string {
  if (!users.length) return 'USERS: none charged\n';
  const charges = ['connections', 'buses', 'queuedBytes', 'copyBytes', 'fds', 'names', 'matches', 'matchBytes', 'replies'] as const;
  const bytes = new Set<string>(['queuedBytes', 'copyBytes', 'matchBytes']);
  const rows = users.map((u) => [String(u.uid), ...charges.map((k) => {
    const f = bytes.has(k) ? size : String;
    return `${f(u.use[k])}/${f(u.limits[k])}`;
  })]);
  return 'USERS (use/limit)\n' + table(['UID', 'CONNS', 'BUSES', 'QUEUED', 'COPIES', 'FDS', 'NAMES', 'MATCHES', 'MATCH-BYTES', 'REPLIES'], rows);
}

export function statsText(s: ServerStats): string {
  const c = s.census;
  let out = `kdbusfs on ${s.mountpoint} (server pid ${s.pid}) at ${new Date(s.time).toISOString()}\n`;
  out += `census: ${c.buses} buses, ${c.endpoints} endpoints, ${c.connections} connections, ${c.handles} open files, `
    + `${c.names} names, ${c.matches} matches, ${c.replies} replies pending, ${c.parked} parked calls, ${c.queued} queued messages, `
    + `${c.poolSlices} pool slices (${size(c.poolBytes)}), ${c.heldFds} held fds (${c.fdWatches} watched), `
    + `rss ${size(c.memory.rss)}, heap ${size(c.memory.heapUsed)}\n\n`;
  for (const b of s.buses) out += busText(b) + '\n';
  out += usersText(s.users);
  return out;
}

// ---------------------------------------------------------------- the command

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    ...HELP_OPTION, ...ROOT_OPTION, json: { type: 'boolean' }, watch: { type: 'boolean' }, interval: { type: 'string' },
  }, HELP);
  if (helpShown(values, HELP)) return 0;
  if (positionals.length > 1) throw usage('stats takes at most one ROOT', HELP);
  if (positionals.length && values.root !== undefined) throw usage('give ROOT or --root, not both', HELP);
  const interval = Number(values.interval ?? 2);
  if (!(interval > 0)) throw usage(`--interval takes a number of seconds, not '${values.interval}'`, HELP);
  if (values.interval !== undefined && !values.watch) throw usage('--interval goes with --watch', HELP);
  if (process.getuid?.() !== 0) throw new Error('statistics are root\'s only: run kdbusfs stats as root');
  const root = findRoot(positionals[0] ?? values.root);
  const show = async (): Promise<void> => {
    const s = await fetchStats(root);
    if (values.json) printJson(s);
    else process.stdout.write((values.watch && process.stdout.isTTY ? '\x1b[H\x1b[2J' : '') + statsText(s));
  };
  await show();
  if (!values.watch) return 0;
  return new Promise<number>((done, fail) => {
    const timer = setInterval(() => { show().catch((e: Error) => { clearInterval(timer); fail(e); }); }, interval * 1000);
    onStopSignal(() => {
      clearInterval(timer);
      done(0);
    });
  });
}

export const statsCommand: Command = {
  name: 'stats',
  synopsis: 'stats [ROOT]',
  summary: 'what the server knows per bus, connection and user (root only)',
  help: HELP,
  run,
};
