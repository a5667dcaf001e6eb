// `kdbusfs selftest`: builds the upstream kdbus selftests (kdbus-test) unmodified
// from a kdbus tree (lib/kdbus-tree.ts) into the cache (lib/cache-dir.ts), serves a kdbusfs mount and the module parameter file from this
// process, and runs kdbus-test against them in a private mount namespace.
// Everything here is asynchronous: the FUSE sessions are served by this very
// event loop, so any synchronous wait on a child that uses the mount deadlocks.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cacheDir } from './cache-dir.js';
import { findKdbusTree } from './kdbus-tree.js';
import { log, logError } from './log.js';
import { ParamsSession } from './params.js';
import { KdbusServer } from './server.js';

function collect(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }):
    Promise<{ code: number; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code: code ?? 128, output: output + (signal ? `killed by ${signal}\n` : '') }));
  });
}

/**
 * Builds kdbus-test in <cache>/selftests/kdbus from a copy of the sources, unless
 * the copy there was built from the same sources. Returns the binary's path.
 */
async function buildSelftests(kdbusTree: string | undefined): Promise<string> {
  const tree = findKdbusTree(kdbusTree);
  if (typeof tree === 'string') throw new Error(tree);
  const { selftests: dir, uapi } = tree;
  const cache = join(cacheDir(), 'selftests');
  const work = join(cache, 'kdbus');
  const binary = join(work, 'kdbus-test');
  const stampFile = join(cache, 'stamp');

  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile()).map((e) => e.name).sort();
  const hash = createHash('sha256').update(`${uapi}\0`);
  for (const name of names) hash.update(`${name}\0`).update(await readFile(join(dir, name))).update('\0');
  hash.update(await readFile(join(uapi, 'linux/kdbus.h')));
  const stamp = hash.digest('hex');

  const built = await readFile(stampFile, 'utf8').catch(() => '');
  if (built === stamp && existsSync(binary)) return binary;

  log('selftest', `building kdbus-test from ${dir}`);
  await rm(cache, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  for (const name of names) await copyFile(join(dir, name), join(work, name));
  // CFLAGS through the environment: the Makefile's `CFLAGS +=` lines (-D_GNU_SOURCE...)
  // would be dropped by `make CFLAGS=...`.
  const { code, output } = await collect('make', ['kdbus-test'],
    { cwd: work, env: { ...process.env, CFLAGS: `-I${uapi}` } });
  if (code !== 0) {
    const hint = output.includes('sys/capability.h')
      ? '\n(libcap headers missing: apt-get install libcap-dev)' : '';
    throw new Error(`building kdbus-test failed (make exit ${code}):\n${output.trimEnd()}${hint}`);
  }
  await writeFile(stampFile, stamp);
  return binary;
}

export interface SelftestOptions {
  /** A prebuilt kdbus-test instead of building one. */
  binary?: string;
  /** The kdbus tree to build kdbus-test from (default: lib/kdbus-tree.ts). */
  kdbusTree?: string;
  passthrough: boolean;
  /** Seconds one test may run before it is killed (0: never). */
  testTimeout: number;
  /** Passed to kdbus-test after --root. */
  args: string[];
}

/** Direct children of pid (every thread's). */
async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const kids: number[] = [];
  for (const tid of tasks) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const n of text.split(' ')) if (n.trim()) kids.push(Number(n));
  }
  return kids;
}

async function killTree(pid: number): Promise<void> {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...await childrenOf(all[i]!));
  for (const p of all) {
    try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
  }
}

// Runs as `sh -c SCRIPT sh BINARY ROOT PARAMFILE ARGS...` inside the private mount
// namespace: the kdbus module's parameter directory appears only there.
const NAMESPACE_SCRIPT = `set -e
mount -t tmpfs -o mode=0755 kdbusfs-module /sys/module
mkdir -p /sys/module/kdbus/parameters
touch /sys/module/kdbus/parameters/attach_flags_mask
mount --bind "$3" /sys/module/kdbus/parameters/attach_flags_mask
bin=$1 root=$2
shift 3
exec stdbuf -oL "$bin" --root "$root" "$@"`;

/** Runs kdbus-test against a fresh kdbusfs mount. Resolves to kdbus-test's exit code. */
export async function runSelftests(opts: SelftestOptions): Promise<number> {
  if (process.geteuid?.() !== 0) {
    throw new Error('kdbusfs selftest needs root (FUSE mounts and a private mount namespace)');
  }
  const binary = opts.binary ? resolve(opts.binary) : await buildSelftests(opts.kdbusTree);

  const root = await mkdtemp(join(tmpdir(), 'kdbusfs-selftest-'));
  let server: KdbusServer | undefined;
  let params: ParamsSession | undefined;
  try {
    server = KdbusServer.start({ mountpoint: root, passthrough: opts.passthrough });
    params = ParamsSession.start();
    log('selftest', `kdbusfs on ${root} (${opts.passthrough ? 'passthrough pools where the kernel allows them' : 'page-cache pools'}); running ${binary}`);
    return await runInNamespace(binary, root, params.file, opts);
  } finally {
    server?.stop();
    params?.stop();
    await rmdir(root).catch((e: Error) => logError('selftest', `removing ${root}: ${e.message}`));
  }
}

function runInNamespace(binary: string, root: string, paramFile: string, opts: SelftestOptions): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn('unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', NAMESPACE_SCRIPT, 'sh', binary, root, paramFile, ...opts.args],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = child.pid!;

    // Results seen so far: the running test is the next one (for the watchdog's message).
    let results = 0;
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      results += lines.filter((l) => /^(not )?ok \d+ /.test(l)).length;
    });

    // kdbus-test forks one child per test: one that outlives the timeout is hung.
    const seen = new Map<number, number>();
    const watchdog = opts.testTimeout > 0 ? setInterval(() => {
      void childrenOf(pid).then(async (kids) => {
        const now = Date.now();
        for (const k of seen.keys()) if (!kids.includes(k)) seen.delete(k);
        for (const k of kids) {
          const since = seen.get(k) ?? now;
          seen.set(k, since);
          if (now - since > opts.testTimeout * 1000) {
            logError('selftest', `test #${results + 1} still running after ${opts.testTimeout} s: killing it (pid ${k})`);
            seen.delete(k);
            await killTree(k);
          }
        }
      });
    }, 1000) : undefined;

    // Stop kdbus-test first and tear the mounts down once it has exited; if its
    // processes do not go within 5 s, tearing down (aborting the connection) frees them.
    let interrupted = 0;
    let grace: NodeJS.Timeout | undefined;
    const onSignal = (sig: NodeJS.Signals): void => {
      logError('selftest', `${sig}: stopping kdbus-test`);
      interrupted = 128 + constants.signals[sig];
      void killTree(pid);
      grace ??= setTimeout(() => { finish(); done(interrupted); }, 5000);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    const finish = (): void => {
      if (watchdog) clearInterval(watchdog);
      if (grace) clearTimeout(grace);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    child.on('error', (e) => { finish(); fail(e); });
    child.on('close', (code, signal) => {
      finish();
      done(interrupted || (code ?? 128 + (signal ? constants.signals[signal] : 0)));
    });
  });
}
