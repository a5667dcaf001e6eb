// lib/core/pool.ts against ipc/kdbus/pool.c: the slice allocator (best fit
// on size, split at the front, merge with both neighbours), the kernel/user
// refs (kdbus_pool_slice_release, kdbus_pool_release_offset,
// kdbus_pool_slice_publish), children (kdbus_pool_slice_set_child) and
// kdbus_pool_remain.
import t from 'tap';
import { Pool, type PoolBacking } from '../lib/core/pool.js';
import { errno, KdbusError } from '../lib/core/errors.js';
import { errnoOf } from './helpers.js';

/** A backing that only records calls; the allocator must not touch it. */
class FakeBacking implements PoolBacking {
  calls: string[] = [];
  /** what write answers: 0, or -errno (a pool whose memory cannot be had) */
  writeResult = 0;
  write(offset: number, data: Buffer): number {
    this.calls.push(`write ${offset} ${data.length}`);
    return this.writeResult;
  }
  copyFromProcess(offset: number, tid: number, addr: number, len: number): number {
    this.calls.push(`copyFromProcess ${offset} ${tid} ${addr} ${len}`);
    return 0;
  }
  flush(offset: number, len: number): void {
    this.calls.push(`flush ${offset} ${len}`);
  }
}

const mk = (size: number): { pool: Pool; backing: FakeBacking } => {
  const backing = new FakeBacking();
  return { pool: new Pool(size, backing), backing };
};

/** Alloc + immediate release: the slice goes away with the server ref. */
const drop = (pool: Pool, off: number): void => pool.release(off);

t.test('a new pool', async (t) => {
  const { pool, backing } = mk(4096);
  t.equal(pool.size, 4096);
  t.equal(pool.remain(), 4096);
  t.equal(pool.slicesInUse(), 0);
  t.equal(pool.backing, backing);
  t.equal(pool.alloc(4096), 0, 'the whole pool in one slice');
  t.equal(pool.remain(), 0);
  t.same(backing.calls, [], 'the allocator does not touch the backing');
});

t.test('a pool whose memory cannot be had: the command fails with ENOMEM, the slice goes back', async (t) => {
  const { pool, backing } = mk(4096);
  backing.writeResult = -errno.ENOSPC;
  t.equal(errnoOf(() => pool.handOver(Buffer.alloc(100))), errno.ENOMEM, 'handOver: ENOMEM');
  t.equal(pool.remain(), 4096, 'nothing stays allocated');
  t.equal(pool.slicesInUse(), 0);
  backing.writeResult = 0;
  t.equal(pool.handOver(Buffer.alloc(100)), 0, 'the next one, with memory, lands where the failed one was');
});

t.test('alloc rounds to 8 and allocates front to back', async (t) => {
  const { pool } = mk(4096);
  t.equal(pool.alloc(1), 0);
  t.equal(pool.remain(), 4096 - 8, 'remain counts the rounded size');
  t.equal(pool.alloc(8), 8);
  t.equal(pool.alloc(9), 16);
  t.equal(pool.alloc(15), 32);
  t.equal(pool.alloc(16), 48);
  t.equal(pool.alloc(3), 64);
  t.equal(pool.remain(), 4096 - 72);
  t.equal(pool.slicesInUse(), 6);
});

