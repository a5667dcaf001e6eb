// A connection's pool: the memory the receiver mmaps, and kdbus's slice
// allocator over it (ipc/kdbus/pool.c). A slice is held by the server (kernel
// ref) until it is handed to the client (publish: user ref); it returns to the
// free space when both refs are gone. The client frees its ref with FREE.
// Slices are best-fit on size, adjacent free slices merge, so freed offsets are
// reused the way the kernel reuses them.
import { errno, fail } from './errors.js';
import { align8 } from '../abi/kdbus.js';

interface Slice {
  off: number;
  size: number;
  free: boolean;
  refKernel: boolean;
  refUser: boolean;
  prev: Slice | null;
  next: Slice | null;
  /** a slice whose server ref this one holds (a message's payload) */
  child: Slice | null;
}

/** Where the bytes go: the native pool of one open file (see lib/fuse/native.ts). */
export interface PoolBacking {
  /** 0, or -errno (-ENOSPC, -ENOMEM: no memory for the pool's pages). */
  write(offset: number, data: Buffer): number;
  /** Copies from a process's memory straight into the pool; 0 or -errno (as write, or -EFAULT). */
  copyFromProcess(offset: number, tid: number, addr: number, len: number): number;
  /** Makes the range visible to the client (page-cache pools). */
  flush(offset: number, len: number): void;
  /**
   * The native fast path (native/fastpath.h) answers FREEs of the slices the
   * client holds: told of each (held) and of each freed here; sync applies
   * the FREEs it answered (through freeByUser) before anything here could
   * tell them undone.
   */
  held?(offset: number, yes: boolean): void;
  sync?(): void;
}

export class Pool {
  readonly size: number;
  private busy = 0;
  private readonly freeSlices = new Set<Slice>();
  private readonly busySlices = new Map<number, Slice>();

  constructor(size: number, readonly backing: PoolBacking) {
    this.size = size;
    this.freeSlices.add({ off: 0, size, free: true, refKernel: false, refUser: false, prev: null, next: null, child: null });
  }

  /** Bytes not allocated (kdbus_pool_remain). */
  remain(): number {
    this.backing.sync?.();
    return this.size - this.busy;
  }

  /**
   * kdbus_pool_slice_alloc: a slice of at least size bytes, held by the
   * server. ENOBUFS when no free slice is large enough.
   */
  alloc(size: number): number {
    this.backing.sync?.();
    const want = align8(size);
    let best: Slice | null = null;
    for (const s of this.freeSlices) {
      if (s.size < want) continue;
      if (!best || s.size < best.size || (s.size === best.size && s.off < best.off)) best = s;
      if (s.size === want && best === s) break;
    }
    if (!best) fail(errno.ENOBUFS, `pool full (${want} bytes wanted, ${this.remain()} free)`);
    this.freeSlices.delete(best);
    if (best.size > want) {
      const rest: Slice = { off: best.off + want, size: best.size - want, free: true,
        refKernel: false, refUser: false, prev: best, next: best.next, child: null };
      if (best.next) best.next.prev = rest;
      best.next = rest;
      best.size = want;
      this.freeSlices.add(rest);
    }
    best.free = false;
    best.refKernel = true;
    this.busySlices.set(best.off, best);
    this.busy += best.size;
    return best.off;
  }

  /**
   * Writes data at off, a slice just allocated, and makes it visible to the
   * client (kdbus_pool_slice_copy_kvec). If the pool's memory cannot be had,
   * the slice goes back and the command fails with ENOMEM.
   */
  fill(off: number, data: Buffer): void {
    if (this.backing.write(off, data) < 0) {
      this.release(off);
      fail(errno.ENOMEM, 'no memory for the pool\'s pages');
    }
    this.backing.flush(off, data.length);
  }

  /**
   * A command's answer (HELLO's items, a name list, an info): written into a
   * new slice that goes to the client at once. Returns its offset.
   */
  handOver(data: Buffer): number {
    const off = this.alloc(data.length);
    this.fill(off, data);
    this.publish(off);
    this.release(off);
    return off;
  }

  /** kdbus_pool_slice_publish: the client now holds a ref (it must FREE it). */
  publish(off: number): void {
    this.backing.sync?.();
    const s = this.busySlices.get(off);
    if (!s || !s.refKernel) throw new Error(`publish of unheld slice ${off}`);
    s.refUser = true;
    this.backing.held?.(off, true);
  }

  /** kdbus_pool_slice_set_child: freeing off also drops the server's ref on child. */
  setChild(off: number, child: number): void {
    this.backing.sync?.();
    const s = this.busySlices.get(off);
    const c = this.busySlices.get(child);
    if (!s || !c || !c.refKernel) throw new Error(`setChild of unheld slices ${off}/${child}`);
    s.child = c;
  }

  /** kdbus_pool_slice_release: the server drops its ref. */
  release(off: number): void {
    this.backing.sync?.();
    const s = this.busySlices.get(off);
    if (!s || !s.refKernel) throw new Error(`release of unheld slice ${off}`);
    s.refKernel = false;
    this.maybeFree(s);
  }

  /** KDBUS_CMD_FREE (kdbus_pool_release_offset): ENXIO unless the client holds off. */
  freeByUser(off: number): void {
    this.backing.sync?.();
    const s = this.busySlices.get(off);
    if (!s || !s.refUser) fail(errno.ENXIO, `FREE of offset ${off} not handed out`);
    s.refUser = false;
    this.backing.held?.(off, false);
    this.maybeFree(s);
  }

  /** Number of allocated slices (for teardown checks and tests). */
  slicesInUse(): number {
    this.backing.sync?.();
    return this.busySlices.size;
  }

  /** Merges the free slice after s into s (kdbus_pool_free_slice's merge with a neighbour). */
  private absorbNext(s: Slice): void {
    const next = s.next!;
    this.freeSlices.delete(next);
    s.size += next.size;
    s.next = next.next;
    if (next.next) next.next.prev = s;
  }

  private maybeFree(slice: Slice): void {
    if (slice.refKernel || slice.refUser) return;
    this.busySlices.delete(slice.off);
    this.busy -= slice.size;
    const child = slice.child;
    slice.child = null;
    let s = slice;
    if (s.next?.free) this.absorbNext(s);
    if (s.prev?.free) {
      s = s.prev;
      this.freeSlices.delete(s); // re-added below, last, as a slice freed now
      this.absorbNext(s);
    }
    s.free = true;
    this.freeSlices.add(s);
    if (child) {
      child.refKernel = false;
      this.maybeFree(child);
    }
  }
}
