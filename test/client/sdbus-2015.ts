// What the sd-bus 2015 interop tests share (dbus-sdbus-*.test.ts): the
// build of ../shared/sd-bus-2015 (once, cached in the user's cache dir), C
// programs linked against it, and a private mount namespace with kdbusfs on
// /sys/fs/kdbus and the bus 0-system (sd-bus's default system bus address).
// Not a test itself.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import t from 'tap';
import { cli, needRootAndFuse, root, run, until, withTimeout, type Tap } from '../harness.js';

export const SHARED = join(root, '../shared/sd-bus-2015');
export const SYSTEM_BUS = '/sys/fs/kdbus/0-system/bus';
const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kdbusfs');
const build = join(cache, 'sd-bus-2015');

/** Ends the test file (planned empty, with the reason) when the sd-bus 2015 tree is missing; else needs root and FUSE. */
export function needSdBus2015(): void {
  if (!existsSync(join(SHARED, 'build.sh'))) {
    t.plan(0, `the sd-bus 2015 tree is missing (${SHARED}): nothing to interoperate with`);
    process.exit(0);
  }
  needRootAndFuse();
  // the first build takes minutes; later runs reuse it
  t.setTimeout(1_500_000);
}

/** sd-bus 2015 built (the first time only); its busctl and its source tree. */
export async function buildSdBus(): Promise<{ busctl: string; src: string }> {
  mkdirSync(cache, { recursive: true });
  await run('bash', [join(SHARED, 'build.sh'), build], { timeout: 1_400_000, maxBuffer: 64 << 20 });
  const src = join(build, 'src');
  return { busctl: join(src, 'busctl'), src };
}

/** A C program of the project (path relative to the checkout) linked against sd-bus 2015; the binary's path. */
export async function buildAgainstSdBus(source: string, src: string): Promise<string> {
  const out = join(cache, basename(source, '.c'));
  // built aside and renamed over: another test file may be running the last build
  const building = `${out}.${process.pid}`;
  await run('gcc', ['-O1', '-Wall', '-Werror', `-I${join(src, 'src/systemd')}`, '-o', building,
    join(root, source), join(src, '.libs/libsystemd-internal.a'),
    join(src, '.libs/libsystemd-shared.a'), '-lcap', '-lm', '-lrt', '-pthread'], { timeout: 120_000 });
  renameSync(building, out);
  return out;
}

/**
 * A private mount namespace with kdbusfs on /sys/fs/kdbus and the bus
 * 0-system in it, held by a shell until the test ends; `enter` prefixes a
 * command to run it inside.
 */
export async function namespaceWithSystemBus(t: Tap): Promise<{ enter: string[] }> {
  const script = `
    node "$1" mount & srv=$!
    for i in $(seq 400); do [ -e /sys/fs/kdbus/control ] && break; sleep 0.05; done
    node "$2/test/client/system-bus.mjs" & bus=$!
    for i in $(seq 400); do [ -e ${SYSTEM_BUS} ] && break; sleep 0.05; done
    trap 'kill $bus; kill -TERM $srv; wait $srv; exit 0' TERM
    [ -e ${SYSTEM_BUS} ] && echo ready
    wait`;
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli, root],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KDBUSFS_QUIET: '1' } });
  let out = '';
  let err = '';
  let exited = false;
  holder.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  holder.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const ended = new Promise<void>((resolve) => holder.on('exit', () => { exited = true; resolve(); }));
  t.teardown(async () => {
    holder.kill('SIGTERM');
    await withTimeout(ended, 10_000, 'the namespace holder stopping').catch(() => holder.kill('SIGKILL'));
  });
  if (!await until(() => exited || out.includes('ready'), 30_000, 50) || exited) {
    throw new Error(`no kdbusfs with 0-system in the namespace: ${err}`);
  }
  return { enter: ['nsenter', '-t', String(holder.pid), '-m', '--'] };
}

/** A long-running process inside the namespace: its output so far, killed when t ends. */
export function startInside(t: Tap, enter: string[], cmd: string, args: string[]) {
  const child = spawn(enter[0]!, [...enter.slice(1), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { child, out: '', err: '' };
  child.stdout.on('data', (d: Buffer) => { p.out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { p.err += d.toString(); });
  t.teardown(() => { child.kill('SIGKILL'); });
  return p;
}

/** Waits until `p` printed `text` on stdout (or stream) (false when it exited or the time ran out). */
export async function printed(p: { child: { exitCode: number | null }; out: string; err: string }, text: string | RegExp,
                              stream: 'out' | 'err' = 'out', ms = 20_000): Promise<boolean> {
  const seen = (): boolean => (typeof text === 'string' ? p[stream].includes(text) : text.test(p[stream]));
  await until(() => seen() || p.child.exitCode !== null, ms, 50);
  return seen();
}
