// The native FUSE layer, mounted in this process and driven by real child
// processes (test/clients/fuseclient.c). Nothing here touches the mount
// synchronously: this process serves it on its own event loop.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { until } from './helpers.js';
import {
  native, OPEN_DIRECT_IO, OPEN_POOL, POLL_SCHEDULE_NOTIFY,
  type Caller, type SessionHandlers,
} from '../lib/fuse/native.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const addon = join(here, '../build/Release/kdbusfs_native.node');

const EINTR = 4, EIO = 5;
const POOL_SIZE = 16 << 20;
const POOL_OFF = 5 * 1048576 + 100;
const COPY_AT = 8192 + 16;

// Each file's tag says how the handlers treat it.
const TAG = { endpoint: 1, control: 2, param: 3, pub: 4, throws: 5, pollable: 6 } as const;

const tmp = mkdtempSync('/tmp/kdbusfs-native-');
chmodSync(tmp, 0o755); // the non-root client must reach the mount
const client = join(tmp, 'fuseclient');
await run('gcc', ['-O1', '-Wall', '-o', client, join(here, 'clients/fuseclient.c')]);

interface Open { fh: number; tag: number; caller: Caller; flags: number }

/** Everything one mounted session saw, and the knobs of its handlers. */
class Fs {
  sid = 0;
  mnt: string;
  opens: Open[] = [];
  releases: number[] = [];
  ioctls: { cmd: number; head: Buffer; command: Buffer | number | null; tid: number }[] = [];
  interrupts: { unique: number; caller: Caller }[] = [];
  destroyed = false;
  ready = false;
  paramValue = 'hello\n';
  inos: Record<string, number> = {};
  private waiters: { what: string; resolve: (v: unknown) => void }[] = [];

  constructor(name: string, passthrough: boolean) {
    this.mnt = join(tmp, name);
    mkdirSync(this.mnt);
    this.sid = native.sessionMount({
      mountpoint: this.mnt, fsname: 'kdbusfs', subtype: 'kdbusfs-test', rootMode: 0o755,
      rootUid: 0, rootGid: 0, allowOther: true, defaultPermissions: false, passthrough,
    }, this.handlers());
    const bus = this.add(1, 'bus', true, 0o755, 0);
    this.add(bus, 'endpoint', false, 0o666, TAG.endpoint);
    this.add(1, 'control', false, 0o600, TAG.control);
    this.add(1, 'param', false, 0o644, TAG.param);
    this.add(1, 'pub', false, 0o666, TAG.pub);
    this.add(1, 'throws', false, 0o666, TAG.throws);
    this.add(1, 'pollable', false, 0o666, TAG.pollable);
  }

  add(parent: number, name: string, dir: boolean, mode: number, tag: number): number {
    const ino = native.nodeAdd(this.sid, parent, name, dir, mode, 0, 0, tag);
    this.inos[name] = ino;
    return ino;
  }

  path(p: string): string { return join(this.mnt, p); }

  /** Resolves with the value of the next event named what. */
  next<T>(what: string): Promise<T> {
    return new Promise((resolve) => this.waiters.push({ what, resolve: resolve as (v: unknown) => void }));
  }

  private emit(what: string, v: unknown): void {
    const i = this.waiters.findIndex((w) => w.what === what);
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(v);
  }

