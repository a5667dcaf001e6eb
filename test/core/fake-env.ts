// The routing core in process: everything lib/server.ts and the native addon
// give a handle (lib/core/handle.ts HandleEnv), faked with Buffers. Callers'
// memory is one Buffer per thread id, pools are Buffers, fds are numbers in
// fake tables, fd installs complete on the next turn of the event loop, and
// every ioctl answer and poll wakeup is recorded. No root, no FUSE, no C peer.
//
// Callers' credentials are not faked: the core reads /proc/<tid> for them,
// and every fake caller is this test process (CALLER_TID), which /proc
// describes like any client.
//
// This file is the one place that knows how handles are built and run; the
// tests speak kdbus command structs only (test/core/client.ts).
import './quiet.js';
import { Domain, ROOT_INO, type Tree } from '../../lib/core/domain.js';
import { ControlHandle, EndpointHandle, type Call, type Handle, type HandleEnv, type Parked }
  from '../../lib/core/handle.js';
import type { Bus } from '../../lib/core/bus.js';
import type { Endpoint } from '../../lib/core/endpoint.js';
import type { InstallDone } from '../../lib/core/call.js';
import type { PoolBacking } from '../../lib/core/pool.js';
import { FdLedger, takeCensus, type Census } from '../../lib/core/census.js';
import { errno } from '../../lib/core/errors.js';
import { taskCreds } from '../../lib/core/task.js';
import type { FdFacts } from '../../lib/fuse/native.js';
import type { UserLimits } from '../../lib/core/user.js';

/** The thread every fake caller is: this process, whose /proc entries the core reads. */
export const CALLER_TID = process.pid;

const PAGE = 4096;

/** A caller's address space: a Buffer at a fixed base address, handed out by a bump allocator. */
export class FakeMemory {
  static readonly BASE = 0x7f00_0000_0000;
  private readonly bytes = Buffer.alloc(4 << 20);
  private next = FakeMemory.BASE + PAGE; // page 0 of the space stays unmapped

  /** Copies data into freshly allocated memory (8-aligned) and returns its address. */
  put(data: Buffer): number {
    const addr = this.next;
    this.next += Math.ceil(Math.max(data.length, 1) / 8) * 8;
    if (this.next - FakeMemory.BASE > this.bytes.length) throw new Error('fake memory exhausted');
    this.write(addr, data);
    return addr;
  }

  private index(addr: number, len: number): number {
    const i = addr - FakeMemory.BASE;
    return i >= PAGE && i + len <= this.bytes.length ? i : -1;
  }

  /** process_vm_readv: a copy of the bytes, or -EFAULT. */
  read(addr: number, len: number): Buffer | number {
    const i = this.index(addr, len);
    return i < 0 ? -errno.EFAULT : Buffer.from(this.bytes.subarray(i, i + len));
  }

  /** process_vm_writev: 0 or -EFAULT. */
  write(addr: number, data: Buffer): number {
    const i = this.index(addr, data.length);
    if (i < 0) return -errno.EFAULT;
    data.copy(this.bytes, i);
    return 0;
  }

  u64(addr: number): bigint {
    const b = this.read(addr, 8);
    if (typeof b === 'number') throw new Error(`fake memory: ${addr} unmapped`);
    return b.readBigUInt64LE(0);
  }
}

/** A handle's pool: the Buffer the client would mmap. */
export class BufferPool implements PoolBacking {
  constructor(readonly bytes: Buffer, private readonly world: FakeWorld) {}

  write(offset: number, data: Buffer): number {
    if (offset < 0 || offset + data.length > this.bytes.length) throw new RangeError('pool write out of range');
    data.copy(this.bytes, offset);
    return 0;
  }

  copyFromProcess(offset: number, tid: number, addr: number, len: number): number {
    const data = this.world.memory(tid).read(addr, len);
    if (typeof data === 'number') return data;
    this.write(offset, data);
    return 0;
  }

