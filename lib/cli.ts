#!/usr/bin/env node
// The kdbusfs command: mount (serve in the foreground), umount, selftest.
// Commands load the native addon lazily, so --help works without it.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { log, logError } from './log.js';
import { DEFAULT_MOUNTPOINT, mountedType, prepareMountpoint } from './mountpoint.js';
import { DEFAULT_LIMITS, parseLimit, type UserLimits } from './core/user.js';

const FSTYPE = 'fuse.kdbusfs';
/**
 * The server's young generation, in MiB per semi-space. V8 grows it to 16
 * under load and keeps it: a server with 1000 idle connections after a burst
 * of connects took 113 MiB instead of 80. Requests allocate little and
 * briefly; 2 MiB cost nothing measurable (bench/run.sh figures, README).
 */
const SEMI_SPACE_FLAG = '--max-semi-space-size';
const SEMI_SPACE_MIB = 2;

const HELP: Record<string, string> = {
  top: `Usage: kdbusfs <command> [options]

kdbus (the 2015 v3 kernel D-Bus IPC) served from userspace through FUSE.

Commands:
  mount [DIR]      mount kdbusfs on DIR (default ${DEFAULT_MOUNTPOINT}) and serve it
  umount DIR       detach a kdbusfs mount (also one whose server died)
  selftest         build and run the upstream kdbus selftests against kdbusfs

Run \`kdbusfs <command> --help\` for a command's options.
`,
  mount: `Usage: kdbusfs mount [DIR] [--no-passthrough] [--limit NAME=VALUE]...

Mounts kdbusfs on DIR and serves it in the foreground until SIGINT or SIGTERM,
which unmount it and exit 0. Needs root (/dev/fuse and mount(2)). SIGUSR2
writes a census of the server's state (buses, connections, names, queued
messages, pool slices, held fds, memory...) to stderr as one JSON line.

DIR defaults to ${DEFAULT_MOUNTPOINT}, where the kernel module mounted it. Without
the module that directory does not exist and sysfs cannot create it, so kdbusfs
lays a tmpfs over /sys/fs that keeps every existing entry bound in place and adds
kdbus/. Any other DIR is created if missing.

Options:
  --no-passthrough   give each connection a page-cache pool instead of a FUSE
                     passthrough memfd (passthrough is used when the kernel allows)
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
  selftest: `Usage: kdbusfs selftest [--binary PATH] [--no-passthrough] [--test-timeout SEC] [-- ARGS...]

Builds kdbus-test from the upstream kdbus selftests (\$KDBUS_SELFTESTS_DIR, default
../shared/kdbus/tools/testing/selftests/kdbus beside the project) into
.cache/selftests, mounts kdbusfs on a temporary directory, and runs
\`kdbus-test --root DIR ARGS...\` in a private mount namespace where
/sys/module/kdbus/parameters/attach_flags_mask is served by kdbusfs too.
Exits with kdbus-test's exit code. Needs root.

Options:
  --binary PATH        run this kdbus-test instead of building one
  --no-passthrough     page-cache pools instead of passthrough
  --test-timeout SEC   kill a test still running after SEC seconds (default 120; 0: never)
  -h, --help           show this text

Examples:
  kdbusfs selftest -- --tap
  kdbusfs selftest -- -t chat
`,
};

class UsageError extends Error {}

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/** Runs a parseArgs call, turning its complaints into a usage error for command. */
function parsed<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${HELP[command]}`);
  }
}

async function mount(args: string[]): Promise<number | 'serving'> {
  const { values, positionals } = parsed('mount', () => parseArgs({
    args, allowPositionals: true, options: { 'no-passthrough': { type: 'boolean' }, limit: { type: 'string', multiple: true }, ...HELP_OPTION },
  }));
  if (values.help) return help('mount');
  let limits: UserLimits = { ...DEFAULT_LIMITS };
  for (const spec of values.limit ?? []) {
    const r = parseLimit(limits, spec);
    if (r instanceof Error) throw new UsageError(`${r.message}\n\n${HELP.mount}`);
    limits = r;
  }
  if (positionals.length > 1) throw new UsageError(`mount takes one DIR\n\n${HELP.mount}`);
  const { native } = await import('./fuse/native.js');
  if (!process.execArgv.some((a) => a.startsWith(SEMI_SPACE_FLAG))) {
    // Only read at startup: this process becomes node with it (same pid).
    const argv = [process.execPath, `${SEMI_SPACE_FLAG}=${SEMI_SPACE_MIB}`, ...process.execArgv, ...process.argv.slice(1)];
    const e = native.execSelf(process.execPath, argv);
    log('mount', `cannot re-execute with ${SEMI_SPACE_FLAG} (errno ${-e}): serving with V8's default heap`);
  }
  const { KdbusServer } = await import('./server.js');
  const { censusLine } = await import('./core/census.js');

  const wanted = resolve(positionals[0] ?? DEFAULT_MOUNTPOINT);
  // A server that crashed leaves a dead mount (ENOTCONN) that would make the new one fail.
  if (native.clearStaleMount(wanted)) log('mount', `detached a stale mount on ${wanted}`);
  if (mountedType(wanted) === FSTYPE) {
    throw new Error(`${wanted} is already served by another kdbusfs; \`kdbusfs umount ${wanted}\` first`);
  }
  const dir = prepareMountpoint(wanted);
  const server = KdbusServer.start({
    mountpoint: dir,
    passthrough: !values['no-passthrough'],
    limits,
  });
  // The pool kind is settled by the kernel's INIT and the first pool, after this point.
  log('mount', `serving kdbus on ${dir} (${values['no-passthrough'] ? 'page-cache pools' : 'passthrough pools where the kernel allows them'}); SIGINT or SIGTERM to unmount`);

  const stop = (sig: NodeJS.Signals): void => {
    log('mount', `${sig}: unmounting ${dir}`);
    server.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGUSR2', () => process.stderr.write(censusLine(server.census())));
  return 'serving';
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
    passthrough: !values['no-passthrough'],
    testTimeout,
    args: rest,
  });
}

function help(command: string): number {
  process.stdout.write(HELP[command]!);
  return 0;
}

async function main(argv: string[]): Promise<number | 'serving'> {
  const [command, ...args] = argv;
  switch (command) {
    case 'mount': return mount(args);
    case 'umount': return umount(args);
    case 'selftest': return selftest(args);
    case '-h': case '--help': case 'help': return help('top');
    case undefined: throw new UsageError(HELP.top!);
    default: throw new UsageError(`unknown command '${command}'\n\n${HELP.top}`);
  }
}

main(process.argv.slice(2)).then((result) => {
  if (result !== 'serving') process.exitCode = result;
}, (e: Error) => {
  if (e instanceof UsageError) {
    process.stderr.write(`kdbusfs: ${e.message}`.trimEnd() + '\n');
    process.exitCode = 2;
  } else {
    logError('cli', e.message);
    process.exitCode = 1;
  }
});
