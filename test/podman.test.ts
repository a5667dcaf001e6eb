// Real containers from a real engine: podman (Debian's package), rootful and
// rootless, with a kdbusfs bus directory bound in at creation (`-v`), a
// kdbus-peer inside talking to peers on the host, and the metadata each side
// receives translated into its own namespaces. No image registry is reachable
// here, so the root filesystem is a directory holding a static kdbus-peer
// (`--rootfs`).
//
// What this machine needs of podman (measured): crun refuses a host with hybrid
// cgroups ("cgroups in hybrid mode not supported"), so each podman runs in a
// private mount namespace without /sys/fs/cgroup/unified and with --cgroups
// disabled; root here lacks CAP_SYS_RESOURCE, so podman's default rlimits
// (raised above the current ones) are replaced by lower ones with --ulimit.
// The rootless container is run by uid 65534, which has no /etc/subuid range:
// podman then maps container root to 65534 alone (a single mapping).
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import {
  compileClient, connect, mountType, needRootAndFuse, ok, Peer, peerSet, startServer, stopServer, withTimeout,
} from './harness.js';

const sh = promisify(execFile);
const ATTACH_ANY = '0xffffffffffffffff';
const NOBODY = 65534;

t.setTimeout(240_000);
needRootAndFuse();
const podman = ['/usr/bin/podman', '/usr/local/bin/podman'].find((p) => existsSync(p));
if (!podman) {
  t.plan(0, 'podman is not installed (apt-get install podman)');
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-podman-'));
chmodSync(tmp, 0o755);
const mnt = join(tmp, 'mnt');
mkdirSync(mnt);
const rootfs = join(tmp, 'rootfs');
for (const d of ['dev', 'proc', 'sys', 'etc', 'run/kdbus/0-pod']) mkdirSync(join(rootfs, d), { recursive: true, mode: 0o755 });
await compileClient('kdbus-peer.c', join(rootfs, 'kdbus-peer'), ['-pthread', '-static']);
const home = join(tmp, 'home'); // the rootless user's HOME and XDG_RUNTIME_DIR (podman's storage)
mkdirSync(join(home, 'run'), { recursive: true, mode: 0o700 });
chownSync(home, NOBODY, NOBODY);
chownSync(join(home, 'run'), NOBODY, NOBODY);
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);
t.teardown(() => { if (!mountType(mnt)) rmSync(tmp, { recursive: true, force: true }); });

/** argv running podman ARGS as root or as the rootless user, in its own mount namespace (see the top). */
function podmanArgv(rootless: boolean, args: string[]): string[] {
  const user = rootless
    ? ['setpriv', '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups',
      'env', `HOME=${home}`, `XDG_RUNTIME_DIR=${join(home, 'run')}`]
    : [];
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c',
    // cd /: the checkout may be a directory the rootless user cannot enter
    'cd / && { umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"; }', 'sh', ...user, podman!, ...args];
}

/** A kdbus-peer in a new podman container with busDir bound at /run/kdbus/0-pod; removed when t ends. */
async function containerPeer(t: Test, name: string, rootless: boolean, busDir: string): Promise<Peer> {
  const cname = `kdbusfs-test-${process.pid}-${name}`;
  const p = new Peer(name, podmanArgv(rootless, [
    'run', '--rm', '-i', '--name', cname, '--network', 'none', '--cgroups', 'disabled',
    '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1000:1000',
    '-v', `${busDir}:/run/kdbus/0-pod`, '--rootfs', rootfs, '/kdbus-peer',
  ]));
  t.teardown(async () => {
    p.child.stdin!.end(); // kdbus-peer ends at EOF, and the container with it
    await withTimeout(p.exited, 20_000, `${name} exits`).catch(() => p.kill());
    await sh(podmanArgv(rootless, ['rm', '-f', '--ignore', cname])[0]!, podmanArgv(rootless, ['rm', '-f', '--ignore', cname]).slice(1))
      .catch(() => undefined);
  });
  await p.ready(60_000);
  return p;
}

/** The host's view of pid: its pid in every pid namespace, innermost last (NSpid). */
function nspids(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('NSpid:'))!;
  return line.split(/\s+/).slice(1).filter(Boolean).map(Number);
}

t.test('a bus bound into podman containers', async (t) => {
  const server = await startServer(t, mnt);
  if (!server) return;
  const maker = await peerSet(t, client)('maker');
  ok(t, await maker.cmd(`make ${mnt}/control 0-pod world 64 1`), 'host root: BUS_MAKE 0-pod (world access)');
  const bus = `${mnt}/0-pod/bus`;

  for (const rootless of [false, true]) {
    await t.test(rootless ? 'rootless podman (uid 65534)' : 'rootful podman', async (t) => {
      const newPeer = peerSet(t, client);
      // The host peer has the container root's host uid (0, or 65534 for rootless):
      // kdbus lets peers of the same uid talk without any policy.
      const hostUid = rootless ? NOBODY : 0;
      const host = await newPeer('host');
      if (rootless) ok(t, await host.cmd(`setuid ${NOBODY} ${NOBODY}`), `a host peer drops to uid ${NOBODY}`);
      await connect(t, host, bus, `recv:${ATTACH_ANY}`, `a host peer (uid ${hostUid}): HELLO`);
      const c = await containerPeer(t, rootless ? 'rootless' : 'rootful', rootless, `${mnt}/0-pod`);
      const w = ok(t, await c.cmd('whoami'), 'a kdbus-peer runs in the container');
      t.same([w.kv.pid, w.kv.uid], ['1', '0,0,0'], 'as pid 1 and uid 0 there', { answer: w.line });
      await connect(t, c, '/run/kdbus/0-pod/bus', `recv:${ATTACH_ANY}`, 'it HELLOs on the bus bound in with -v');

      ok(t, await c.cmd(`send ${host.id} cookie:1 vec:8`), 'container -> host');
      let r = ok(t, await host.cmd('recvmeta wait:2000'), 'the host peer receives it');
      const pid = Number((r.kv.pids ?? '').split(',')[0]);
      t.equal(pid > 0 && nspids(pid).at(-1), 1, 'PIDS: the host sees the sender\'s host pid (pid 1 in its container)', { answer: r.line });
      t.equal(r.kv.creds, Array(8).fill(hostUid).join(','), `CREDS: the host sees container root as uid ${hostUid}`);

      ok(t, await host.cmd(`send ${c.id} cookie:2 vec:8`), 'host -> container');
      r = ok(t, await c.cmd('recvmeta wait:2000'), 'the container receives it');
      t.equal(r.kv.pids, '0,0,0', 'PIDS: a sender outside its pid namespace shows as 0', { answer: r.line });
      t.equal(r.kv.creds, '0,0,0,0,0,0,0,0', `CREDS: host uid ${hostUid} is container uid 0: it shows as 0 inside`);

      if (rootless) {
        const root = await connect(t, await newPeer('root'), bus, '', 'a host peer as root: HELLO');
        ok(t, await root.cmd(`send ${c.id} cookie:3 vec:8`), 'host root -> container (root is privileged on the bus)');
        r = ok(t, await c.cmd('recvmeta wait:2000'), 'the container receives it');
        t.equal(r.kv.creds, Array(8).fill(NOBODY).join(','),
          `CREDS: host root has no mapping in the container: the overflow uid ${NOBODY}`, { answer: r.line });
      }
    });
  }
  await stopServer(t, server, mnt);
});
