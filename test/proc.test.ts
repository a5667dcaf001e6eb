// The /proc reader (lib/core/proc.ts) and task credentials built on it
// (lib/core/task.ts): errno results, status fields, and reads made only when
// a field is asked for.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { procFile, procIdMap, procStatus, cString, nsId } from '../lib/core/proc.js';
import { hasCapIpcOwner, taskCreds } from '../lib/core/task.js';

const E = constants.errno;

t.test('procFile answers a negative errno, never a throw', async (t) => {
  t.equal(procFile('/proc/self/no-such-file'), -E.ENOENT);
  t.equal(procFile('/proc/0/status'), -E.ENOENT, 'no task 0');
  const b = procFile('/proc/self/comm');
  t.ok(Buffer.isBuffer(b));
  t.equal(cString(b as Buffer).toString(), readFileSync('/proc/self/comm', 'latin1').trim());
});

t.test('procFile: a file larger than the buffer is EFBIG unless its start will do', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = join(dir, 'big');
  writeFileSync(big, Buffer.alloc(100 * 1024, 0x61));
  t.equal(procFile(big), -E.EFBIG);
  const start = procFile(big, true);
  t.ok(Buffer.isBuffer(start) && start.length === 64 * 1024, 'the first 64 KiB');
});

t.test('cString stops at the first NUL and drops one trailing newline', async (t) => {
  t.equal(cString(Buffer.from('abc\n')).toString(), 'abc');
  t.equal(cString(Buffer.from('a\0b')).toString(), 'a');
  t.equal(cString(Buffer.from('a\n\0b'), true).toString(), 'a\n');
});

t.test('ProcStatus fields of this process', async (t) => {
  const st = procStatus(process.pid)!;
  t.ok(st);
  t.equal(st.number('Tgid'), process.pid);
  t.same(st.numbers('Uid')!.slice(0, 2), [process.getuid!(), process.geteuid!()]);
  t.equal(st.numbers('NoSuchField'), null);
  t.equal(st.number('NoSuchField'), 0);
  t.equal(typeof st.mask('CapEff'), 'bigint');
  t.equal(procStatus(0), null, 'a task that is not there');
});

t.test('id maps and namespace ids', async (t) => {
  const map = procIdMap(process.pid, 'uid_map')!;
  t.ok(map.length >= 1 && map.every((l) => l.length === 3));
  t.equal(nsId('self', 'user'), readlinkSync('/proc/self/ns/user'));
  t.equal(nsId(0, 'pid'), null);
});

t.test('task credentials read the user namespace only when asked for', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const creds = taskCreds(child.pid!)!;
  t.equal(creds.euid, process.geteuid!(), 'euid from the status read at once');
  t.equal(creds.tgid, child.pid);
  child.kill('SIGKILL');
  await once(child, 'exit');
  // Read eagerly, the namespace would have been there; now the task is gone.
  t.equal(creds.userNs, null, 'ns/user was not read before it was asked for');
  t.equal(taskCreds(child.pid!), null, 'a task that is gone has no credentials');
});

t.test('CAP_IPC_OWNER counts in the domain user namespace', async (t) => {
  const creds = taskCreds(process.pid)!;
  const capIpcOwner = ((creds.capEff >> 15n) & 1n) === 1n;
  t.equal(hasCapIpcOwner(creds), capIpcOwner, 'this process is in the domain user namespace');
});
