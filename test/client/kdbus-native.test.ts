// In process, any user, no mount: the addon's client functions
// (native/client.cc) — results as -errno, type errors thrown, read-only
// mappings that stay safe after munmap and go away when collected, libuv
// poll watches reporting readable and hangup, sealed memfds.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { CMD } from '../../lib/abi/kdbus.js';
import { clientNative as nat, POLL_DISCONNECT, POLL_READABLE } from '../../lib/client/native.js';
import { SEALS_KDBUS, SEAL_SEAL, memfdSeals, readMemfd, sealedMemfd } from '../../lib/client/memfd.js';

const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-client-native-'));
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

t.test('open, ioctl, close: results and -errno', async (t) => {
  t.equal(nat.open(join(tmp, 'missing')), -2, 'open of a missing file: -ENOENT');
  const file = join(tmp, 'plain');
  writeFileSync(file, 'x');
  const fd = nat.open(file);
  t.ok(fd >= 0, 'open of a file: an fd');
  const buf = Buffer.alloc(128);
  t.equal(nat.ioctl(fd, CMD.HELLO, buf), -25, 'a kdbus ioctl on a plain file: -ENOTTY');
  t.equal(nat.ioctl(fd, CMD.HELLO, buf.subarray(3, 67)), -25, 'also from an unaligned Buffer (through an aligned copy)');
  t.equal(nat.close(fd), 0, 'close: 0');
  t.equal(nat.close(fd), -9, 'close again: -EBADF');
  t.throws(() => nat.ioctl(fd, CMD.HELLO, 'no buffer' as unknown as Buffer), TypeError, 'a wrong argument type throws');
  t.throws(() => nat.open(42 as unknown as string), TypeError, 'open of a number throws');
  t.throws(() => nat.close(-1), TypeError, 'a negative fd is a programming error');
  t.type(nat.address(buf), 'bigint', 'address: a bigint');
  t.not(nat.address(buf), nat.address(Buffer.alloc(128)), 'distinct Buffers, distinct addresses');
});

function mappingsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name}`)).length;
}

t.test('read-only mappings: munmap leaves zeros, collection unmaps', async (t) => {
  const data = Buffer.alloc(8192, 0x61);
  const fd = sealedMemfd(data, 'client-map');
  const m = nat.mmap(fd, 8192);
  if (typeof m === 'number') throw new Error(`mmap: ${m}`);
  t.equal(m.toString('latin1', 0, 4), 'aaaa', 'the mapping shows the file');
  t.equal(mappingsOf('client-map'), 1, 'one mapping of the memfd');
  t.throws(() => nat.munmap(m.subarray(0, 10)), TypeError, 'munmap of part of a mapping throws');
  t.throws(() => nat.munmap(Buffer.alloc(10)), TypeError, 'munmap of a Buffer that is no mapping throws');
  t.equal(nat.munmap(m), 0, 'munmap: 0');
  t.equal(mappingsOf('client-map'), 0, 'the file mapping is gone');
  t.equal(m[0], 0, 'the stale Buffer reads zeros instead of faulting');
  t.equal(nat.munmap(m), 0, 'munmap again: 0');
  t.equal(nat.mmap(fd, 4096, 1), -22, 'an unaligned offset: -EINVAL');
  t.throws(() => nat.mmap(fd, 0), TypeError, 'a zero size throws');

  (() => { for (let i = 0; i < 20; i++) nat.mmap(fd, 8192); })();
  t.equal(mappingsOf('client-map'), 20, 'twenty mappings left unreferenced');
  for (let i = 0; i < 10 && mappingsOf('client-map'); i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  t.equal(mappingsOf('client-map'), 0, 'collected mappings are unmapped by their finalizer');
  closeSync(fd);
});

t.test('poll watches: readable, hangup, stop', async (t) => {
  const fifo = join(tmp, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const rd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wr = openSync(fifo, constants.O_WRONLY);
  const seen: number[] = [];
  let wake: (() => void) | null = null;
  const w = nat.pollStart(rd, (status, events) => {
    seen.push(status < 0 ? status : events);
    wake?.();
  });
  t.not(typeof w, 'number', 'a watch on a fifo');
  const next = (): Promise<void> => new Promise((r) => { wake = r; });
  writeSync(wr, 'x');
  await next();
  t.ok((seen[0]! & POLL_READABLE) !== 0, 'readable once written');
  t.equal(readSync(rd, Buffer.alloc(8)), 1, 'read empty again');
  closeSync(wr);
  const hangup = (): boolean => seen.some((e) => e >= 0 && (e & POLL_DISCONNECT) !== 0);
  for (let i = 0; i < 20 && !hangup(); i++) await Promise.race([next(), new Promise((r) => setTimeout(r, 100))]);
  t.ok(hangup(), 'the writer closes: hangup reported');
  if (typeof w !== 'number') nat.pollStop(w);
  closeSync(rd);
  t.equal(nat.pollStart(rd, () => undefined), -9, 'a watch on a closed fd: -EBADF');
});

t.test('poll watches: events off and on again on the same handle', async (t) => {
  const fifo = join(tmp, 'fifo-active');
  execFileSync('mkfifo', [fifo]);
  const rd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wr = openSync(fifo, constants.O_WRONLY);
  let events = 0;
  let wake: (() => void) | null = null;
  const w = nat.pollStart(rd, () => {
    events++;
    // off from inside the callback, the byte left unread: level-triggered, it would fire again
    if (typeof w !== 'number') t.equal(nat.pollActive(w, false), 0, 'off in the callback: 0');
    wake?.();
  });
  if (typeof w === 'number') return t.fail(`pollStart: ${w}`);
  const first = new Promise<void>((r) => { wake = r; });
  writeSync(wr, 'x');
  await first;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(events, 1, 'off: no more events while the byte waits unread');
  const again = new Promise<void>((r) => { wake = r; });
  t.equal(nat.pollActive(w, true), 0, 'on again: 0');
  await again;
  t.equal(events, 2, 'on again: the byte still queued is told');
  nat.pollStop(w);
  t.equal(nat.pollActive(w, true), -9, 'after pollStop: -EBADF');
  closeSync(wr);
  closeSync(rd);
});

t.test('poll watches tell whether the loop slept since the last event', async (t) => {
  const fifo = join(tmp, 'fifo-slept');
  execFileSync('mkfifo', [fifo]);
  const rd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wr = openSync(fifo, constants.O_WRONLY);
  const slept: boolean[] = [];
  let wake: (() => void) | null = null;
  const w = nat.pollStart(rd, (_status, _events, s) => {
    slept.push(s);
    // unread the first two times: level-triggered, the loop finds it ready again at once
    if (slept.length === 3) readSync(rd, Buffer.alloc(8));
    if (slept.length >= 3) wake?.();
  });
  const third = new Promise<void>((r) => { wake = r; });
  // the loop blocks in its poll phase first (nothing else keeps it busy), then the byte arrives
  setTimeout(() => writeSync(wr, 'x'), 50);
  await third;
  t.same(slept, [true, false, false], 'woken from a sleep, then ready again without one');
  const fourth = new Promise<void>((r) => { wake = r; });
  setTimeout(() => writeSync(wr, 'y'), 50);
  await fourth;
  t.equal(slept[3], true, 'after the fd was drained and the loop slept: slept again');
  if (typeof w !== 'number') nat.pollStop(w);
  closeSync(wr);
  closeSync(rd);
});

t.test('sealed memfds', async (t) => {
  const fd = sealedMemfd(Buffer.from('sealed text'));
  t.equal(memfdSeals(fd), SEALS_KDBUS, 'sealed against shrink, grow, write and more seals');
  t.equal(readMemfd(fd).toString(), 'sealed text', 'its data reads back');
  t.equal(readMemfd(fd, 7, 4).toString(), 'text', 'a range of it');
  t.equal(nat.addSeals(fd, SEAL_SEAL), -1, 'no more seals: -EPERM');
  closeSync(fd);
});