t.test('ENOBUFS when no free slice is large enough', async (t) => {
  t.test('full', async (t) => {
    const { pool } = mk(64);
    t.equal(pool.alloc(64), 0);
    t.equal(errnoOf(() => pool.alloc(1)), errno.ENOBUFS);
    t.equal(pool.slicesInUse(), 1, 'a failed alloc takes nothing');
    t.equal(pool.remain(), 0);
  });

  t.test('larger than the pool', async (t) => {
    const { pool } = mk(64);
    t.equal(errnoOf(() => pool.alloc(65)), errno.ENOBUFS, '65 rounds to 72');
    t.equal(errnoOf(() => pool.alloc(4096)), errno.ENOBUFS);
    t.equal(pool.remain(), 64);
    t.equal(pool.alloc(57), 0, '57 rounds to 64 and fits');
  });

  t.test('rounding makes it not fit', async (t) => {
    const { pool } = mk(64);
    pool.alloc(56);
    t.equal(pool.remain(), 8);
    t.equal(errnoOf(() => pool.alloc(9)), errno.ENOBUFS, '9 rounds to 16');
    t.equal(pool.alloc(8), 56);
  });

  t.test('fragmented: enough bytes free but not contiguous', async (t) => {
    const { pool } = mk(64);
    const offs = [pool.alloc(16), pool.alloc(16), pool.alloc(16), pool.alloc(16)];
    t.same(offs, [0, 16, 32, 48]);
    drop(pool, 0);
    drop(pool, 32);
    t.equal(pool.remain(), 32);
    t.equal(errnoOf(() => pool.alloc(32)), errno.ENOBUFS);
    t.equal(errnoOf(() => pool.alloc(17)), errno.ENOBUFS);
    t.ok([0, 32].includes(pool.alloc(16)), 'a 16-byte hole is still usable');
  });

  t.test('sizes beyond 31 bits (size_t in the kernel)', async (t) => {
    const big = mk(4096).pool;
    t.equal(errnoOf(() => big.alloc(2 ** 31)), errno.ENOBUFS, 'alloc(2^31) in a 4 KiB pool');
    const big2 = mk(4096).pool;
    t.equal(errnoOf(() => big2.alloc(2 ** 32)), errno.ENOBUFS, 'alloc(2^32) in a 4 KiB pool');
    const big3 = mk(4096).pool;
    t.equal(errnoOf(() => big3.alloc(2 ** 32 + 8)), errno.ENOBUFS, 'alloc(2^32 + 8) in a 4 KiB pool');
  });
});

t.test('best fit on size', async (t) => {
  const { pool } = mk(1024);
  // [A 64 @0][B 8 @64][C 16 @72][D 8 @88][free 928 @96]
  const A = pool.alloc(64);
  const B = pool.alloc(8);
  const C = pool.alloc(16);
  const D = pool.alloc(8);
  t.same([A, B, C, D], [0, 64, 72, 88]);
  drop(pool, A);
  drop(pool, C);
  // free: 64 @0, 16 @72, 928 @96
  t.equal(pool.alloc(12), 72, 'exact fit (16) beats the first and the largest hole');
  t.equal(pool.alloc(40), 0, 'the smallest hole that fits (64) beats the tail (928)');
  // free: 24 @40, 928 @96
  t.equal(pool.alloc(24), 40, 'the rest of the split hole');
  t.equal(pool.alloc(8), 96, 'then the tail');
  t.equal(pool.remain(), 1024 - 64 - 8 - 16 - 8 - 8);
  t.equal(B + D, 64 + 88);
});

t.test('best fit prefers a smaller hole even when it is later in the pool', async (t) => {
  const { pool } = mk(256);
  const a = pool.alloc(128); // 0
  const b = pool.alloc(8); // 128
  const c = pool.alloc(32); // 136
  const d = pool.alloc(8); // 168
  t.same([a, b, c, d], [0, 128, 136, 168]);
  drop(pool, a);
  drop(pool, c);
  // free: 128 @0, 32 @136, 80 @176
  t.equal(pool.alloc(24), 136, '32 is the best fit for 24');
  t.equal(pool.alloc(72), 176, '80 is the best fit for 72');
  t.equal(pool.alloc(8), 160, 'the 8 left of the 32-byte hole');
  t.equal(pool.alloc(8), 248, 'the 8 left of the 80-byte hole');
  t.equal(pool.alloc(128), 0, 'the 128-byte hole is untouched');
  t.equal(pool.remain(), 0);
});

