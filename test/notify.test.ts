// systemd's readiness protocol as a Type=notify unit sees it: the test listens
// on a unix datagram socket (python3's socket module: Node has none) and runs
// `kdbusfs mount DIR` with NOTIFY_SOCKET naming it, once as a path, once in
// the abstract namespace ('@'). READY=1 (with STATUS= and MAINPID=) arrives
// once the mount serves, not before; STOPPING=1 on SIGTERM and on umount;
// the server exits 0 both ways. Without NOTIFY_SOCKET nothing is sent.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, mountType, needRootAndFuse, run, statOf, until, withTimeout, type Tap } from './harness.js';

needRootAndFuse();

// Binds a datagram socket at argv[1] ('@': abstract), says "bound", then
// prints each datagram it gets as one JSON string per line.
const LISTENER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = sys.argv[1]
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print('bound', flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

interface Listener { child: ChildProcess; got: string[] }

async function listen(t: Tap, path: string): Promise<Listener> {
  const child = spawn('python3', ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { child.kill(); });
  const l: Listener = { child, got: [] };
  let bound = false;
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === 'bound') bound = true;
      else l.got.push(JSON.parse(line) as string);
    }
  });
  if (!await until(() => bound, 10_000)) throw new Error('the datagram listener did not bind');
  return l;
}

function serve(t: Tap, dir: string, notifySocket: string | undefined): { child: ChildProcess; exit: Promise<number | null> } {
  const env: NodeJS.ProcessEnv = { ...process.env, KDBUSFS_QUIET: '1' };
  delete env.NOTIFY_SOCKET;
  if (notifySocket) env.NOTIFY_SOCKET = notifySocket;
  const child = spawn(process.execPath, [cli, 'mount', dir], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const exit = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (mountType(dir)) await run('umount', ['-l', dir]).catch(() => undefined);
  });
  return { child, exit };
}

function fields(datagram: string): Record<string, string> {
  return Object.fromEntries(datagram.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

for (const kind of ['path', 'abstract'] as const) {
  t.test(`READY=1 once the mount serves, STOPPING=1 on the way down (${kind} socket)`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-notify-'));
    t.teardown(() => { if (!mountType(dir)) rmSync(dir, { recursive: true, force: true }); });
    const socket = kind === 'path' ? join(dir, '.notify') : `@kdbusfs-test-notify-${process.pid}`;
    const mnt = join(dir, 'mnt');
    const l = await listen(t, socket);
    const s = serve(t, mnt, socket);
    t.ok(await until(() => l.got.length > 0, 15_000), 'a notification arrives');
    const ready = fields(l.got[0]!);
    t.equal(ready.READY, '1', 'the first is READY=1');
    t.equal(ready.MAINPID, String(s.child.pid), 'MAINPID is the server');
    t.match(ready.STATUS, `serving kdbus on ${mnt}`, 'with a STATUS line');
    t.ok(await statOf(join(mnt, 'control')), 'control is there when READY=1 arrives');
    if (kind === 'path') {
      s.child.kill('SIGTERM');
    } else {
      await run('umount', [mnt]);
    }
    t.equal(await withTimeout(s.exit, 10_000, 'the server exits'), 0, `exits 0 after ${kind === 'path' ? 'SIGTERM' : 'umount'}`);
    t.ok(await until(() => l.got.length > 1, 5000), 'another notification arrives');
    const stopping = fields(l.got[1]!);
    t.equal(stopping.STOPPING, '1', 'STOPPING=1');
    t.match(stopping.STATUS, kind === 'path' ? 'SIGTERM: unmounting' : 'was unmounted', 'with the reason as STATUS');
    t.equal(mountType(mnt), null, 'nothing left mounted');
  });
}

t.test('without NOTIFY_SOCKET nothing is sent (a listener hears nothing)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-notify-'));
  t.teardown(() => { if (!mountType(dir)) rmSync(dir, { recursive: true, force: true }); });
  const l = await listen(t, join(dir, '.notify'));
  const mnt = join(dir, 'mnt');
  const s = serve(t, mnt, undefined);
  t.ok(await until(async () => mountType(mnt) === 'fuse.kdbusfs' && await statOf(join(mnt, 'control')) !== null, 10_000),
    'mounted and served');
  s.child.kill('SIGTERM');
  t.equal(await withTimeout(s.exit, 10_000, 'the server exits'), 0, 'exits 0');
  t.same(l.got, [], 'no datagram');
});
