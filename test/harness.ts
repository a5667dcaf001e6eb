// The harness of the end-to-end tests (integration, names-policy,
// calls-quotas, containers, fuzz): compiling a C client, a real
// `kdbusfs mount DIR` in its own process (started, waited for, stopped with
// SIGTERM), and Peer, one test/clients/kdbus-peer.c process driven through
// its line protocol (a command line in, one answer line out).
//
// Nothing here touches a mount synchronously: a stuck server can only make
// an awaited promise time out, never block the event loop. Every wait has a
// timeout. Not a test itself (tap runs test/**/*.test.ts only).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import type { Census } from '../lib/core/census.js';
import { sleep, until, withTimeout } from './helpers.js';

// the shared helpers, for the end-to-end tests that import everything from here
export { sleep, until, withTimeout };
export type Tap = Test;
export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const cli = join(root, 'dist/lib/cli.js');
export const run = promisify(execFile);

/** Ends the test file with a plan of 0 unless this process can mount kdbusfs. */
export function needRootAndFuse(): void {
  if (process.getuid?.() !== 0 || !existsSync('/dev/fuse')) {
    t.plan(0, 'needs root and /dev/fuse to mount kdbusfs');
    process.exit(0);
  }
}

/** gcc -O2 -Wall FLAGS -Iinclude -o OUT test/clients/SOURCE (the project's own kdbus ABI header); returns OUT. */
export async function compileClient(source: string, out: string, flags: string[] = []): Promise<string> {
  await run('gcc', ['-O2', '-Wall', ...flags, `-I${join(root, 'include')}`, '-o', out, join(root, 'test/clients', source)],
    { timeout: 30_000 });
  return out;
}

/** The fstype mounted at dir, from the mount table (never touching dir). */
export function mountType(dir: string): string | null {
  const line = readFileSync('/proc/self/mounts', 'utf8').split('\n').reverse()
    .find((l) => l.split(' ')[1] === dir);
  return line ? line.split(' ')[2]! : null;
}