  private handlers(): SessionHandlers {
    const fs = this;
    const tags = new Map<number, number>();
    return {
      open(fh, tag, caller, flags) {
        fs.opens.push({ fh, tag, caller, flags });
        tags.set(fh, tag);
        if (tag === TAG.throws) throw new Error('open handler failure (expected by the test)');
        if (tag === TAG.endpoint || tag === TAG.pub) return OPEN_POOL;
        if (tag === TAG.param) return OPEN_DIRECT_IO;
        return 0;
      },
      release(fh) { fs.releases.push(fh); tags.delete(fh); },
      ioctl(unique, fh, cmd, arg, tid, head, command) {
        fs.ioctls.push({ cmd, head, command, tid });
        const sid = fs.sid;
        switch (cmd & 0xff) {
          case 1: { // HELLO-like: set up the pool, fill it, copy the caller's buffer in
            let r = native.poolSetup(sid, fh, POOL_SIZE);
            if (r) return r;
            native.poolWrite(sid, fh, POOL_OFF, Buffer.from('hello pool'));
            native.poolFlush(sid, fh, POOL_OFF, 10);
            // Never flushed: page-cache mode serves it through READ on a fault.
            native.poolWrite(sid, fh, 3 << 20, Buffer.from('unflushed'));
            const cmdBuf = command as Buffer;
            const addr = Number(cmdBuf.readBigUInt64LE(24)), len = Number(cmdBuf.readBigUInt64LE(32));
            r = native.poolCopyFromProcess(sid, fh, COPY_AT, tid, addr, len);
            if (r) return r;
            native.poolFlush(sid, fh, COPY_AT, len);
            const reply = Buffer.alloc(8);
            reply.writeBigUInt64LE(BigInt(COPY_AT));
            return native.memWrite(tid, arg + 16, reply);
          }
          case 2: // a later message into the same pages
            native.poolWrite(sid, fh, POOL_OFF, Buffer.from('HELLO POOL'));
            native.poolFlush(sid, fh, POOL_OFF, 10);
            return 0;
          case 5: { // a plain command: answer through the caller's memory
            const reply = Buffer.alloc(8);
            reply.writeBigUInt64LE(0xabcdefn);
            const r = native.memWrite(tid, arg + 16, reply);
            return r || 7;
          }
          case 6: // parked, answered by the test
          case 7: // parked, answered by the interrupt handler
            fs.emit('parked', unique);
            return undefined;
          case 8:
            throw new Error('ioctl handler failure (expected by the test)');
          default:
            return -25; // ENOTTY
        }
      },
      poll(fh, kh, flags) {
        if (fs.ready) return 1; // POLLIN
        if (flags & POLL_SCHEDULE_NOTIFY) fs.emit('poll', kh);
        return 0;
      },
      interrupt(unique, caller) {
        fs.interrupts.push({ unique, caller });
        native.replyIoctl(fs.sid, unique, -EINTR);
      },
      read(fh, offset, size) {
        return Buffer.from(fs.paramValue).subarray(offset, offset + size);
      },
      write(fh, offset, data) {
        fs.paramValue = data.toString();
        return data.length;
      },
      destroyed() { fs.destroyed = true; fs.emit('destroyed', true); },
    };
  }
}

/** Runs the client; its key=value output as a map, plus the raw text. */
async function fc(args: string[]): Promise<Record<string, string> & { out: string }> {
  const { stdout } = await run(client, args, { timeout: 10_000 });
  const kv: Record<string, string> & { out: string } = { out: stdout };
  for (const tok of stdout.split(/\s+/)) {
    const i = tok.indexOf('=');
    if (i > 0 && !(tok.slice(0, i) in kv)) kv[tok.slice(0, i)] = tok.slice(i + 1);
  }
  return kv;
}

async function mounted(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[1] === dir);
}

function lineFrom(child: ChildProcess, want: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes(want)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`exited (${code}) before "${want}": ${seen}`)));
  });
}

const pt = new Fs('pt', true);
const pc = new Fs('pc', false);
t.teardown(() => {
  native.sessionUnmount(pt.sid);
  native.sessionUnmount(pc.sid);
  rmSync(tmp, { recursive: true, force: true });
});

t.test('lookup, getattr and readdir', async (t) => {
  const ls = await fc(['ls', pt.mnt]);
  const names = [...ls.out.matchAll(/entry=(\S+) type=(\d+)/g)].map((m) => `${m[1]}:${m[2]}`);
  t.same(names.sort(), ['.:4', '..:4', 'bus:4', 'control:8', 'param:8', 'pollable:8', 'pub:8', 'throws:8'].sort());
  const root = await fc(['stat', pt.mnt]);
  t.equal(root.mode, '40755');
  t.equal(root.nlink, '3', 'root: 2 + one subdirectory');
  const bus = await fc(['stat', pt.path('bus')]);
  t.equal(bus.ino, String(pt.inos.bus), 'a directory keeps its ino');
  const ep = await fc(['stat', pt.path('bus/endpoint')]);
  t.equal(ep.mode, '100666');
  t.equal(ep.size, '0');
  const ep2 = await fc(['stat', pt.path('bus/endpoint')]);
  t.not(ep2.ino, ep.ino, 'every lookup of a file is a fresh instance');
  t.equal((await fc(['stat', pt.path('nope')])).stat, 'ENOENT');
  t.equal((await fc(['mkdir', pt.path('newdir')])).mkdir, 'EPERM');
});

