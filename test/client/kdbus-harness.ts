// The harness of the client's end-to-end tests (test/client/kdbus-*.test.ts):
// a staged copy of the built client anybody can read, a kdbusfs mount, and
// Agent, one test/client/kdbus-agent.mjs process (optionally under another
// uid) driven through JSON lines. Every wait has a timeout; nothing here
// touches the mount synchronously. Not a test itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cli, mountType, root, spawnServer, statOf, until, withTimeout, type Server, type Tap } from '../harness.js';
import { nodeForOtherUid } from '../helpers.js';

export const NOBODY = 65534;

export interface Answer { ok: boolean; value?: any; code?: string; command?: string; why?: string; message?: string }

/**
 * A world-readable copy of what an agent runs (dist/lib, the addon, the
 * agent): the checkout itself may be 0700, and uid 65534 must read it.
 */
export function stageClient(): { dir: string; agent: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-client-'));
  chmodSync(dir, 0o755);
  cpSync(join(root, 'dist/lib'), join(dir, 'dist/lib'), { recursive: true });
  mkdirSync(join(dir, 'build/Release'), { recursive: true });
  copyFileSync(join(root, 'build/Release/kdbusfs_native.node'), join(dir, 'build/Release/kdbusfs_native.node'));
  mkdirSync(join(dir, 'test/client'), { recursive: true });
  const agent = join(dir, 'test/client/kdbus-agent.mjs');
  copyFileSync(join(root, 'test/client/kdbus-agent.mjs'), agent);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  return { dir, agent };
}

/**
 * A mount in a fresh 0755 temp dir (uid 65534 must reach it), stopped when
 * t ends. mask: the module's attach_flags_mask, set before the CLI starts (as
 * writing /sys/module/kdbus/parameters/attach_flags_mask would; the
 * default lets no EXE, CMDLINE, CAPS... through), as containers.test.ts does.
 */
export async function mountFresh(t: Tap, what: string, mask?: bigint): Promise<{ dir: string; server: Server }> {
  const base = mkdtempSync(join(tmpdir(), `kdbusfs-client-${what}-`));
  chmodSync(base, 0o755);
  const dir = join(base, 'mnt');
  mkdirSync(dir);
  const start = mask === undefined ? undefined : ['--max-semi-space-size=2', '--input-type=module', '-e', [
    `const m = await import(${JSON.stringify(pathToFileURL(join(root, 'dist/lib/core/module.js')).href)});`,
    `m.moduleParams.attachFlagsMask = ${mask}n;`,
    `process.argv.splice(1, 0, ${JSON.stringify(cli)});`,
    `await import(${JSON.stringify(pathToFileURL(cli).href)});`,
  ].join('\n')];
  // startServer's 10 s, with a longer wait for the wrapper's two imports on a loaded machine
  const server = spawnServer(t, process.execPath, [...(start ?? [cli]), 'mount', dir], { dir });
  const up = await until(async () => server.exited || (mountType(dir) === 'fuse.kdbusfs' && (await statOf(join(dir, 'control'))) !== null),
    30_000, 50);
  if (!up || server.exited) throw new Error(`mount did not come up at ${dir}: ${server.stderr}`);
  return { dir, server };
}

/**
 * mountFresh, then the bus `0-<what>` made by a root agent (world access,
 * and makeOpts): the agent factory, the mount dir, the maker and the bus.
 */
export async function mountWithBus(t: Tap, agentPath: string, what: string, makeOpts: Record<string, unknown> = {},
  mask?: bigint): Promise<{ dir: string; newAgent: (name: string, uid?: number) => Promise<Agent>; maker: Agent; bus: any }> {
  const { dir } = await mountFresh(t, what, mask);
  const newAgent = agents(t, agentPath);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: `0-${what}`, opts: { root: dir, access: 'world', ...makeOpts } });
  return { dir, newAgent, maker, bus };
}

/** One agent process. */
export class Agent {
  readonly child: ChildProcess;
  private out = '';
  private lines: string[] = [];
  private wake: (() => void) | null = null;
  private closed = false;
  stderr = '';

  constructor(readonly name: string, agentPath: string, uid = 0) {
    this.child = spawn(...nodeForOtherUid(agentPath), {
      stdio: ['pipe', 'pipe', 'pipe'], uid, gid: uid, cwd: '/',
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        this.lines.push(this.out.slice(0, nl));
        this.out = this.out.slice(nl + 1);
      }
      this.wake?.();
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.child.stdin!.on('error', () => undefined);
    this.child.on('close', () => { this.closed = true; this.wake?.(); });
  }

  get pid(): number { return this.child.pid!; }

  private async line(ms: number, what: string): Promise<string> {
    const got = new Promise<string>((resolve, reject) => {
      const check = (): void => {
        if (this.lines.length) { this.wake = null; resolve(this.lines.shift()!); }
        else if (this.closed) { this.wake = null; reject(new Error(`${this.name} exited during ${what}: ${this.stderr}`)); }
      };
      this.wake = check;
      check();
    });
    return withTimeout(got, ms, `${this.name}: ${what}`);
  }

  async ready(): Promise<this> {
    await this.line(10_000, 'start');
    return this;
  }

  /** One request; the answer (never throws for a failed op: see ok/code). */
  async req(op: string, args: Record<string, unknown> = {}, ms = 10_000): Promise<Answer> {
    const answer = this.line(ms, op);
    this.child.stdin!.write(JSON.stringify({ op, ...args }) + '\n');
    return JSON.parse(await answer) as Answer;
  }

  /** A request that must succeed: its value. */
  async do(op: string, args: Record<string, unknown> = {}, ms = 10_000): Promise<any> {
    const a = await this.req(op, args, ms);
    if (!a.ok) throw new Error(`${this.name}: ${op} failed: ${a.code} ${a.command ?? ''} ${a.why ?? ''} ${a.message ?? ''}`);
    return a.value;
  }

  kill(): void {
    if (!this.closed) this.child.kill('SIGKILL');
  }
}

/** Agents of a test, killed when it ends. */
export function agents(t: Tap, agentPath: string): (name: string, uid?: number) => Promise<Agent> {
  const mine: Agent[] = [];
  t.teardown(() => { for (const a of mine) a.kill(); });
  return async (name, uid = 0) => {
    const a = new Agent(name, agentPath, uid);
    mine.push(a);
    return a.ready();
  };
}