  copyFromFd(): number {
    return -errno.EBADF; // no fake file has bytes
  }

  flush(): void {}

  /** The offsets the client holds, as the native fast path is told of them (lib/core/pool.ts held). */
  readonly userHeld = new Set<number>();
  held(offset: number, yes: boolean): void {
    if (yes) this.userHeld.add(offset);
    else this.userHeld.delete(offset);
  }

  /** What the fast path answered, applied before the pool's next use (lib/core/pool.ts sync): a test sets it. */
  sync?: () => void;
}

/** What a fake fd stands for. */
export type FakeFile = 'file' | 'unix-socket' | 'kdbus' | { memfd: number /* size */; sealed: boolean };

const S_IFREG = 0o100000, S_IFSOCK = 0o140000, AF_UNIX = 1, ALL_SEALS = 0xf;

function factsOf(f: FakeFile): FdFacts {
  const base = { seals: -1, size: 0, mode: S_IFREG | 0o600, dev: 1, ino: 1, pathOnly: false, domain: -1, kdbus: false };
  if (f === 'unix-socket') return { ...base, mode: S_IFSOCK | 0o777, domain: AF_UNIX };
  if (f === 'kdbus') return { ...base, kdbus: true };
  if (f === 'file') return base;
  return { ...base, size: f.memfd, seals: f.sealed ? ALL_SEALS : 0 };
}

/** One open file of the domain: its handle, its pool, and the wakeups of its poller. */
export class OpenFile {
  pool: BufferPool | null = null;
  /** env.wake() calls: a poller would have been woken */
  wakeups = 0;
  /** what the handle last told the native fast path: [state, poll mask] (lib/core/fast-state.ts) */
  published: [number, number] | null = null;
  released = false;
  constructor(readonly world: FakeWorld, readonly handle: Handle) {}

  /** What poll(2) on the file shows now. */
  poll(): number {
    return this.handle.poll();
  }

  close(): void {
    if (this.released) return;
    this.released = true;
    this.world.files.delete(this);
    this.handle.release();
  }
}

/** An ioctl as the caller sees it: answered at once, or parked until its answer comes. */
export interface Pending {
  readonly unique: number;
  /** the result once answered (0 or -errno), undefined while parked */
  readonly result: number | undefined;
  readonly answered: Promise<number>;
}

interface Waiting {
  tid: number;
  arg: number;
  result: number | undefined;
  resolve: (r: number) => void;
  answered: Promise<number>;
}

/** The server side of one domain, faked: the domain itself is the real one. */
export class FakeWorld {
  readonly domain: Domain;
  readonly files = new Set<OpenFile>();
  readonly fdLedger = new FdLedger();
  /** fds by thread: the clients' fd tables */
  private readonly clientFds = new Map<number, Map<number, FakeFile>>();
  /** the server's copies of taken fds */
  readonly serverFds = new Map<number, FakeFile>();
  /** CANCEL_FD watches: id -> the fd and what to call when it becomes readable */
  readonly watches = new Map<number, { fd: number; onReadable: () => void }>();
  private readonly memories = new Map<number, FakeMemory>();
  private readonly parked = new Map<number, Parked>();
  private readonly calls = new Map<number, Waiting>();
  private readonly endpointFiles = new Map<number, Endpoint>();
  private nextIno = ROOT_INO + 1;
  private nextServerFd = 1000;
  private nextWatch = 1;
  private nextUnique = 1;
  private readonly inodes = new Set<number>();

  /** limits: kdbusfs's per-user limits (the defaults unless given) */
  constructor(limits?: Readonly<UserLimits>) {
    const tree: Tree = {
      addDir: () => this.addNode(),
      addFile: () => this.addNode(),
      remove: (ino) => { this.inodes.delete(ino); },
    };
    this.domain = new Domain(tree, limits);
  }