t.test('open reports the caller', async (t) => {
  const before = pt.opens.length;
  const r = await fc(['open', pt.path('control')]);
  t.equal(r.open, '0');
  const o = pt.opens[before];
  t.equal(o.tag, TAG.control);
  t.equal(o.caller.tid, Number(r.tid), 'tid of the opening thread');
  t.equal(o.caller.uid, 0);
  t.equal(o.flags & 3, 2, 'O_RDWR');
  t.ok(pt.releases.includes(o.fh), 'release after close');
  t.equal((await fc(['open', pt.path('throws')])).open, 'EIO', 'a throwing handler answers EIO');
});

t.test('a non-root client opens a 0666 file (allow_other)', async (t) => {
  const before = pt.opens.length;
  const r = await fc(['-u', '65534', 'open', pt.path('pub')]);
  t.equal(r.open, '0');
  t.equal(pt.opens[before].caller.uid, 65534);
  t.equal(pt.opens[before].caller.gid, 65534);
});

t.test('kdbus-style ioctl: command read from the caller, answer written back', async (t) => {
  const before = pt.ioctls.length;
  const r = await fc(['ioctl', pt.path('control'), '5', '100']);
  t.equal(r.ret, '7', 'the handler result');
  t.equal(r.reply, String(0xabcdef), 'memWrite reached the caller');
  const io = pt.ioctls[before];
  t.equal(io.cmd >>> 0, (0xc0000000 | (40 << 16) | (0x95 << 8) | 5) >>> 0, '_IOWR(0x95, 5, 40 bytes)');
  t.equal(io.head.length, 40, 'the fixed head');
  const cmd = io.command as Buffer;
  t.ok(Buffer.isBuffer(cmd), 'the whole command');
  t.equal(cmd.length, 140);
  t.equal(Number(cmd.readBigUInt64LE(0)), 140);
  t.equal(Number(cmd.readBigUInt64LE(8)), 0x1234);
  const payload = Buffer.from(Array.from({ length: 100 }, (_, i) => (i * 7 + 3) & 0xff));
  t.same(cmd.subarray(40), payload, 'payload as the client sent it');
  const thrown = await fc(['ioctl', pt.path('control'), '8', '0']);
  t.equal(thrown.errno, 'EIO', 'a throwing handler answers EIO');
});

t.test('parked ioctl answered later', async (t) => {
  const parked = pt.next<number>('parked');
  const done = fc(['ioctl', pt.path('control'), '6', '0']);
  const unique = await parked;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(native.replyIoctl(pt.sid, unique, 3), true);
  t.equal(native.replyIoctl(pt.sid, unique, 3), false, 'a second answer is ignored');
  t.equal((await done).ret, '3');
  const cmd = pt.ioctls[pt.ioctls.length - 1].command as Buffer;
  t.equal(cmd.length, 40, 'a command that fits in the head comes from the head');
  t.equal(Number(cmd.readBigUInt64LE(8)), 0x1234);
});

t.test('interrupt of a parked ioctl', async (t) => {
  const before = pt.interrupts.length;
  const r = await fc(['intr', pt.path('control'), '7']);
  t.equal(r.errno, 'EINTR');
  t.equal(pt.interrupts.length, before + 1);
  t.equal(pt.interrupts[before].caller.tid, Number(r.tid));
});

t.test('poll woken by notifyPoll', async (t) => {
  pt.ready = false;
  const kh = pt.next<number>('poll');
  const done = fc(['poll', pt.path('pollable'), '5000']);
  const handle = await kh;
  await new Promise((r) => setTimeout(r, 50));
  pt.ready = true;
  native.notifyPoll(pt.sid, handle);
  const r = await done;
  t.equal(r.poll, '1');
  t.equal(r.revents, '1', 'POLLIN');
});

t.test('direct-io file: read and write reach the handlers', async (t) => {
  t.equal((await fc(['cat', pt.path('param')])).data, 'hello');
  t.equal((await fc(['write', pt.path('param'), 'abc'])).n, '3', 'O_TRUNC open is not a SETATTR');
  t.equal(pt.paramValue, 'abc');
});