/** stat through the mount, bounded; null when the path does not exist. */
export async function statOf(path: string): Promise<{ mode: number; uid: number; gid: number; dir: boolean } | null> {
  try {
    const s = await withTimeout(stat(path), 5000, `stat ${path}`);
    return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, dir: s.isDirectory() };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

// ---- the server ----

export interface Server {
  readonly child: ChildProcess;
  readonly ended: Promise<Exit>;
  readonly exited: boolean;
  readonly stderr: string;
}

/**
 * Spawns a server process (stderr collected, KDBUSFS_QUIET=1); when t ends
 * it is SIGKILLed if still running and, given a dir, a mount left at dir is
 * unmounted.
 */
export function spawnServer(t: Tap, command: string, args: string[],
                            opts: { dir?: string; dies?: string } = {}): Server {
  const child = spawn(command, args, {
    env: { ...process.env, KDBUSFS_QUIET: '1' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  const s = { child, ended: undefined as unknown as Promise<Exit>, exited: false, stderr: '' };
  child.stderr!.on('data', (d: Buffer) => { s.stderr += d.toString(); });
  s.ended = new Promise<Exit>((done) =>
    child.on('close', (code, signal) => { s.exited = true; done({ code, signal }); }));
  t.teardown(async () => {
    if (!s.exited) {
      child.kill('SIGKILL');
      await withTimeout(s.ended, 5000, opts.dies ?? 'server dies').catch(() => undefined);
    }
    const dir = opts.dir;
    if (dir && mountType(dir)) await run(process.execPath, [cli, 'umount', dir], { timeout: 10_000 }).catch(() => undefined);
  });
  return s;
}

/** Up when dir/control can be stat'ed (statOf). */
async function controlServed(dir: string): Promise<boolean> {
  return (await statOf(join(dir, 'control')).catch(() => null)) !== null;
}

/**
 * `[wrap] node [start] mount DIR [args]` (start defaults to the CLI; wrap: a
 * command that execs the rest, e.g. prlimit), waited for up to 30 s:
 * mounted as fuse.kdbusfs and served (probe). Fails t and returns null when
 * it does not come up.
 */
export async function startServer(t: Tap, dir: string, opts: {
  start?: string[]; args?: string[]; probe?: (dir: string) => Promise<boolean>; every?: number; wrap?: string[];
} = {}): Promise<Server | null> {
  const argv = [...(opts.wrap ?? []), process.execPath, ...(opts.start ?? [cli]), 'mount', dir, ...(opts.args ?? [])];
  const s = spawnServer(t, argv[0]!, argv.slice(1), { dir });
  const probe = opts.probe ?? controlServed;
  const up = await until(async () => {
    if (s.exited) return true;
    if (mountType(dir) !== 'fuse.kdbusfs') return false;
    return probe(dir);
  }, 30_000, opts.every);
  if (!up || s.exited) {
    t.fail(`kdbusfs mount did not come up: ${s.stderr}`);
    return null;
  }
  return s;
}

/** SIGTERM: asserts exit 0 and, given gone (the assertion's name), that dir is unmounted. */
export async function stopServer(t: Tap, s: Server, dir?: string, gone = 'the mount is gone'): Promise<void> {
  s.child.kill('SIGTERM');
  const r = await withTimeout(s.ended, 10_000, 'kdbusfs exits on SIGTERM').catch(() => null);
  t.equal(r?.code, 0, 'kdbusfs exits 0 on SIGTERM', { stderr: s.stderr });
  if (dir !== undefined) t.equal(mountType(dir), null, gone);
}

// ---- the server's census (lib/core/census.ts) ----

export type { Census };

/** SIGUSR2 makes the server write its census as one stderr line: sends it, waits for that line. */
export async function census(s: Server, ms = 5000): Promise<Census> {
  const from = s.stderr.length;
  s.child.kill('SIGUSR2');
  let found: Census | null = null;
  await until(() => {
    const m = /kdbusfs\[census\] (\{.*\})\n/.exec(s.stderr.slice(from));
    if (m) found = JSON.parse(m[1]!) as Census;
    return found !== null;
  }, ms);
  if (!found) throw new Error(`no census line from the server within ${ms} ms (exited: ${s.exited})`);
  return found;
}

/**
 * The counts (memory aside) that differ between two censuses: name -> [base,
 * now]; per-user charges as `charged uids` when any differs.
 */
export function censusDiff(base: Census, now: Census): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  if (JSON.stringify(base.accounts.byUid) !== JSON.stringify(now.accounts.byUid)) {
    out['charged uids'] = [Object.keys(base.accounts.byUid).length, Object.keys(now.accounts.byUid).length];
  }
  for (const [k, v] of Object.entries(now)) {
    if (k === 'memory' || k === 'accounts') continue;
    const b = (base as unknown as Record<string, number>)[k]!;
    if (v !== b) out[k] = [b, v as number];
  }
  return out;
}

/**
 * Waits (up to ms) until every count of the server's census equals base's
 * (closes and releases reach the server after the clients are gone);
 * returns the last census and the counts still off (empty: back).
 */
export async function censusBack(s: Server, base: Census, ms = 5000):
    Promise<{ now: Census; off: Record<string, [number, number]> }> {
  let now = await census(s);
  await until(async () => Object.keys(censusDiff(base, now = await census(s))).length === 0, ms, 50);
  return { now, off: censusDiff(base, now) };
}

// ---- peers ----

export interface Reply {
  ok: boolean;
  /** the errno name of an "err" answer */
  err: string | null;
  kv: Record<string, string>;
  line: string;
}

/** An answer line: "ok k=v ..." or "err ERRNO ...". */
export function parseReply(line: string): Reply {
  const words = line.split(' ');
  const kv: Record<string, string> = {};
  for (const w of words) {
    const i = w.indexOf('=');
    if (i > 0) kv[w.slice(0, i)] = w.slice(i + 1);
  }
  const ok = words[0] === 'ok';
  return { ok, err: ok ? null : (words[1] ?? '?'), kv, line };
}

/** Every Peer process still running. */
export const live = new Set<Peer>();

/** One kdbus-peer process (or nsenter running one): a command line in, one answer line out. */
export class Peer {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  id = 0;
  private out = '';
  private lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private closed = false;
  stderr = '';

  constructor(readonly name: string, argv: string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    this.child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        this.lines.push(this.out.slice(0, nl));
        this.out = this.out.slice(nl + 1);
      }
      this.wake();
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.child.stdin!.on('error', () => { /* the peer died; its answers say so */ });
    this.exited = new Promise((done) => this.child.on('close', (code, signal) => {
      this.closed = true;
      live.delete(this);
      this.wake();
      done({ code, signal });
    }));
  }

  get pid(): number { return this.child.pid!; }

  private wake(): void {
    if (!this.waiter) return;
    if (this.lines.length) {
      const w = this.waiter;
      this.waiter = null;
      w(this.lines.shift()!);
    } else if (this.closed) {
      const w = this.waiter;
      this.waiter = null;
      w(null);
    }
  }

  private nextLine(ms: number, what: string): Promise<string> {
    if (this.waiter) throw new Error(`${this.name}: two commands at once`);
    const line = new Promise<string>((resolve, reject) => {
      this.waiter = (l) => (l === null ? reject(new Error(`${this.name} exited during: ${what} ${this.stderr}`)) : resolve(l));
      this.wake();
    });
    return withTimeout(line, ms, `${this.name}: ${what}`).catch((e) => {
      // Answers would come out of step after a lost one: this peer is done.
      this.waiter = null;
      this.kill();
      throw e;
    });
  }

  /** Waits for the first answer line (ms: a container engine takes longer to start one). */
  async ready(ms = 5000): Promise<this> {
    await this.nextLine(ms, 'start');
    return this;
  }

  async cmd(line: string, ms = 5000): Promise<Reply> {
    const answer = this.nextLine(ms, line);
    this.child.stdin!.write(line + '\n');
    return parseReply(await answer);
  }

  kill(): void {
    if (!this.closed) this.child.kill('SIGKILL');
  }
}

/** Starts a ready peer: argv defaults to the test's client alone. */
export type NewPeer = (name: string, argv?: string[]) => Promise<Peer>;

/** A test's peers (running client unless given another argv), killed when the test ends. */
export function peerSet(t: Tap, client: string): NewPeer {
  const mine: Peer[] = [];
  t.teardown(async () => {
    // Killing a container's first peer (its pid 1) kills everything in its pid namespace.
    for (const p of mine) p.kill();
    await Promise.all(mine.map((p) => withTimeout(p.exited, 5000, `${p.name} exits`).catch(() => undefined)));
  });
  return async (name, argv = [client]) => {
    const p = new Peer(name, argv);
    mine.push(p);
    return p.ready();
  };
}

/** Asserts an ok answer; returns it. */
export function ok(t: Tap, r: Reply, what: string): Reply {
  t.ok(r.ok, what, { answer: r.line });
  return r;
}

/** Asserts an error answer with the given errno name. */
export function fails(t: Tap, r: Reply, errno: string, what: string, extra: object = {}): void {
  t.equal(r.err, errno, what, { answer: r.line, ...extra });
}

/** HELLO (ACCEPT_FD) on bus; sets p.id. */
export async function hello(t: Tap, p: Peer, bus: string): Promise<Peer> {
  const r = ok(t, await p.cmd(`hello ${bus}`), `${p.name}: HELLO`);
  p.id = Number(r.kv.id ?? 0);
  return p;
}

/** HELLO with options (kdbus-peer's connect); sets p.id. */
export async function connect(t: Tap, p: Peer, bus: string, opts: string, what: string): Promise<Peer> {
  const r = ok(t, await p.cmd(`connect ${bus} ${opts}`), what);
  p.id = Number(r.kv.id ?? 0);
  return p;
}

/** A world-accessible bus (bloom 64, 1 hash) made by a root peer that keeps its control fd open. */
export async function makeBus(t: Tap, newPeer: NewPeer, dir: string, name: string): Promise<{ maker: Peer; path: string }> {
  const maker = await newPeer(`maker(${name})`);
  ok(t, await maker.cmd(`make ${dir}/control ${name} world 64 1`), `root: BUS_MAKE ${name} with MAKE_ACCESS_WORLD`);
  return { maker, path: `${dir}/${name}/bus` };
}
