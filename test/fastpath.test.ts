// The native fast path (native/fastpath.h) answers trivial requests as the
// core would: test/clients/fastpath-client.c runs each (POLL, RECV on an
// empty queue, FREE of held slices, refused commands) with its edge cases
// (queue filled and drained, freed twice, bad offsets, unknown flags,
// kernel_flags to write back, wrong sizes, other handle roles and kinds,
// disconnected) against a server with the fast path and one without
// (KDBUSFS_FASTPATH=0); every errno and every byte written back must match.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { compileClient, needRootAndFuse, startServer, stopServer, type Tap } from './harness.js';

t.setTimeout(60_000);
needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-fastpath-'));
chmodSync(tmp, 0o755);
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const client = await compileClient('fastpath-client.c', join(tmp, 'fastpath-client'));

async function runWith(t: Tap, fast: '0' | '1'): Promise<Map<string, string> | null> {
  const dir = join(tmp, `mnt-${fast}`);
  mkdirSync(dir);
  const server = await startServer(t, dir, { wrap: ['env', `KDBUSFS_FASTPATH=${fast}`] });
  if (!server) return null;
  const { stdout } = await promisify(execFile)(client, [dir], { timeout: 30_000 });
  await stopServer(t, server, dir);
  t.equal(server.stderr, '', 'nothing logged as an error', { stderr: server.stderr });
  const lines = new Map<string, string>();
  for (const l of stdout.trim().split('\n')) {
    const sp = l.indexOf(' ');
    lines.set(l.slice(0, sp), l.slice(sp + 1));
  }
  return lines;
}

await t.test('the same answers with the fast path and without', async (t) => {
  const fast = await runWith(t, '1');
  const slow = await runWith(t, '0');
  if (!fast || !slow) return;
  t.same([...fast.keys()], [...slow.keys()], 'the same steps ran');
  for (const [step, answer] of slow) t.equal(fast.get(step), answer, `${step}: same answer and bytes`);

  // and both are what kdbus answers (the parts the fast path gives)
  const word = (step: string, i: number) => fast.get(step)!.split(' ')[1 + i];
  const errnoOf = (step: string) => fast.get(step)!.split(' ')[0];
  t.equal(errnoOf('make-size-8'), 'EINVAL', 'BUS_MAKE below the minimum: EINVAL');
  t.equal(errnoOf('make-too-big'), 'EMSGSIZE', 'BUS_MAKE above the maximum: EMSGSIZE');
  t.equal(word('make-unknown-flags', 2), '0300000000000080', 'unknown flags: kernel_flags written back first');
  t.equal(errnoOf('recv-fresh'), 'EAGAIN', 'RECV on an empty queue: EAGAIN');
  t.same(fast.get('recv-fresh')!.split(' ').slice(4),
    ['7700000000000000', '0300000000000000', '0500000000000000', '0600000000000000', '0700000000000000', '0800000000000000'],
    'EAGAIN writes back kernel_flags only');
  t.equal(errnoOf('free-1'), '0', 'FREE of a held slice');
  t.equal(word('free-1', 4), '0000000000000000', 'FREE zeroes return_flags');
  t.equal(errnoOf('free-1-twice'), 'ENXIO', 'FREE twice: ENXIO');
  t.equal(word('list-reuses-1', 4), word('list-1', 4), 'a freed slice is reused at once');
  t.equal(errnoOf('free-2-again'), 'ENXIO', 'FREE twice with kernel_flags in place: ENXIO');
  t.equal(fast.get('poll-empty'), '1 4', 'POLL with nothing queued: POLLOUT');
  t.equal(fast.get('poll-queued'), '1 5', 'POLL with a message queued: POLLIN | POLLOUT');
  t.equal(fast.get('poll-disconnected'), '1 18', 'POLL once disconnected: POLLERR | POLLHUP');
  t.equal(errnoOf('recv-after'), 'EAGAIN', 'drained queue: EAGAIN again');
  t.equal(errnoOf('monitor-name-acquire-size-8'), 'EOPNOTSUPP', 'the kind is checked before the size');
  t.equal(errnoOf('recv-disconnected-size-8'), 'ECONNRESET', 'a shut down connection is checked before the size');
});
