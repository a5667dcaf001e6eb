// A kdbus client of the in-process core (test/core/fake-env.ts): builds the
// real command structs (include/uapi/linux/kdbus.h, layouts in
// lib/abi/kdbus.ts) in the caller's fake memory, runs them as ioctls, and
// reads the results back from that memory and from its pool, the way a
// client linked against the uapi header does.
import { CMD, CMD_FREE, CMD_HELLO, CMD_MAKE, CMD_MATCH, CMD_NAME, CMD_RECV, CMD_SEND, HELLO_ACCEPT_FD,
  ITEM, MSG, PAYLOAD_DBUS, SEND_SYNC_REPLY, SIZEOF_NOTIFY_NAME_CHANGE }
  from '../../lib/abi/kdbus.js';
import { items } from '../../lib/abi/items.js';
import type { Bus } from '../../lib/core/bus.js';
import type { Connection } from '../../lib/core/connection.js';
import type { EndpointHandle } from '../../lib/core/handle.js';
import { monotonicNs } from '../../lib/core/reply.js';
import { item, str, u64s } from '../helpers.js';
import { CALLER_TID, FakeWorld, type OpenFile, type Pending } from './fake-env.js';

/** A command: fixed part of `fixed` bytes with u64 fields set, then items; size set. */
export function command(fixed: number, fields: Record<number, bigint>, items: Buffer[] = []): Buffer {
  const b = Buffer.concat([Buffer.alloc(fixed), ...items]);
  b.writeBigUInt64LE(BigInt(b.length), 0);
  for (const [off, v] of Object.entries(fields)) b.writeBigUInt64LE(BigInt.asUintN(64, v), Number(off));
  return b;
}

/** An absolute deadline ms from now, on the clock the core uses (CLOCK_MONOTONIC), for timeout_ns. */
export const inMs = (ms: number): bigint => monotonicNs() + BigInt(ms) * 1_000_000n;

/** An item as read back from a message in a pool. */
export interface ReadItem { type: number; data: Buffer }

/** struct kdbus_msg as a receiver reads it from its pool. */
export interface Message {
  size: number;
  flags: bigint;
  priority: bigint;
  dstId: bigint;
  srcId: bigint;
  payloadType: bigint;
  cookie: bigint;
  /** timeout_ns / cookie_reply (one union) */
  cookieReply: bigint;
  items: ReadItem[];
  /** the PAYLOAD_OFF vectors' bytes, concatenated */
  payload: Buffer;
  /** the FDS item's fd numbers */
  fds: number[];
  /** the DST_NAME item */
  dstName: string | null;
  /** the first notification item's type (REPLY_TIMEOUT, NAME_ADD...), 0 for none */
  notification: number;
}

/** Parses the message at off in pool (the receiver's mapping). */
export function readMessage(pool: Buffer, off: number): Message {
  const size = Number(pool.readBigUInt64LE(off + MSG.size));
  const m: Message = {
    size, flags: pool.readBigUInt64LE(off + MSG.flags), priority: pool.readBigInt64LE(off + MSG.priority),
    dstId: pool.readBigUInt64LE(off + MSG.dst_id), srcId: pool.readBigUInt64LE(off + MSG.src_id),
    payloadType: pool.readBigUInt64LE(off + MSG.payload_type), cookie: pool.readBigUInt64LE(off + MSG.cookie),
    cookieReply: pool.readBigUInt64LE(off + MSG.timeout_ns), items: [], payload: Buffer.alloc(0), fds: [],
    dstName: null, notification: 0,
  };
  const vecs: Buffer[] = [];
  for (const it of items(pool, off + MSG.items, size - MSG.items)) {
    const { type } = it;
    const data = Buffer.from(pool.subarray(it.data, it.data + it.len));
    m.items.push({ type, data });
    if (type === ITEM.PAYLOAD_OFF) {
      const vlen = Number(data.readBigUInt64LE(0));
      const voff = data.readBigUInt64LE(8);
      // a NULL vector's offset is ~0: it stands for padding, no bytes
      if (voff !== 0xffff_ffff_ffff_ffffn) vecs.push(Buffer.from(pool.subarray(Number(voff), Number(voff) + vlen)));
    } else if (type === ITEM.FDS) {
      for (let i = 0; i + 4 <= data.length; i += 4) m.fds.push(data.readInt32LE(i));
    } else if (type === ITEM.DST_NAME) {
      m.dstName = data.toString('latin1', 0, data.indexOf(0));
    } else if (type >= ITEM.NAME_ADD && type <= ITEM.REPLY_DEAD && !m.notification) {
      m.notification = type;
    }
  }
  m.payload = Buffer.concat(vecs);
  return m;
}

