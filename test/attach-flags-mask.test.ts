// The kdbus module parameter attach_flags_mask on a normal mount: set at mount
// (--attach-flags-mask), served live in the parameter directory (--params-dir),
// readable by all, writable by root, and a change is seen by clients at once:
// metadata the mask withholds appears once the mask lets it through.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import {
  cli, compileClient, connect, mountType, needRootAndFuse, ok, peerSet, startServer, stopServer,
} from './harness.js';

const sh = promisify(execFile);
const ATTACH_ANY = '0xffffffffffffffff';

t.setTimeout(60_000);
needRootAndFuse();

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-mask-'));
chmodSync(tmp, 0o755); // uid 65534 reads the parameter file inside
const mnt = join(tmp, 'mnt');
mkdirSync(mnt);
const paramsDir = join(tmp, 'params');
const file = join(paramsDir, 'attach_flags_mask');
const client = await compileClient('kdbus-peer.c', join(tmp, 'kdbus-peer'), ['-pthread']);
t.teardown(() => { if (!mountType(mnt) && !mountType(paramsDir)) rmSync(tmp, { recursive: true, force: true }); });

t.test('a bad --attach-flags-mask is a usage error', async (t) => {
  const r = await sh(process.execPath, [cli, 'mount', mnt, '--attach-flags-mask', '0xnope']).catch((e) => e);
  t.equal(r.code, 2, 'exits 2');
  t.match(r.stderr, '--attach-flags-mask needs a 64-bit number', 'and says why');
  t.equal(mountType(mnt), null, 'nothing mounted');
});

t.test('set at mount, changed live by root, seen by a client', async (t) => {
  const server = await startServer(t, mnt, { args: ['--attach-flags-mask', '0x2000', '--params-dir', paramsDir] });
  if (!server) return;
  t.equal(readFileSync(file, 'utf8'), `${0x2000}\n`, 'the file holds the mask given at mount');
  const asNobody = await sh('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'cat', file]);
  t.equal(asNobody.stdout, `${0x2000}\n`, 'readable by any user');
  const write = await sh('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'sh', '-c', `echo 0 > ${file}`])
    .then(() => 'written', (e: { stderr: string }) => e.stderr);
  t.match(write, /Permission denied/, 'not writable by other users');

  const newPeer = peerSet(t, client);
  const maker = await newPeer('maker');
  ok(t, await maker.cmd(`make ${mnt}/control 0-mask world 64 1`), 'BUS_MAKE 0-mask');
  const bus = `${mnt}/0-mask/bus`;
  const rx = await connect(t, await newPeer('rx'), bus, `recv:${ATTACH_ANY}`, 'receiver: HELLO asking for every item');
  const tx = await connect(t, await newPeer('tx'), bus, 'desc:sender', 'sender: HELLO sending every item');

  ok(t, await tx.cmd(`send ${rx.id} cookie:1 vec:8`), 'send under mask 0x2000');
  let r = ok(t, await rx.cmd('recvmeta wait:2000'), 'received');
  t.equal(r.kv.desc, 'sender', 'CONN_DESCRIPTION (in the mask) is attached', { answer: r.line });
  t.equal(r.kv.creds, '-', 'CREDS (not in the mask) is not', { answer: r.line });

  // as sd-bus of 2015 did at boot (bus_kernel_fix_attach_mask)
  await sh('sh', ['-c', `printf '0x%x\\n' -1 > ${file}`]);
  t.equal(readFileSync(file, 'utf8'), `${(1n << 64n) - 1n}\n`, 'root writes the mask: every bit');
  ok(t, await tx.cmd(`send ${rx.id} cookie:2 vec:8`), 'send under the new mask');
  r = ok(t, await rx.cmd('recvmeta wait:2000'), 'received');
  t.not(r.kv.creds ?? '-', '-', 'CREDS is attached now', { answer: r.line });
  t.equal(r.kv.exe, client, 'and EXE', { answer: r.line });

  await stopServer(t, server, mnt);
  t.equal(mountType(paramsDir), null, 'the parameter directory is unmounted with the server');
});

t.test('where the module had it: /sys/module/kdbus/parameters, in a private mount namespace', async (t) => {
  // The namespace keeps the host's /sys/module untouched while the overlay is made.
  const dir = join(tmp, 'sysmodule-mnt');
  mkdirSync(dir);
  const script = `
    sysfs_in_userns() { unshare -Urmn sh -c 'mount -t sysfs sysfs /mnt' 2>/dev/null && echo mountable || echo refused; }
    f=/sys/module/kdbus/parameters/attach_flags_mask
    node "$1" mount "$2" --params-dir /sys/module/kdbus/parameters & pid=$!
    for i in $(seq 1200); do [ -e $f ] && [ -e "$2/control" ] && break; sleep 0.05; done
    cat $f
    printf '0x%x\\n' -1 > $f && cat $f
    ls /sys/module | tr '\\n' ' '; echo
    cat /sys/module/fuse/parameters/max_user_bgreq
    echo "serving: $(sysfs_in_userns)"
    kill -TERM $pid; wait $pid; echo "exit $?"
    [ -e /sys/module/kdbus ] && echo "kdbus left" || echo "kdbus gone"
    grep -c ' /sys/module tmpfs ' /proc/self/mounts`;
  const before = (await sh('ls', ['/sys/module'])).stdout.trim().split('\n');
  const bgreq = (await sh('cat', ['/sys/module/fuse/parameters/max_user_bgreq'])).stdout;
  const r = await sh('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cli, dir],
    { env: { ...process.env, KDBUSFS_QUIET: '1' }, timeout: 120_000 }).catch((e: { stdout: string; stderr: string }) => e);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], `${0x281f}`, 'the module\'s default mask is served there', { stderr: r.stderr });
  t.equal(lines[1], `${(1n << 64n) - 1n}`, 'root writes it as sd-bus of 2015 did at boot');
  const entries = (lines[2] ?? '').trim().split(' ');
  t.ok(before.every((e) => entries.includes(e)) && entries.includes('kdbus'), 'every module is still listed, and kdbus');
  t.equal(`${lines[3]}\n`, bgreq, 'another module\'s parameter still reads through the overlay');
  t.equal(lines[4], 'serving: mountable', 'a new user namespace can still mount sysfs');
  t.equal(lines[5], 'exit 0', 'SIGTERM exits 0');
  t.equal(lines[6], 'kdbus gone', '/sys/module/kdbus is gone after exit');
  t.equal(lines[7], '0', 'so is the tmpfs over /sys/module');
  t.same((await sh('ls', ['/sys/module'])).stdout.trim().split('\n'), before, "the host's /sys/module is unchanged");
});
