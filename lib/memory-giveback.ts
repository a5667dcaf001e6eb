// Memory a departed client made the server hold, given back (issue #17, 5).
// Names and match rules are objects and array buffers that V8 frees only in
// a collection, and V8 collects only as the server allocates: after one user
// tore down thousands of names and matches, a server that goes quiet kept
// their memory (measured: 100+ MiB) indefinitely. So the server watches what
// users hold (their charged names, matches and match-rule bytes) and, once
// that fell far below its peak, asks for a full collection and for free heap
// memory to go back to the system. A collection blocks the loop for a few
// milliseconds per live MiB: it waits until the drop is over (what is held
// did not change between two checks: a teardown in progress still holds the
// rest, and collecting then cost the victim of test/hostile-cpu 1.6 s), and
// runs at most once per interval, so one user can cause one at most that often.
import type { UserRegistry } from './core/user.js';

/** A drop in held bytes (as counted by heldBytes) that is worth a collection. */
export const GIVE_BACK_DROP = 16 << 20;
/** At least this long between collections. */
export const GIVE_BACK_INTERVAL_MS = 10_000;
/** What one name or match costs the server beside its rule bytes, roughly (objects, map entries). */
const OBJECT_BYTES = 256;

/** Roughly what every user's names and matches make the server hold. */
export function heldBytes(users: UserRegistry): number {
  let n = 0;
  for (const u of users.all()) n += u.matchBytes + (u.names + u.matches) * OBJECT_BYTES;
  return n;
}

export class MemoryGiveBack {
  private peak = 0;
  private last = -Infinity;
  private previous = 0;

  constructor(private readonly held: () => number, private readonly giveBack: () => void,
              private readonly now: () => number = () => performance.now()) {}

  /** Run periodically (each run is one sample of what is held): true if it gave memory back. */
  check(): boolean {
    const held = this.held();
    const settled = held === this.previous;
    this.previous = held;
    this.peak = Math.max(this.peak, held);
    if (!settled || this.peak - held < GIVE_BACK_DROP || this.now() - this.last < GIVE_BACK_INTERVAL_MS) return false;
    this.giveBack();
    this.last = this.now();
    this.peak = held;
    return true;
  }
}