/** What a message to send holds. */
export interface Outgoing {
  dst: bigint;
  flags?: bigint;
  cookie?: bigint;
  /** absolute CLOCK_MONOTONIC deadline for EXPECT_REPLY */
  timeoutNs?: bigint;
  /** the cookie this message answers */
  cookieReply?: bigint;
  priority?: bigint;
  payload?: Buffer;
  dstName?: string;
  /** BLOOM_FILTER: its generation and words (SIGNAL messages) */
  bloom?: { generation: bigint; words: bigint[] };
  /** an FDS item with these fds of the sender */
  fds?: number[];
}

/** A RECV's outcome: the ioctl's result, the command's fields, and the message read from the pool. */
export interface Received {
  ret: number;
  dropped: bigint;
  offset: bigint;
  returnFlags: bigint;
  msg: Message | null;
}

/** One open file of an endpoint and the connection HELLO made on it. */
export class Client {
  id = 0n;
  /** the items HELLO returned in the pool */
  helloItems = Buffer.alloc(0);
  private readonly tid: number;

  constructor(readonly world: FakeWorld, readonly file: OpenFile, tid = CALLER_TID) {
    this.tid = tid;
  }

  get mem() {
    return this.world.memory(this.tid);
  }

  /** The core's connection object (for white-box checks). */
  get conn(): Connection {
    return (this.file.handle as EndpointHandle).conn!;
  }

  get pool(): Buffer {
    return this.file.pool!.bytes;
  }

  /** Runs cmd with its argument buf put in this caller's memory; returns the pending ioctl and the address. */
  start(cmd: number, buf: Buffer): { pending: Pending; arg: number } {
    const arg = this.mem.put(buf);
    return { pending: this.world.ioctl(this.file, cmd, arg, this.tid), arg };
  }

  /** Runs cmd, which must be answered at once; returns its result and where its argument lies. */
  run(cmd: number, buf: Buffer): { ret: number; arg: number } {
    const { pending, arg } = this.start(cmd, buf);
    if (pending.result === undefined) throw new Error(`ioctl 0x${cmd.toString(16)} parked`);
    return { ret: pending.result, arg };
  }

  hello(opts: { flags?: bigint; poolSize?: number; items?: Buffer[]; attachRecv?: bigint } = {}): number {
    const buf = command(CMD_HELLO.items, {
      [CMD_HELLO.flags]: opts.flags ?? HELLO_ACCEPT_FD, [CMD_HELLO.pool_size]: BigInt(opts.poolSize ?? 64 * 1024),
      [CMD_HELLO.attach_flags_recv]: opts.attachRecv ?? 0n,
    }, opts.items);
    const { ret, arg } = this.run(CMD.HELLO, buf);
    if (ret !== 0) return ret;
    this.id = this.mem.u64(arg + CMD_HELLO.id);
    // the bus's BLOOM_PARAMETER, handed over in the pool: read, then freed as sd-bus does
    const off = this.mem.u64(arg + CMD_HELLO.offset);
    const size = Number(this.mem.u64(arg + CMD_HELLO.items_size));
    this.helloItems = Buffer.from(this.pool.subarray(Number(off), Number(off) + size));
    return this.free(off);
  }