  private addNode(): number {
    const ino = this.nextIno++;
    this.inodes.add(ino);
    return ino;
  }

  memory(tid: number): FakeMemory {
    let m = this.memories.get(tid);
    if (!m) {
      m = new FakeMemory();
      this.memories.set(tid, m);
    }
    return m;
  }

  /** Opens a file in thread tid's fd table; returns its number there. */
  openFd(tid: number, file: FakeFile): number {
    const table = this.fdTable(tid);
    let fd = 3;
    while (table.has(fd)) fd++;
    table.set(fd, file);
    return fd;
  }

  fdTable(tid: number): Map<number, FakeFile> {
    let t = this.clientFds.get(tid);
    if (!t) {
      t = new Map();
      this.clientFds.set(tid, t);
    }
    return t;
  }

  openControl(): OpenFile {
    return this.open((env) => new ControlHandle(this.domain, env, (bus, ep) => this.addEndpointFile(bus, ep)));
  }

  /** Opens an endpoint file as thread tid would; privileged as kdbus decides it at open unless given. */
  openEndpoint(ep: Endpoint, privileged = EndpointHandle.privilegedAtOpen(ep, taskCreds(CALLER_TID))): OpenFile {
    if (!ep.active) throw new Error(`endpoint ${ep.name} is gone`);
    return this.open((env) => new EndpointHandle(ep, env, privileged, (bus, e) => this.addEndpointFile(bus, e)));
  }

  private open(make: (env: HandleEnv) => Handle): OpenFile {
    const box: { file: OpenFile | null } = { file: null };
    const file = new OpenFile(this, make(this.env(() => box.file!)));
    box.file = file;
    this.files.add(file);
    file.handle.publish(); // as the server does at open
    return file;
  }

  private addEndpointFile(bus: Bus, ep: Endpoint): void {
    const tag = this.nextIno;
    this.endpointFiles.set(tag, ep);
    ep.ino = this.domain.tree.addFile(bus.ino, ep.name, ep.mode, ep.uid, ep.gid, tag);
    ep.onRemoved = () => {
      this.endpointFiles.delete(tag);
      this.domain.tree.remove(ep.ino);
    };
  }

  /**
   * Runs an ioctl of thread tid on file with its argument at arg, as the
   * server does: the head (_IOC_SIZE bytes) and the whole command read from
   * the caller, then handle.run.
   */
  ioctl(file: OpenFile, cmd: number, arg: number, tid = CALLER_TID): Pending {
    const mem = this.memory(tid);
    const iocSize = (cmd >>> 16) & 0x3fff;
    const head = iocSize ? mem.read(arg, iocSize) : Buffer.alloc(0);
    let command: Buffer | number | null = null;
    if (typeof head !== 'number' && head.length >= 8 && arg % 8 === 0) {
      const size = head.readBigUInt64LE(0);
      if (size >= 8n && size <= 64n * 1024n) command = mem.read(arg, Number(size));
    }
    const unique = this.nextUnique++;
    let resolve!: (r: number) => void;
    const answered = new Promise<number>((r) => { resolve = r; });
    const w: Waiting = { tid, arg, result: undefined, resolve, answered };
    this.calls.set(unique, w);
    const call: Call = { unique, cmd, tid, uid: process.getuid!(), arg, head: typeof head === 'number' ? Buffer.alloc(0) : head, command };
    const r = file.handle.run(call, cmd);
    if (typeof r === 'number') this.answer(unique, r);
    else if (r !== null && w.result === undefined) this.parked.set(unique, r);
    return { unique, get result() { return w.result; }, answered };
  }

  /** FUSE_INTERRUPT of a parked ioctl. */
  interrupt(unique: number): void {
    this.parked.get(unique)?.interrupted();
  }