for (const fs of [pt, pc]) {
  const mode = fs === pt ? 'passthrough' : 'page cache';
  t.test(`pool (${mode})`, async (t) => {
    const r = await fc(['pool', fs.path('bus/endpoint'), String(POOL_SIZE), String(POOL_OFF), '10']);
    t.equal(native.sessionInfo(fs.sid).passthrough, fs === pt, `session uses ${mode}`);
    t.equal(r.open, '0');
    t.equal(r.reply, String(COPY_AT));
    t.equal(r.at, Buffer.from('hello pool').toString('hex'), 'poolWrite + poolFlush seen through mmap');
    t.equal(r.copy, 'match', 'poolCopyFromProcess copied the client buffer');
    t.equal(r.last, '00000000', 'the whole pool is mapped');
    t.equal(r.unflushed, Buffer.from('unflushed').toString('hex'), 'a page never stored is read from the memfd');
    t.equal(r.again, Buffer.from('HELLO POOL').toString('hex'), 'a later write into seen pages');
  });
}

t.test('pool calls are bounds-checked', async (t) => {
  const parked = pt.next<number>('parked');
  const done = fc(['ioctl', pt.path('pub'), '6', '0']);
  const unique = await parked;
  const fh = pt.opens[pt.opens.length - 1].fh;
  t.throws(() => native.poolWrite(pt.sid, fh, 0, Buffer.alloc(1)), /no pool/, 'before poolSetup');
  t.equal(native.poolSetup(pt.sid, fh, 1 << 20), 0);
  t.equal(native.poolSetup(pt.sid, fh, 1 << 20), -16, 'EBUSY a second time');
  t.equal(native.poolSetup(pt.sid, 999999, 1 << 20), -9, 'EBADF: no such fh');
  t.throws(() => native.poolWrite(pt.sid, fh, (1 << 20) - 1, Buffer.alloc(2)), RangeError);
  t.throws(() => native.poolFlush(pt.sid, fh, 1 << 20, 1), RangeError);
  t.throws(() => native.poolCopyFromProcess(pt.sid, fh, 0, process.pid, 0, (1 << 20) + 1), RangeError);
  t.equal(native.poolCopyFromProcess(pt.sid, fh, 0, process.pid, 8, 16), -14, 'EFAULT from a bad address');
  native.poolWrite(pt.sid, fh, (1 << 20) - 2, Buffer.alloc(2));
  t.equal(native.replyIoctl(pt.sid, unique, 0), true);
  t.equal((await done).ret, '0');
});

t.test('a second open of one instance is refused', async (t) => {
  const r = await fc(['reopen', pt.path('bus/endpoint')]);
  t.match(r.out, /open=0\nopen=EBUSY/, 'reopen through /proc/self/fd');
  const target = join(tmp, 'bound');
  const b = await fc(['bindopen', pt.path('bus/endpoint'), target]);
  t.match(b.out, /open=0\nopen=EBUSY/, 'through a bind mount of the file');
});

