// kdbusfs's own per-user limits end to end (`kdbusfs mount --limit`): a
// sender filling a receiver that never reads is refused with ENOBUFS once
// its queued bytes reach the limit, with EMFILE once its fds in flight do,
// the server's log names the limit, and every charge is given back (the
// census's accounts) once the receiver goes.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { census, censusBack, compileClient, fails, hello, makeBus, needRootAndFuse, ok, peerSet, startServer, until } from './harness.js';

needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-limits-'));
chmodSync(tmp, 0o755);
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const client = join(tmp, 'kdbus-peer');
await compileClient('kdbus-peer.c', client, ['-pthread']);

await t.test('a sender at its limits is refused naming them, and charged nothing once the receiver goes', async (t) => {
  const dir = join(tmp, 'mnt');
  mkdirSync(dir);
  const server = await startServer(t, dir, { args: ['--limit', 'user_queued_bytes_per_receiver=1M', '--limit', 'user_fds=4'] });
  if (!server) return;
  const newPeer = peerSet(t, client);
  const { path } = await makeBus(t, newPeer, dir, '0-limits');
  const base = await census(server);
  const rcv = await hello(t, await newPeer('receiver'), path);
  const snd = await hello(t, await newPeer('sender'), path);

  // 256 KiB vectors: four fit in 1 MiB, the fifth does not
  for (let i = 1; i <= 4; i++) ok(t, await snd.cmd(`send ${rcv.id} cookie:${i} vec:262144`), `message ${i} of 256 KiB queued`);
  fails(t, await snd.cmd(`send ${rcv.id} cookie:5 vec:262144`), 'ENOBUFS', 'the fifth: ENOBUFS');
  const queued = await census(server);
  t.equal(queued.accounts.byUid['0']?.queuedBytes, 4 * 262144, 'the sender is charged its four messages');

  // memfds are fds in flight: four fit, the fifth does not
  for (let i = 1; i <= 4; i++) ok(t, await snd.cmd(`send ${rcv.id} cookie:${10 + i} memfd:64`), `memfd message ${i} queued`);
  fails(t, await snd.cmd(`send ${rcv.id} cookie:15 memfd:64`), 'EMFILE', 'the fifth memfd: EMFILE');
  const held = await census(server);
  t.equal(held.accounts.byUid['0']?.fds, 4, 'the sender is charged its four memfds');
  t.equal(held.serverFds, 4, 'and the server counts them');

  rcv.kill();
  t.ok(await until(async () => (await census(server)).accounts.byUid['0']?.queuedBytes === 0, 5000),
    'the receiver gone: no queued bytes charged');
  const after = await census(server);
  t.equal(after.accounts.byUid['0']?.fds, 0, 'no fds charged');
  t.equal(after.serverFds, 0, 'the server holds no client fds');
  snd.kill();
  const { off } = await censusBack(server, base, 10_000);
  t.same(off, {}, 'every client but the bus maker gone: the census is back to the one before they came');
});