  /** The message struct in memory; returns its address. */
  private putMessage(o: Outgoing): number {
    const items: Buffer[] = [];
    if (o.dstName !== undefined) items.push(item(ITEM.DST_NAME, str(o.dstName)));
    if (o.payload) items.push(item(ITEM.PAYLOAD_VEC, u64s(BigInt(o.payload.length), BigInt(this.mem.put(o.payload)))));
    if (o.bloom) items.push(item(ITEM.BLOOM_FILTER, u64s(o.bloom.generation, ...o.bloom.words)));
    if (o.fds) {
      const fds = Buffer.alloc(4 * o.fds.length);
      o.fds.forEach((fd, i) => fds.writeInt32LE(fd, 4 * i));
      items.push(item(ITEM.FDS, fds));
    }
    const msg = command(MSG.items, {
      [MSG.flags]: o.flags ?? 0n, [MSG.priority]: o.priority ?? 0n, [MSG.dst_id]: o.dst,
      [MSG.payload_type]: PAYLOAD_DBUS, [MSG.cookie]: o.cookie ?? 0n,
      [MSG.timeout_ns]: o.timeoutNs ?? o.cookieReply ?? 0n,
    }, items);
    return this.mem.put(msg);
  }

  /** SEND, asynchronous: 0 or -errno. */
  send(o: Outgoing): number {
    return this.run(CMD.SEND, command(CMD_SEND.items, { [CMD_SEND.msg_address]: BigInt(this.putMessage(o)) })).ret;
  }

  /**
   * SEND with SYNC_REPLY: the pending ioctl (parked until the reply, a
   * timeout or a failure) and, once answered, the reply read from our pool.
   */
  call(o: Outgoing, items: Buffer[] = []): { pending: Pending; reply(): Message } {
    const buf = command(CMD_SEND.items, { [CMD_SEND.flags]: SEND_SYNC_REPLY,
      [CMD_SEND.msg_address]: BigInt(this.putMessage(o)) }, items);
    const { pending, arg } = this.start(CMD.SEND, buf);
    return {
      pending,
      reply: () => readMessage(this.pool, Number(this.mem.u64(arg + CMD_SEND.reply_offset))),
    };
  }

  /** RECV with flags; a received message is read from the pool and freed (FREE) unless keep. */
  recv(flags = 0n, opts: { keep?: boolean; priority?: bigint } = {}): Received {
    const { ret, arg } = this.run(CMD.RECV, command(CMD_RECV.items,
      { [CMD_RECV.flags]: flags, [CMD_RECV.priority]: opts.priority ?? 0n }));
    return this.received(ret, arg, opts.keep ?? false);
  }

  /** RECV that may park (a message with fds): resolves once answered. */
  async recvAsync(flags = 0n): Promise<Received> {
    const { pending, arg } = this.start(CMD.RECV, command(CMD_RECV.items, { [CMD_RECV.flags]: flags }));
    return this.received(await pending.answered, arg, false);
  }

  private received(ret: number, arg: number, keep: boolean): Received {
    const offset = this.mem.u64(arg + CMD_RECV.msg_offset);
    const r: Received = { ret, dropped: this.mem.u64(arg + CMD_RECV.dropped_msgs), offset,
      returnFlags: this.mem.u64(arg + CMD_RECV.msg_return_flags), msg: null };
    if (ret === 0 && this.mem.u64(arg + CMD_RECV.msg_size) > 0n) {
      r.msg = readMessage(this.pool, Number(offset));
      if (!keep) this.free(offset);
    }
    return r;
  }

  /** Receives every queued message (plain RECV until EAGAIN). */
  drain(): Message[] {
    const out: Message[] = [];
    for (let r = this.recv(); r.ret === 0; r = this.recv()) if (r.msg) out.push(r.msg);
    return out;
  }

  free(offset: bigint): number {
    return this.run(CMD.FREE, command(CMD_FREE.items, { [CMD_FREE.offset]: offset })).ret;
  }

