// A connection's incoming message queue (ipc/kdbus/queue.c): FIFO order for
// plain RECV, lowest priority value first (FIFO within one priority) for
// RECV with USE_PRIORITY.
import { errno, fail } from './errors.js';
import type { QueueEntry } from './message.js';

export class Queue {
  private readonly fifo = new Set<QueueEntry>();
  private readonly byPriority = new Map<bigint, Set<QueueEntry>>();
  private priorities: bigint[] = []; // sorted ascending

  /** emptied: called when the queue becomes empty or stops being so */
  constructor(private readonly emptied: () => void = () => {}) {}

  get count(): number {
    return this.fifo.size;
  }

  add(entry: QueueEntry): void {
    this.fifo.add(entry);
    if (this.fifo.size === 1) this.emptied();
    let same = this.byPriority.get(entry.priority);
    if (!same) {
      same = new Set();
      this.byPriority.set(entry.priority, same);
      this.priorities.push(entry.priority);
      this.priorities.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }
    same.add(entry);
  }

  /** kdbus_queue_entry_peek: EAGAIN when empty; ENOMSG when nothing is at or below `priority`. */
  peek(priority: bigint, usePriority: boolean): QueueEntry {
    if (this.fifo.size === 0) fail(errno.EAGAIN, 'queue empty');
    if (!usePriority) return this.fifo.values().next().value as QueueEntry;
    const lowest = this.priorities[0];
    if (lowest > priority) fail(errno.ENOMSG, 'nothing at that priority');
    return this.byPriority.get(lowest)!.values().next().value as QueueEntry;
  }

  remove(entry: QueueEntry): void {
    if (!this.fifo.delete(entry)) return;
    if (this.fifo.size === 0) this.emptied();
    const same = this.byPriority.get(entry.priority)!;
    same.delete(entry);
    if (same.size === 0) {
      this.byPriority.delete(entry.priority);
      this.priorities = this.priorities.filter((p) => p !== entry.priority);
    }
  }

  entries(): IterableIterator<QueueEntry> {
    return this.fifo.values();
  }
}
