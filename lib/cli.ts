#!/usr/bin/env node
// The kdbusfs command: mount (serve in the foreground, or detached as mount(8)
// starts it), umount, selftest, and the bus commands of lib/commands/ (list,
// status, call, bus make...), dispatched through one table (COMMANDS).
// Commands load the native addon lazily, so --help works without it.
import { execFileSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { detached, reportFailure, reportReady, startDetached } from './detach.js';
import {
  LOG_LEVELS, log, logError, logFlush, logLine, parseLogLevel, setLogLevel, stderrIsJournal, useSocketSend,
} from './log.js';
import { checkCanMount, checkNotOtherMount, explainMountError, missingDirs, mountDir, removeDirs } from './mount-checks.js';
import { expandMountOptions, fromMountHelper } from './mount-argv.js';
import { DEFAULT_MOUNTPOINT, mountedType, prepareMountpoint, releaseMountpoint } from './mountpoint.js';
import { proxyCommand } from './proxy/command.js';
import { makeSysfsOverlay, removeSysfsOverlay, SYS_MODULE } from './sysfs-overlay.js';
import { DEFAULT_LIMITS, parseLimit, type UserLimits } from './core/user.js';
import { findCommand, type Command, type CommandResult } from './commands/command-table.js';
import { monitorCommand } from './commands/monitor.js';
import { statsCommand } from './commands/stats.js';
import { UsageError, EXIT_FAILURE, EXIT_USAGE } from './commands/usage-error.js';
import { listCommand } from './commands/list.js';
import { statusCommand } from './commands/status.js';
import { callCommand } from './commands/call.js';
import { emitCommand } from './commands/emit.js';
import { getPropertyCommand } from './commands/get-property.js';
import { setPropertyCommand } from './commands/set-property.js';
import { introspectCommand } from './commands/introspect.js';
import { treeCommand } from './commands/tree.js';
import { busMakeCommand } from './commands/bus-make.js';
import { endpointMakeCommand } from './commands/endpoint-make.js';

const FSTYPE = 'fuse.kdbusfs';
/** Where the default mount serves the module parameters (a place that hides nothing, unlike /sys/module). */
const DEFAULT_PARAMS_DIR = '/run/kdbusfs/parameters';
/**
 * The server's young generation, in MiB per semi-space. V8 grows it to 16
 * under load and keeps it: a server with 1000 idle connections after a burst
 * of connects took 113 MiB instead of 80. Requests allocate little and
 * briefly; 2 MiB cost nothing measurable (bench/run.sh figures, README).
 */
const SEMI_SPACE_FLAG = '--max-semi-space-size';
const SEMI_SPACE_MIB = 2;

const HELP: Record<string, string> = {
  mount: `Usage: kdbusfs mount [DIR] [options] [--limit NAME=VALUE]... [-o OPTION[,OPTION...]]

Mounts kdbusfs on DIR and serves it in the foreground until SIGINT or SIGTERM,
which unmount it and exit 0, as does \`umount DIR\`. Needs root (/dev/fuse and
mount(2)). SIGUSR2 writes a census of the server's state (buses, connections,
names, queued messages, pool slices, held fds, memory...) to stderr as one
JSON line. Under systemd (Type=notify, \$NOTIFY_SOCKET) it reports READY=1
once the mount serves and STOPPING=1 on its way down.

DIR defaults to ${DEFAULT_MOUNTPOINT}, where the kernel module mounted it. Without
the module that directory does not exist and sysfs cannot create it, so kdbusfs
lays a tmpfs over /sys/fs that keeps every existing entry bound in place and adds
kdbus/, plus a second sysfs mount at /run/kdbusfs/witness/sysfs so that new user
namespaces (rootless containers) can still mount sysfs; both are removed when
the server exits. Any other DIR is created if missing.

The kdbus module's parameter attach_flags_mask (metadata items never attached
unless set in it; default 0x281f as the module had it) is served live as the
file attach_flags_mask in the parameter directory: readable by all, writable by
root, like /sys/module/kdbus/parameters/attach_flags_mask was.

Options:
  --no-passthrough   give each connection a page-cache pool instead of a FUSE
                     passthrough memfd (passthrough is used when the kernel allows)
  --passthrough      the default (for -o passthrough)
  --attach-flags-mask MASK
                     the mask at start (decimal, 0x hex or 0 octal)
  --params-dir DIR   where to serve attach_flags_mask (default ${DEFAULT_PARAMS_DIR}
                     for the default mount point, none for others);
                     /sys/module/kdbus/parameters, where the module had it
                     and sd-bus looks, lays a tmpfs over /sys/module that
                     hides modules loaded while kdbusfs runs (README)
  --buses FILE       make the buses of FILE (JSON, README "Buses from
                     configuration") at mount and hold them until exit
  --detach           serve in the background: exit 0 once the mount serves, or
                     1 with the reason it cannot (what mount(8) runs)
  --log-file PATH    where a detached server logs (default: the journal when
                     stderr is the journal, else nowhere)
  --log-level LEVEL  ${LOG_LEVELS.join(', ')} (default info)
  -q, --quiet        --log-level warning (as KDBUSFS_QUIET=1)
  -v, --verbose      --log-level debug
  -o OPTIONS         options as mount(8) gives them: NAME[=VALUE] is --NAME[=VALUE]
                     ('_' or '-'), e.g. -o no_passthrough,log_level=notice;
                     mount's own (rw, nodev, noauto, _netdev, x-*...) are ignored
  --limit NAME=VALUE one of kdbusfs's own per-user limits (README "Reliability"),
                     repeatable; sizes may end in K, M or G (user_queued_bytes=64M)
  -h, --help         show this text
`,
  umount: `Usage: kdbusfs umount DIR

Detaches the kdbusfs mount on DIR (umount2 MNT_DETACH), whether its server is
alive or has died. Refuses directories that are not kdbusfs mounts.

Options:
  -h, --help   show this text
`,
  selftest: `Usage: kdbusfs selftest [--kdbus-tree DIR] [--binary PATH] [--no-passthrough] [--test-timeout SEC] [-- ARGS...]

Builds kdbus-test from the upstream kdbus selftests of a kdbus v3 kernel tree
(--kdbus-tree DIR, else \$KDBUSFS_KDBUS_TREE, else ../shared/kdbus beside the
kdbusfs checkout) into \$KDBUSFS_CACHE_DIR/selftests (default
\$XDG_CACHE_HOME/kdbusfs, else ~/.cache/kdbusfs), mounts kdbusfs on a temporary directory, and runs
\`kdbus-test --root DIR ARGS...\` in a private mount namespace where
/sys/module/kdbus/parameters/attach_flags_mask is served by kdbusfs too.
Exits with kdbus-test's exit code. Needs root.

Options:
  --kdbus-tree DIR     the kdbus tree (tools/testing/selftests/kdbus, include/uapi)
  --binary PATH        run this kdbus-test instead of building one
  --no-passthrough     page-cache pools instead of passthrough
  --test-timeout SEC   kill a test still running after SEC seconds (default 120; 0: never)
  -h, --help           show this text

Examples:
  kdbusfs selftest -- --tap
  kdbusfs selftest -- -t chat
`,
};

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/** Runs a parseArgs call, turning its complaints into a usage error for command. */
function parsed<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${HELP[command]}`);
  }
}

const MOUNT_OPTIONS = {
  'no-passthrough': { type: 'boolean' },
  passthrough: { type: 'boolean' },
  detach: { type: 'boolean' },
  'log-file': { type: 'string' },
  'log-level': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
  'attach-flags-mask': { type: 'string' },
  'params-dir': { type: 'string' },
  buses: { type: 'string' },
  limit: { type: 'string', multiple: true },
  ...HELP_OPTION,
} as const;

async function mount(rawArgs: string[]): Promise<number | 'serving'> {
  const args = parsed('mount', () => expandMountOptions(rawArgs));
  const { values, positionals } = parsed('mount', () => parseArgs({ args, allowPositionals: true, options: MOUNT_OPTIONS }));
  if (values.help) return help('mount');
  let limits: UserLimits = { ...DEFAULT_LIMITS };
  for (const spec of values.limit ?? []) {
    const r = parseLimit(limits, spec);
    if (r instanceof Error) throw new UsageError(`${r.message}\n\n${HELP.mount}`);
    limits = r;
  }
  if (positionals.length > 1) throw new UsageError(`mount takes one DIR\n\n${HELP.mount}`);
  const level = values['log-level'] !== undefined ? parseLogLevel(values['log-level'])
    : values.verbose ? 'debug' : values.quiet ? 'warning' : undefined;
  if (level === null) throw new UsageError(`--log-level is one of ${LOG_LEVELS.join(', ')}\n\n${HELP.mount}`);
  if (level) setLogLevel(level);
  if (values['log-file'] !== undefined && !values.detach) {
    throw new UsageError(`--log-file is for a detached server (--detach); in the foreground, redirect stderr\n\n${HELP.mount}`);
  }
  const wanted = mountDir(positionals[0], DEFAULT_MOUNTPOINT);
  checkCanMount();
  if (values.detach) return serveDetached(args, values['log-file']);

  const { native } = await import('./fuse/native.js');
  useSocketSend(native.sendDontWait);
  if (!process.execArgv.some((a) => a.startsWith(SEMI_SPACE_FLAG))) {
    // Only read at startup: this process becomes node with it (same pid).
    const argv = [process.execPath, `${SEMI_SPACE_FLAG}=${SEMI_SPACE_MIB}`, ...process.execArgv, ...process.argv.slice(1)];
    const e = native.execSelf(process.execPath, argv);
    log('mount', `cannot re-execute with ${SEMI_SPACE_FLAG} (errno ${-e}): serving with V8's default heap`);
  }
  // The core is loaded only after the re-execution above: loading it twice slows every start.
  const { ParamsSession, parseUllong } = await import('./params.js');
  const { moduleParams } = await import('./core/module.js');
  if (values['attach-flags-mask'] !== undefined) {
    const mask = parseUllong(values['attach-flags-mask']);
    if (typeof mask === 'number') throw new UsageError(`--attach-flags-mask needs a 64-bit number\n\n${HELP.mount}`);
    moduleParams.attachFlagsMask = mask;
  }
  // A bad configuration stops the mount before anything is made.
  const { readBusConfig } = await import('./config-buses.js');
  const buses = values.buses === undefined ? [] : readBusConfig(resolve(values.buses));
  const { KdbusServer } = await import('./server.js');
  const { censusLine } = await import('./core/census.js');
  const { Notifier } = await import('./notify.js');
  const notifier = new Notifier(native.datagramSend);

  // A server that crashed leaves a dead mount (ENOTCONN) that would make the new one fail.
  if (native.clearStaleMount(wanted)) log('mount', `detached a stale mount on ${wanted}`);
  if (mountedType(wanted) === FSTYPE) {
    throw new Error(`${wanted} is already served by another kdbusfs; \`kdbusfs umount ${wanted}\` first`);
  }
  checkNotOtherMount(wanted, FSTYPE);
  const made = missingDirs(wanted);
  let server;
  let dir: string;
  try {
    dir = prepareMountpoint(wanted);
    server = KdbusServer.start({
      mountpoint: dir,
      passthrough: !values['no-passthrough'],
      limits,
      onSessionEnd: () => {
        notifier.stopping(`${dir} was unmounted`);
        log('mount', `${dir} was unmounted: exiting`);
        logFlush();
      },
    });
  } catch (e) {
    removeDirs(made);
    throw new Error(explainMountError((e as Error).message));
  }
  const serving = server;
  const where = dir;
  let params: { stop(): void; file: string; dir: string } | undefined;
  let sysModuleOverlaid = false;
  // However the server ends (signal, unmount, failure to start), what was made for it goes.
  process.on('exit', () => {
    params?.stop();
    // the default place is kdbusfs's own: a server killed earlier may have left it
    if (params?.dir === DEFAULT_PARAMS_DIR) {
      try {
        rmdirSync(DEFAULT_PARAMS_DIR);
      } catch { /* already gone (or in use by another namespace's server) */ }
    }
    if (sysModuleOverlaid) removeSysfsOverlay(SYS_MODULE);
    releaseMountpoint(where);
  });
  // A failure from here on stops the server; the exit handler removes the rest.
  try {
    serving.holdBuses(buses);
    const paramsDir = values['params-dir'] ?? (where === DEFAULT_MOUNTPOINT ? DEFAULT_PARAMS_DIR : undefined);
    if (paramsDir !== undefined) {
      const at = resolve(paramsDir);
      // where the module had it: sysfs cannot make the directory, a tmpfs over /sys/module can
      if (at.startsWith(`${SYS_MODULE}/`) && !existsSync(at)) {
        makeSysfsOverlay(SYS_MODULE, relative(SYS_MODULE, at));
        sysModuleOverlaid = true;
      }
      params = ParamsSession.start(at);
      log('mount', `attach_flags_mask 0x${moduleParams.attachFlagsMask.toString(16)} served at ${params.file}`);
    }
  } catch (e) {
    serving.stop();
    throw e;
  }
  const pools = values['no-passthrough'] ? 'page-cache pools' : 'passthrough pools where the kernel allows them';
  // Served once the kernel's INIT is answered, on this loop, soon after the mount.
  const waitServed = setInterval(() => {
    if (!serving.served) return;
    clearInterval(waitServed);
    log('mount', `serving kdbus on ${where} (${pools}); SIGINT, SIGTERM or \`umount ${where}\` to stop`);
    notifier.ready(`serving kdbus on ${where}`);
    reportReady();
  }, 5);

  const stop = (sig: NodeJS.Signals): void => {
    log('mount', `${sig}: unmounting ${where}`);
    notifier.stopping(`${sig}: unmounting ${where}`);
    clearInterval(waitServed);
    serving.stop();
    logFlush();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGUSR2', () => logLine(censusLine(serving.census())));
  return 'serving';
}

