// Where the stats socket of a mount is (lib/stats-socket.ts): the mountpoint
// escaped as systemd-escape --path does it, a hash where the path would not
// fit a socket address; and a served socket answering, in a scratch directory.
import { existsSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { escapePath, serveStats, statsSocketPath } from '../../lib/stats-socket.js';
import { until } from '../helpers.js';

t.test('escaped as systemd-escape --path', async (t) => {
  t.equal(escapePath('/sys/fs/kdbus'), 'sys-fs-kdbus');
  t.equal(escapePath('/'), '-');
  t.equal(escapePath('/tmp/a-b/.c d/'), 'tmp-a\\x2db-.c\\x20d', 'as systemd-escape --path prints it');
  t.equal(escapePath('/.hidden'), '\\x2ehidden', 'a leading dot escaped');
  t.equal(escapePath('//run//x'), 'run-x', 'repeated slashes count once');
  t.equal(statsSocketPath('/sys/fs/kdbus'), '/run/kdbusfs-stats/sys-fs-kdbus.sock');
  const long = statsSocketPath(`/tmp/${'x'.repeat(120)}`);
  t.match(long, /^\/run\/kdbusfs-stats\/h-[0-9a-f]{32}\.sock$/, 'a path too long for sun_path: a hash');
  t.not(long, statsSocketPath(`/tmp/${'x'.repeat(121)}`), 'of the mountpoint');
});

t.test('served: one JSON line per client, root only, removed at close', { skip: process.getuid?.() === 0 ? false : 'needs root (chown of the directory)' }, async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'kdbusfs-stats-')), 'stats');
  let n = 0;
  const s = await serveStats('/some/mount', () => ({ n: ++n, big: 10n > 1n }), dir);
  t.equal(s.path, join(dir, 'some-mount.sock'));
  t.equal(statSync(s.path).mode & 0o777, 0o600, 'socket 0600');
  t.equal(statSync(dir).mode & 0o777, 0o700, 'directory 0700');
  const read = (): Promise<string> => new Promise((resolve, reject) => {
    const c = connect(s.path);
    let got = '';
    c.on('data', (d: Buffer) => { got += d.toString(); });
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
  t.equal(await read(), '{"n":1,"big":true}\n');
  t.equal(await read(), '{"n":2,"big":true}\n', 'a fresh snapshot per client');
  s.close();
  s.close();
  t.notOk(existsSync(s.path), 'removed at close (twice is harmless)');
  t.notOk(existsSync(dir), 'and the directory with the last socket');
});

t.test('a starting server removes the sockets of killed servers', { skip: process.getuid?.() === 0 ? false : 'needs root (chown of the directory)' }, async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'kdbusfs-stats-')), 'stats');
  const listening = (path: string): Promise<Server> => new Promise((resolve) => {
    const srv = createServer();
    srv.listen(path, () => resolve(srv));
  });
  mkdirSync(dir, { mode: 0o700 });
  // a server killed while listening leaves its socket behind
  await new Promise((resolve) => execFile(process.execPath, ['-e',
    `require('net').createServer().listen(${JSON.stringify(join(dir, 'dead.sock'))}, () => process.kill(process.pid, 'SIGKILL'))`],
  resolve));
  t.ok(existsSync(join(dir, 'dead.sock')), 'a socket nobody listens on (its server was killed)');
  const live = await listening(join(dir, 'live.sock'));
  t.teardown(() => { live.close(); });
  const s = await serveStats('/m', () => ({}), dir);
  t.teardown(() => s.close());
  t.ok(await until(() => !existsSync(join(dir, 'dead.sock')), 5000), 'the dead one is removed');
  t.ok(existsSync(join(dir, 'live.sock')), 'a live one is not');
});