t.test('a freed offset is reused by the next alloc of the same size', async (t) => {
  const { pool } = mk(4096);
  const offs = [pool.alloc(32), pool.alloc(32), pool.alloc(32)];
  t.same(offs, [0, 32, 64]);
  drop(pool, 32);
  t.equal(pool.alloc(32), 32);
  drop(pool, 0);
  t.equal(pool.alloc(30), 0, 'same rounded size');

  // via the user's FREE, too
  const off = pool.alloc(100);
  pool.publish(off);
  pool.release(off);
  pool.freeByUser(off);
  t.equal(pool.alloc(100), off);
});

t.test('refs: kernel (release) and user (publish / FREE)', async (t) => {
  t.test('kernel ref only: release frees', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(100);
    t.equal(pool.slicesInUse(), 1);
    t.equal(pool.remain(), 1024 - 104);
    pool.release(off);
    t.equal(pool.slicesInUse(), 0);
    t.equal(pool.remain(), 1024);
  });

  t.test('published, kernel releases first, then FREE', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(100);
    pool.publish(off);
    pool.release(off);
    t.equal(pool.slicesInUse(), 1, 'the user still holds it');
    t.equal(pool.remain(), 1024 - 104);
    pool.freeByUser(off);
    t.equal(pool.slicesInUse(), 0);
    t.equal(pool.remain(), 1024);
  });

  t.test('published, FREE first, then the kernel releases', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(100);
    pool.publish(off);
    pool.freeByUser(off);
    t.equal(pool.slicesInUse(), 1, 'the kernel still holds it');
    t.equal(errnoOf(() => pool.freeByUser(off)), errno.ENXIO, 'double FREE while the kernel holds it');
    pool.release(off);
    t.equal(pool.slicesInUse(), 0);
    t.equal(pool.remain(), 1024);
  });

  t.test('FREE of an unpublished slice', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(100);
    t.equal(errnoOf(() => pool.freeByUser(off)), errno.ENXIO);
    t.equal(pool.slicesInUse(), 1, 'the slice is untouched');
    pool.release(off);
    t.equal(pool.slicesInUse(), 0);
  });

  t.test('FREE of unknown offsets', async (t) => {
    const { pool } = mk(1024);
    t.equal(errnoOf(() => pool.freeByUser(0)), errno.ENXIO, 'empty pool');
    const a = pool.alloc(64);
    pool.publish(a);
    t.equal(errnoOf(() => pool.freeByUser(8)), errno.ENXIO, 'inside a slice');
    t.equal(errnoOf(() => pool.freeByUser(64)), errno.ENXIO, 'the free tail');
    t.equal(errnoOf(() => pool.freeByUser(4096)), errno.ENXIO, 'past the pool');
    t.equal(errnoOf(() => pool.freeByUser(-8)), errno.ENXIO, 'negative');
    t.equal(pool.slicesInUse(), 1);
    pool.freeByUser(a);
    pool.release(a);
    t.equal(pool.slicesInUse(), 0);
  });

  t.test('double FREE after the slice is gone', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(64);
    pool.publish(off);
    pool.release(off);
    pool.freeByUser(off);
    t.equal(errnoOf(() => pool.freeByUser(off)), errno.ENXIO);
    t.equal(pool.remain(), 1024);
  });

  t.test('FREE of a stale offset now held (unpublished) by someone else', async (t) => {
    const { pool } = mk(1024);
    const off = pool.alloc(64);
    pool.publish(off);
    pool.release(off);
    pool.freeByUser(off);
    t.equal(pool.alloc(64), off, 'reallocated at the same offset');
    t.equal(errnoOf(() => pool.freeByUser(off)), errno.ENXIO);
    t.equal(pool.slicesInUse(), 1);
  });

  t.test('misuse of the server-side calls throws', async (t) => {
    const { pool } = mk(1024);
    t.throws(() => pool.publish(0), 'publish of nothing');
    t.throws(() => pool.release(0), 'release of nothing');
    const off = pool.alloc(8);
    pool.publish(off);
    pool.release(off);
    t.throws(() => pool.release(off), 'double release');
    t.throws(() => pool.publish(off), 'publish without the kernel ref');
    pool.freeByUser(off);
  });
});