/** `mount --detach`: the same command, without --detach, as a server in the background. */
async function serveDetached(args: string[], logFile: string | undefined): Promise<number> {
  const served: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--log-file') i++;
    else if (args[i] !== '--detach' && !args[i]!.startsWith('--log-file=')) served.push(args[i]!);
  }
  const childArgs = [`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MIB}`, ...process.execArgv, CLI_PATH, 'mount', ...served];
  let stderr: 'inherit' | 'ignore' | number = stderrIsJournal() ? 'inherit' : 'ignore';
  if (logFile !== undefined) {
    try {
      stderr = openSync(logFile, 'a', 0o640);
    } catch (e) {
      throw new Error(`--log-file ${logFile}: ${(e as Error).message}`);
    }
  }
  const failure = await startDetached(process.execPath, childArgs, stderr);
  if (failure !== null) throw new Error(failure);
  return 0;
}

function umount(args: string[]): number {
  const { values, positionals } = parsed('umount', () => parseArgs({
    args, allowPositionals: true, options: HELP_OPTION,
  }));
  if (values.help) return help('umount');
  if (positionals.length !== 1) throw new UsageError(`umount takes exactly one DIR\n\n${HELP.umount}`);
  const dir = resolve(positionals[0]!);
  const type = mountedType(dir);
  if (type !== FSTYPE) {
    throw new Error(`${dir} is not a kdbusfs mount (${type ? `it is ${type}` : 'nothing is mounted there'})`);
  }
  try {
    execFileSync('umount', ['-l', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`umount -l ${dir} failed: ${(e as { stderr?: Buffer }).stderr?.toString().trim()}`);
  }
  log('umount', `detached ${dir}`);
  return 0;
}

async function selftest(args: string[]): Promise<number> {
  // Everything after `--` goes to kdbus-test untouched.
  const split = args.indexOf('--');
  const ours = split < 0 ? args : args.slice(0, split);
  const rest = split < 0 ? [] : args.slice(split + 1);
  const { values, positionals } = parsed('selftest', () => parseArgs({
    args: ours,
    allowPositionals: true,
    options: {
      binary: { type: 'string' },
      'kdbus-tree': { type: 'string' },
      'no-passthrough': { type: 'boolean' },
      'test-timeout': { type: 'string' },
      ...HELP_OPTION,
    },
  }));
  if (values.help) return help('selftest');
  if (positionals.length) throw new UsageError(`kdbus-test arguments go after \`--\`\n\n${HELP.selftest}`);
  const testTimeout = Number(values['test-timeout'] ?? 120);
  if (!Number.isFinite(testTimeout) || testTimeout < 0) {
    throw new UsageError(`--test-timeout needs a number of seconds\n\n${HELP.selftest}`);
  }
  const { runSelftests } = await import('./selftest.js');
  return runSelftests({
    binary: values.binary,
    kdbusTree: values['kdbus-tree'],
    passthrough: !values['no-passthrough'],
    testTimeout,
    args: rest,
  });
}

function help(command: string): number {
  process.stdout.write(HELP[command]!);
  return 0;
}

/** package.json's version, beside dist/ (or beside lib/ when run from source). */
function version(): number {
  for (const up of ['../..', '..']) {
    try {
      const pkg = JSON.parse(readFileSync(join(dirname(CLI_PATH), up, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'kdbusfs') {
        process.stdout.write(`kdbusfs ${pkg.version}\n`);
        return 0;
      }
    } catch {
      // not there: try the next place
    }
  }
  throw new Error('cannot find kdbusfs\'s package.json');
}

/** mount(8)'s helper (mount.fuse.kdbusfs) and mount.fuse3 call `kdbusfs SOURCE DIR -o OPTIONS`. */
async function mountHelper(argv: string[]): Promise<CommandResult> {
  let call;
  try {
    call = fromMountHelper(argv);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${topHelp()}`);
  }
  if (call.fake) return 0;
  return mount(call.args);
}

/** Every command, as `kdbusfs NAME...` selects it (two-word names such as `bus make` included). */
const COMMANDS: readonly Command[] = [
  { name: 'mount', synopsis: 'mount [DIR]', summary: `mount kdbusfs on DIR (default ${DEFAULT_MOUNTPOINT}) and serve it`, help: HELP.mount!, run: mount, logsErrors: true },
  { name: 'umount', synopsis: 'umount DIR', summary: 'detach a kdbusfs mount (also one whose server died)', help: HELP.umount!, run: umount, logsErrors: true },
  { name: 'selftest', synopsis: 'selftest', summary: 'build and run the upstream kdbus selftests against kdbusfs', help: HELP.selftest!, run: selftest, logsErrors: true },
  listCommand,
  statusCommand,
  callCommand,
  emitCommand,
  getPropertyCommand,
  setPropertyCommand,
  introspectCommand,
  treeCommand,
  busMakeCommand,
  endpointMakeCommand,
  monitorCommand,
  statsCommand,
  proxyCommand,
];

/** The command being run: its failures are reported as it wants them. */
let running: Command | undefined;

function topHelp(): string {
  const width = Math.min(22, Math.max(...COMMANDS.map((c) => c.synopsis.length))) + 2;
  const lines = COMMANDS.map((c) => c.synopsis.length + 2 > width ? `  ${c.synopsis}\n  ${' '.repeat(width)}${c.summary}`
    : `  ${c.synopsis.padEnd(width)}${c.summary}`);
  return `Usage: kdbusfs <command> [options]

kdbus (the 2015 v3 kernel D-Bus IPC) served from userspace through FUSE.

Commands:
${lines.join('\n')}
  SOURCE DIR -o OPTIONS
  ${' '.repeat(width)}as mount(8) and mount.fuse3 run it (\`mount -t fuse.kdbusfs
  ${' '.repeat(width)}kdbusfs DIR\`, fstab): \`mount --detach DIR -o OPTIONS\`

A bus is a name under the root (\`0-system\`) or a path. The root is --root
DIR, else $KDBUSFS_ROOT, else /sys/fs/kdbus. Exit codes: 0 done, 1 failed,
2 usage error.

Options: -h, --help; --version

Run \`kdbusfs <command> --help\` for a command's options.
`;
}

async function main(argv: string[]): Promise<CommandResult> {
  const [first] = argv;
  if (first === undefined) throw new UsageError(topHelp());
  if (first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(topHelp());
    return 0;
  }
  if (first === '--version') return version();
  const found = findCommand(COMMANDS, argv);
  if (found) {
    running = found.command;
    return found.command.run(found.args);
  }
  const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
  if (group.length) {
    throw new UsageError(`'${first}' needs one of: ${group.map((c) => c.name.split(' ')[1]).join(', ')}\n\n${topHelp()}`);
  }
  if (argv.length >= 2 && !first.startsWith('-') && !argv[1]!.startsWith('-')) return mountHelper(argv);
  throw new UsageError(`unknown command '${first}'\n\n${topHelp()}`);
}

const CLI_PATH = fileURLToPath(import.meta.url);
/** Run as mount(8)'s helper (/sbin/mount.fuse.kdbusfs, a link to bin/mount.fuse.kdbusfs): its argv is SOURCE DIR ... */
const AS_MOUNT_HELPER = process.env.KDBUSFS_MOUNT_HELPER === '1';
delete process.env.KDBUSFS_MOUNT_HELPER;

(AS_MOUNT_HELPER ? mountHelper(process.argv.slice(2)) : main(process.argv.slice(2))).then((result) => {
  if (result !== 'serving') process.exitCode = result;
}, (e: Error) => {
  const message = e instanceof UsageError ? e.message : explainMountError(e.message);
  if (detached()) reportFailure(message.split('\n\n')[0]!);
  if (e instanceof UsageError) {
    process.stderr.write(`kdbusfs: ${message}`.trimEnd() + '\n');
    process.exitCode = EXIT_USAGE;
  } else if (running && !running.logsErrors) {
    // a bus command's failure: one plain line, as busctl says it
    process.stderr.write(`kdbusfs ${running.name}: ${e.message}\n`);
    process.exitCode = EXIT_FAILURE;
  } else {
    logError('cli', message);
    process.exitCode = EXIT_FAILURE;
  }
});