  /** NAME_ACQUIRE: the result and the flags the kernel wrote back. */
  acquire(name: string, flags = 0n): { ret: number; flags: bigint } {
    const { ret, arg } = this.run(CMD.NAME_ACQUIRE, command(CMD_NAME.items, { [CMD_NAME.flags]: flags },
      [item(ITEM.NAME, str(name))]));
    return { ret, flags: this.mem.u64(arg + CMD_NAME.flags) };
  }

  release(name: string): number {
    return this.run(CMD.NAME_RELEASE, command(CMD_NAME.items, {}, [item(ITEM.NAME, str(name))])).ret;
  }

  matchAdd(cookie: bigint, rules: Buffer[], flags = 0n): number {
    return this.run(CMD.MATCH_ADD, command(CMD_MATCH.items, { [CMD_MATCH.cookie]: cookie, [CMD_MATCH.flags]: flags },
      rules)).ret;
  }

  matchRemove(cookie: bigint): number {
    return this.run(CMD.MATCH_REMOVE, command(CMD_MATCH.items, { [CMD_MATCH.cookie]: cookie })).ret;
  }

  byebye(): number {
    return this.world.ioctl(this.file, CMD.BYEBYE, 0, this.tid).result!;
  }

  close(): void {
    this.file.close();
  }
}

/** Match rules (MATCH_ADD items). */
export const rule = {
  bloomMask: (...words: bigint[]): Buffer => item(ITEM.BLOOM_MASK, u64s(...words)),
  senderId: (id: bigint): Buffer => item(ITEM.ID, u64s(id)),
  senderName: (name: string): Buffer => item(ITEM.NAME, str(name)),
  /** NAME_ADD / NAME_REMOVE / NAME_CHANGE for old and new ids (KDBUS_MATCH_ID_ANY for any), optionally one name */
  nameChange: (type: number, oldId: bigint, newId: bigint, name?: string): Buffer => {
    const p = Buffer.alloc(SIZEOF_NOTIFY_NAME_CHANGE);
    p.writeBigUInt64LE(oldId, 0);
    p.writeBigUInt64LE(newId, 16);
    return item(type, name === undefined ? p : Buffer.concat([p, str(name)]));
  },
  idChange: (type: number, id: bigint): Buffer => item(type, u64s(id, 0n)),
};

/** A bus made through the control file, and its default endpoint. */
export interface TestBus {
  world: FakeWorld;
  control: OpenFile;
  bus: Bus;
  name: string;
  /** a new client on the default endpoint, connected (HELLO with ACCEPT_FD) unless hello is false */
  connect(opts?: Parameters<Client['hello']>[0] & { privileged?: boolean; hello?: boolean }): Client;
}

let busCount = 0;

/**
 * BUS_MAKE of "<euid>-<name>" with the given bloom size (bytes) and hash
 * count; every file of the world is closed when the test ends (pending
 * replies' timers would keep the process alive).
 */
export function makeBus(t: { teardown(fn: () => void): void }, world = new FakeWorld(),
                        bloom = { size: 64, nHash: 1 }): TestBus {
  t.teardown(() => world.closeAll());
  const control = world.openControl();
  const name = `${process.geteuid!()}-core${++busCount}`;
  const mem = world.memory(CALLER_TID);
  const buf = command(CMD_MAKE.items, {}, [
    item(ITEM.BLOOM_PARAMETER, u64s(BigInt(bloom.size), BigInt(bloom.nHash))),
    item(ITEM.MAKE_NAME, str(name)),
  ]);
  const r = world.ioctl(control, CMD.BUS_MAKE, mem.put(buf)).result;
  if (r !== 0) throw new Error(`BUS_MAKE failed: ${r}`);
  const bus = world.domain.buses.get(name)!;
  return {
    world, control, bus, name,
    connect(opts = {}) {
      const ep = bus.endpoints.get('bus')!;
      const c = new Client(world, opts.privileged === undefined ? world.openEndpoint(ep) : world.openEndpoint(ep, opts.privileged));
      if (opts.hello !== false) {
        const ret = c.hello(opts);
        if (ret !== 0) throw new Error(`HELLO failed: ${ret}`);
      }
      return c;
    },
  };
}