t.test('removed nodes', async (t) => {
  const gone = pt.add(1, 'gone', false, 0o666, TAG.pub);
  const child = spawn(client, ['pathopen', pt.path('gone')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out: string[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
  await lineFrom(child, 'ready');
  native.nodeRemove(pt.sid, gone);
  native.nodeRemove(pt.sid, gone); // a no-op
  child.stdin!.end('\n');
  await new Promise((r) => child.on('close', r));
  const text = out.join('');
  t.match(text, /fstat=0/, 'an existing instance still answers GETATTR');
  t.match(text, /open=ESHUTDOWN/, 'opening it is ESHUTDOWN');
  t.equal((await fc(['stat', pt.path('gone')])).stat, 'ENOENT', 'new lookups fail');
  const d = pt.add(1, 'dir', true, 0o755, 0);
  pt.add(d, 'f', false, 0o644, 0);
  native.nodeRemove(pt.sid, d);
  t.equal((await fc(['stat', pt.path('dir/f')])).stat, 'ENOENT', 'a directory goes with its contents');
  t.throws(() => native.nodeRemove(pt.sid, 1), /root/);
  t.throws(() => native.nodeAdd(pt.sid, 1, 'pub', false, 0o644, 0, 0, 0), { code: 'EEXIST' });
  t.throws(() => native.nodeAdd(pt.sid, 1, 'a/b', false, 0o644, 0, 0, 0), { code: 'EINVAL' });
});

t.test('caller memory and fds', async (t) => {
  const buf = Buffer.from('some bytes of ours');
  t.equal(native.memRead(process.pid, 0, 0) instanceof Buffer, true, 'an empty read');
  t.equal(native.memRead(process.pid, 8, 16), -14, 'EFAULT');
  t.equal(native.memWrite(process.pid, 8, buf), -14, 'EFAULT');
  const fd = native.takeFd(process.pid, 1);
  t.ok(fd > 2, 'takeFd copies one of our own fds');
  const st = native.fdStat(fd);
  t.equal(typeof st, 'object');
  t.equal((st as { seals: number }).seals, -1, 'not a memfd');
  native.closeFd(fd);
  t.equal(native.fdStat(fd), -9, 'closed: EBADF');
  t.equal(native.takeFd(process.pid, 987654), -9, 'EBADF for a closed fd');
});

t.test('sessionUnmount', async (t) => {
  const fs = new Fs('unmount', true);
  t.equal((await fc(['stat', fs.mnt])).stat, '0');
  t.ok(await mounted(fs.mnt));
  native.sessionUnmount(fs.sid);
  native.sessionUnmount(fs.sid);
  t.notOk(await mounted(fs.mnt), 'no mount left');
  t.notOk(fs.destroyed, 'destroyed is for the kernel ending the session');
});

t.test('unmounting from inside a handler', async (t) => {
  const dir = join(tmp, 'inside');
  mkdirSync(dir);
  let released = false;
  const sid = native.sessionMount({
    mountpoint: dir, fsname: 'kdbusfs', subtype: 'kdbusfs-test', rootMode: 0o755, rootUid: 0,
    rootGid: 0, allowOther: false, defaultPermissions: false, passthrough: true,
  }, {
    open() { native.sessionUnmount(sid); return OPEN_POOL; },
    release() { released = true; },
  } as unknown as SessionHandlers);
  native.nodeAdd(sid, 1, 'f', false, 0o666, 0, 0, 0);
  const r = await fc(['open', join(dir, 'f')]);
  t.match(r.open, /^(ENOTCONN|ECONNABORTED)$/, 'the opener sees the connection end');
  t.notOk(released, 'no handler after unmount');
  t.notOk(await mounted(dir));
  t.throws(() => native.nodeAdd(sid, 1, 'g', false, 0o666, 0, 0, 0), /no session/);
});

t.test('an external umount ends the session', async (t) => {
  const fs = new Fs('external', true);
  t.equal((await fc(['stat', fs.mnt])).stat, '0');
  const destroyed = fs.next('destroyed');
  await run('umount', [fs.mnt]);
  await destroyed;
  t.ok(fs.destroyed);
  native.sessionUnmount(fs.sid);
  t.notOk(await mounted(fs.mnt));
});

const serverScript = join(tmp, 'server.mjs');
writeFileSync(serverScript, `
import { createRequire } from 'node:module';
const native = createRequire(import.meta.url)(${JSON.stringify(addon)});
native.sessionMount({ mountpoint: process.argv[2], fsname: 'kdbusfs', subtype: 'kdbusfs-test',
  rootMode: 0o755, rootUid: 0, rootGid: 0, allowOther: false, defaultPermissions: false,
  passthrough: true }, {});
console.log('ready');
setInterval(() => {}, 1000);
`);

async function startServer(dir: string): Promise<ChildProcess> {
  mkdirSync(dir);
  const child = spawn(process.execPath, [serverScript, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await lineFrom(child, 'ready');
  return child;
}


t.test('a killed server leaves no mount (watchdog)', async (t) => {
  const dir = join(tmp, 'killed');
  const child = await startServer(dir);
  t.ok(await mounted(dir));
  child.kill('SIGKILL');
  t.ok(await until(async () => !(await mounted(dir)), 2000), 'detached within 2 s');
});

t.test('clearStaleMount detaches a dead mount', async (t) => {
  const dir = join(tmp, 'stale');
  const child = await startServer(dir);
  // Without its watchdog the dead mount stays behind.
  const kids = (await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')).trim().split(/\s+/);
  for (const k of kids) process.kill(Number(k), 'SIGKILL');
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  t.ok(await mounted(dir), 'the dead mount is there');
  t.equal(native.clearStaleMount(dir), true);
  t.notOk(await mounted(dir));
  t.equal(native.clearStaleMount(dir), false, 'nothing to clear now');
});