  private answer(unique: number, result: number, out?: Buffer): void {
    const w = this.calls.get(unique);
    if (!w || w.result !== undefined) throw new Error(`ioctl ${unique} answered twice or never issued`);
    // the kernel copies out to the start of the caller's argument
    if (out && result >= 0) this.memory(w.tid).write(w.arg, out);
    w.result = result;
    this.calls.delete(unique);
    this.parked.delete(unique);
    w.resolve(result);
  }

  /** Every live object, counted as the server counts them (lib/core/census.ts). */
  census(): Census {
    return takeCensus(this.domain, { handles: [...this.files].map((f) => f.handle), parked: this.parked.size,
      pollers: 0, endpointFiles: this.endpointFiles.size, fds: this.fdLedger });
  }

  /** The census without the process's memory figures: what must return to its baseline. */
  counts(): Omit<Census, 'memory'> {
    const { memory: _, ...rest } = this.census();
    return rest;
  }

  /** Closes every open file (as the server does at unmount). */
  closeAll(): void {
    for (const f of [...this.files]) f.close();
  }

  private env(fileOf: () => OpenFile): HandleEnv {
    return new FakeEnv(this, fileOf, (unique, result, out) => this.answer(unique, result, out),
      () => this.nextServerFd++, () => this.nextWatch++);
  }
}

/** HandleEnv of one open file. */
class FakeEnv implements HandleEnv {
  constructor(private readonly world: FakeWorld, private readonly fileOf: () => OpenFile,
              private readonly answer: (unique: number, result: number, out?: Buffer) => void,
              private readonly newServerFd: () => number, private readonly newWatch: () => number) {}

  memRead(tid: number, addr: number, len: number): Buffer | number {
    return this.world.memory(tid).read(addr, len);
  }

  /** The head alone: nothing staged, so the core copies every vector itself (the native side stages). */
  memReadMessage(tid: number, addr: number, first: number, table: Int32Array): Buffer | number {
    table[0] = 0;
    return this.memRead(tid, addr, first);
  }

  memWrite(tid: number, addr: number, data: Buffer): number {
    return this.world.memory(tid).write(addr, data);
  }

  takeFd(tid: number, fd: number): number {
    const f = this.world.fdTable(tid).get(fd);
    if (f === undefined) return -errno.EBADF;
    const mine = this.newServerFd();
    this.world.serverFds.set(mine, f);
    return this.world.fdLedger.took(mine);
  }

  fdStat(fd: number): FdFacts | number {
    const f = this.world.serverFds.get(fd);
    return f === undefined ? -errno.EBADF : factsOf(f);
  }

  closeFd(fd: number): void {
    this.releaseFds([fd]);
  }

  releaseFds(fds: number[]): void {
    for (const fd of fds) {
      if (!this.world.serverFds.delete(fd)) throw new Error(`fd ${fd} released twice`);
    }
    this.world.fdLedger.released(fds.length);
  }

  watchFd(fd: number, onReadable: () => void): number {
    const id = this.newWatch();
    this.world.watches.set(id, { fd, onReadable });
    return this.world.fdLedger.watching(id);
  }

  unwatchFd(id: number): void {
    this.world.watches.delete(id);
    this.world.fdLedger.unwatched();
  }

  replyIoctl(unique: number, result: number, out?: Buffer): void {
    this.answer(unique, result, out);
  }

  /** The native install: the receiver gets the lowest free numbers, a turn of the event loop later. */
  installFds(unique: number, tid: number, fds: number[], done: InstallDone): number {
    setImmediate(() => {
      const numbers = fds.map((fd) => this.world.openFd(tid, this.world.serverFds.get(fd) ?? 'file'));
      this.answer(unique, done(numbers));
    });
    return 0;
  }

  poolSetup(size: number): PoolBacking | number {
    const file = this.fileOf();
    file.pool = new BufferPool(Buffer.alloc(size), this.world);
    return file.pool;
  }

  wake(): void {
    this.fileOf().wakeups++;
  }

  publish(state: number, pollMask: number): void {
    this.fileOf().published = [state, pollMask];
  }
}