t.test('adjacent free slices merge', async (t) => {
  t.test('free everything in every order: one alloc of the whole pool works', async (t) => {
    const orders = [
      [0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 3, 0, 2, 4], [2, 0, 4, 1, 3], [0, 2, 4, 1, 3], [3, 1, 4, 0, 2],
    ];
    for (const order of orders) {
      const { pool } = mk(1024);
      const offs = [pool.alloc(8), pool.alloc(24), pool.alloc(100), pool.alloc(16), pool.alloc(8)];
      for (const i of order) drop(pool, offs[i]!);
      t.equal(pool.remain(), 1024, `${order}: remain`);
      t.equal(pool.alloc(1024), 0, `${order}: whole pool`);
    }
  });

  t.test('merge with the next slice', async (t) => {
    const { pool } = mk(96);
    const a = pool.alloc(32);
    const b = pool.alloc(32);
    const c = pool.alloc(32);
    drop(pool, b);
    drop(pool, a); // a + b
    t.equal(pool.alloc(64), 0, 'a and b merged');
    t.equal(errnoOf(() => pool.alloc(8)), errno.ENOBUFS);
    t.equal(c, 64);
  });

  t.test('merge with the previous slice', async (t) => {
    const { pool } = mk(96);
    const a = pool.alloc(32);
    const b = pool.alloc(32);
    pool.alloc(32);
    drop(pool, a);
    drop(pool, b); // a + b
    t.equal(pool.alloc(64), 0);
  });

  t.test('merge with both neighbours', async (t) => {
    const { pool } = mk(128);
    const a = pool.alloc(32);
    const b = pool.alloc(32);
    const c = pool.alloc(32);
    pool.alloc(32);
    drop(pool, a);
    drop(pool, c);
    drop(pool, b); // a + b + c
    t.equal(pool.alloc(96), 0);
    t.equal(pool.remain(), 0);
  });

  t.test('no merge across a busy slice', async (t) => {
    const { pool } = mk(96);
    const a = pool.alloc(32);
    pool.alloc(32);
    const c = pool.alloc(32);
    drop(pool, a);
    drop(pool, c);
    t.equal(errnoOf(() => pool.alloc(40)), errno.ENOBUFS);
  });

  t.test('merge into the free tail', async (t) => {
    const { pool } = mk(1024);
    pool.alloc(64);
    const b = pool.alloc(64);
    drop(pool, b);
    t.equal(pool.alloc(1024 - 64), 64, 'b merged with the tail');
  });

  t.test('merged slices split again and merge again (stress)', async (t) => {
    // deterministic pseudo-random alloc/free sequence, checked against a model
    const SIZE = 8192;
    const { pool } = mk(SIZE);
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const live = new Map<number, number>(); // off -> rounded size
    let ok = true;
    for (let i = 0; i < 2000 && ok; i++) {
      if (live.size === 0 || rnd(3) !== 0) {
        const size = 1 + rnd(300);
        const want = (size + 7) & ~7;
        let off: number;
        try {
          off = pool.alloc(size);
        } catch (e) {
          if (!(e instanceof KdbusError) || e.errno !== errno.ENOBUFS) throw e;
          continue;
        }
        // no overlap with live slices, inside the pool, aligned
        if (off % 8 !== 0 || off < 0 || off + want > SIZE) ok = false;
        for (const [o, s] of live) if (off < o + s && o < off + want) ok = false;
        live.set(off, want);
      } else {
        const keys = [...live.keys()];
        const off = keys[rnd(keys.length)]!;
        if (rnd(2) === 0) {
          pool.release(off);
        } else {
          pool.publish(off);
          pool.release(off);
          pool.freeByUser(off);
        }
        live.delete(off);
      }
      let used = 0;
      for (const s of live.values()) used += s;
      if (pool.remain() !== SIZE - used || pool.slicesInUse() !== live.size) ok = false;
    }
    t.ok(ok, 'slices never overlap, remain and slicesInUse follow the model');
    for (const off of live.keys()) pool.release(off);
    t.equal(pool.remain(), SIZE);
    t.equal(pool.alloc(SIZE), 0, 'everything merged back into one slice');
  });
});

