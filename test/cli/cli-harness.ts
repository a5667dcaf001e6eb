// The harness of the bus commands' end-to-end tests: the kdbusfs command
// run as a process (as root or, from a staged world-readable copy, as
// another uid) with KDBUSFS_ROOT pointing at a test mount, and the
// long-running ones (bus make, endpoint make) started, read and stopped.
// Not a test itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { cli, until, type Tap } from '../harness.js';
import { nodeForOtherUid } from '../helpers.js';

export interface Ran { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

export interface CliOptions { root: string; uid?: number; staged?: string; env?: NodeJS.ProcessEnv }

function spawnCli(args: string[], o: CliOptions): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, KDBUSFS_ROOT: o.root, KDBUSFS_QUIET: '1', ...o.env };
  if (o.uid === undefined || o.uid === 0) return spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const [cmd, argv] = nodeForOtherUid(join(o.staged!, 'dist/lib/cli.js'), ...args);
  return spawn(cmd, argv, { env, uid: o.uid, gid: o.uid, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `kdbusfs ARGS` to its end (killed after ms): its exit and output. */
export function kdbusfs(o: CliOptions, ...args: string[]): Promise<Ran> {
  return runFor(30_000, o, ...args);
}

export function runFor(ms: number, o: CliOptions, ...args: string[]): Promise<Ran> {
  const child = spawnCli(args, o);
  const out: Ran = { code: null, signal: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => { out.stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out.stderr += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  return new Promise((resolve) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    resolve({ ...out, code, signal });
  }));
}

/** A command that holds what it made until a signal (bus make, endpoint make). */
export interface Held {
  child: ChildProcess;
  /** the path it printed */
  path: string;
  ended: Promise<Ran>;
  stop(signal?: NodeJS.Signals): Promise<Ran>;
}

/** Starts `kdbusfs ARGS`, waits for the path it prints; killed when t ends. */
export async function startHeld(t: Tap, o: CliOptions, ...args: string[]): Promise<Held> {
  const child = spawnCli(args, o);
  const out: Ran = { code: null, signal: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => { out.stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out.stderr += d.toString(); });
  let exited = false;
  const ended = new Promise<Ran>((resolve) => child.on('close', (code, signal) => {
    exited = true;
    resolve({ ...out, code, signal });
  }));
  t.teardown(() => { if (!exited) child.kill('SIGKILL'); });
  if (!await until(() => exited || out.stdout.includes('\n'), 30_000, 20) || exited) {
    throw new Error(`kdbusfs ${args.join(' ')} did not print its path: ${out.stderr}`);
  }
  return {
    child, path: out.stdout.trim(), ended,
    stop: (signal = 'SIGTERM') => {
      child.kill(signal);
      return ended;
    },
  };
}