t.test('setChild: freeing the parent drops the server ref on the child', async (t) => {
  t.test('parent handed out, child only held by the server', async (t) => {
    const { pool } = mk(1024);
    const payload = pool.alloc(200); // the message payload (staged at send)
    const msg = pool.alloc(64); // the message header, handed to the client
    pool.setChild(msg, payload);
    pool.publish(msg);
    pool.release(msg);
    t.equal(pool.slicesInUse(), 2, 'the client holds msg, msg holds payload');
    pool.freeByUser(msg);
    t.equal(pool.slicesInUse(), 0, 'FREE of msg released payload too');
    t.equal(pool.remain(), 1024);
    t.equal(pool.alloc(1024), 0, 'and everything merged');
  });

  t.test('child also published: it stays until its own FREE', async (t) => {
    const { pool } = mk(1024);
    const child = pool.alloc(64);
    const parent = pool.alloc(64);
    pool.setChild(parent, child);
    pool.publish(child);
    pool.publish(parent);
    pool.release(parent);
    pool.freeByUser(parent);
    t.equal(pool.slicesInUse(), 1, 'child left');
    t.equal(pool.remain(), 1024 - 64);
    t.throws(() => pool.release(child), 'the server ref on the child is gone already');
    pool.freeByUser(child);
    t.equal(pool.slicesInUse(), 0);
    t.equal(pool.remain(), 1024);
  });

  t.test('parent freed by the server (never published)', async (t) => {
    const { pool } = mk(1024);
    const child = pool.alloc(64);
    const parent = pool.alloc(64);
    pool.setChild(parent, child);
    pool.release(parent);
    t.equal(pool.slicesInUse(), 0);
    t.equal(pool.remain(), 1024);
  });

  t.test('the child merges with the parent\'s hole', async (t) => {
    const { pool } = mk(128);
    const parent = pool.alloc(32); // 0
    const child = pool.alloc(32); // 32
    const other = pool.alloc(64); // 64
    pool.setChild(parent, child);
    pool.publish(parent);
    pool.release(parent);
    pool.freeByUser(parent);
    t.equal(pool.alloc(64), 0, 'parent and child holes merged');
    t.equal(other, 64);
  });

  t.test('setChild of unheld slices throws', async (t) => {
    const { pool } = mk(1024);
    const a = pool.alloc(8);
    t.throws(() => pool.setChild(a, 512));
    t.throws(() => pool.setChild(512, a));
  });
});

t.test('remain() and slicesInUse()', async (t) => {
  const { pool } = mk(2048);
  const offs: number[] = [];
  let used = 0;
  for (const s of [1, 7, 8, 9, 100, 1000]) {
    offs.push(pool.alloc(s));
    used += (s + 7) & ~7;
    t.equal(pool.remain(), 2048 - used, `after alloc(${s})`);
  }
  t.equal(pool.slicesInUse(), 6);
  pool.publish(offs[4]!);
  pool.release(offs[4]!);
  t.equal(pool.remain(), 2048 - used, 'a user-held slice still counts');
  t.equal(pool.slicesInUse(), 6);
  pool.freeByUser(offs[4]!);
  used -= 104;
  t.equal(pool.remain(), 2048 - used);
  t.equal(pool.slicesInUse(), 5);
  for (const o of [offs[0]!, offs[1]!, offs[2]!, offs[3]!, offs[5]!]) pool.release(o);
  t.equal(pool.remain(), 2048);
  t.equal(pool.slicesInUse(), 0);
});
