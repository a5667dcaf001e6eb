// lib/core/queue.ts against ipc/kdbus/queue.c: kdbus_queue_entry_add (FIFO
// list + priority tree, FIFO within one priority), kdbus_queue_entry_peek
// (EAGAIN when empty, ENOMSG when the lowest priority value is above the
// requested one) and kdbus_queue_entry_remove (both views).
import t from 'tap';
import { Queue } from '../lib/core/queue.js';
import { errno, KdbusError } from '../lib/core/errors.js';
import type { QueueEntry } from '../lib/core/message.js';

interface Fake {
  tag: string;
  priority: bigint;
}
/** A QueueEntry with just what the queue uses (priority) and a tag. */
const e = (tag: string, priority: bigint | number = 0n): QueueEntry =>
  ({ tag, priority: BigInt(priority) } satisfies Fake) as unknown as QueueEntry;
const tag = (x: QueueEntry | 'EAGAIN' | 'ENOMSG'): string => (typeof x === 'string' ? x : (x as unknown as Fake).tag);
/** The peeked entry, or the errno peek raised, by name. */
const peek = (q: Queue, priority: bigint, usePriority: boolean): QueueEntry | 'EAGAIN' | 'ENOMSG' => {
  try {
    return q.peek(priority, usePriority);
  } catch (err) {
    if (err instanceof KdbusError && err.errno === errno.EAGAIN) return 'EAGAIN';
    if (err instanceof KdbusError && err.errno === errno.ENOMSG) return 'ENOMSG';
    throw err;
  }
};
const tags = (q: Queue): string[] => [...q.entries()].map(tag);

const S64_MAX = (1n << 63n) - 1n;
const S64_MIN = -(1n << 63n);

/** RECV: peek, then remove what was peeked (no PEEK flag). */
const recv = (q: Queue, priority: bigint, usePriority: boolean): string => {
  const x = peek(q, priority, usePriority);
  if (typeof x !== 'string') q.remove(x);
  return tag(x);
};

t.test('empty queue: EAGAIN, with and without USE_PRIORITY', async (t) => {
  const q = new Queue();
  t.equal(q.count, 0);
  t.equal(peek(q, 0n, false), 'EAGAIN');
  t.equal(peek(q, 0n, true), 'EAGAIN');
  t.equal(peek(q, S64_MAX, true), 'EAGAIN');
  t.same(tags(q), []);
});

t.test('FIFO without USE_PRIORITY, whatever the priorities', async (t) => {
  const q = new Queue();
  const entries = [e('a', 5), e('b', -3), e('c', 0), e('d', 5), e('e', S64_MIN), e('f', S64_MAX)];
  for (const x of entries) q.add(x);
  t.equal(q.count, 6);
  t.same(tags(q), ['a', 'b', 'c', 'd', 'e', 'f'], 'entries() in FIFO order');
  t.equal(tag(peek(q, 0n, false)), 'a', 'peek does not remove');
  t.equal(tag(peek(q, S64_MIN, false)), 'a', 'the priority argument is ignored');
  t.equal(q.count, 6);
  const got: string[] = [];
  for (let i = 0; i < 6; i++) got.push(recv(q, 0n, false));
  t.same(got, ['a', 'b', 'c', 'd', 'e', 'f']);
  t.equal(peek(q, 0n, false), 'EAGAIN');
  t.equal(q.count, 0);
});

t.test('USE_PRIORITY: lowest value first, FIFO within one value', async (t) => {
  const q = new Queue();
  for (const x of [e('p5a', 5), e('m3a', -3), e('p0a', 0), e('p5b', 5), e('m3b', -3), e('p0b', 0), e('p5c', 5),
    e('big', 1000), e('m3c', -3)]) q.add(x);
  const got: string[] = [];
  for (let i = 0; i < 9; i++) got.push(recv(q, S64_MAX, true));
  t.same(got, ['m3a', 'm3b', 'm3c', 'p0a', 'p0b', 'p5a', 'p5b', 'p5c', 'big']);
  t.equal(peek(q, S64_MAX, true), 'EAGAIN');
});

t.test('USE_PRIORITY: s64 extremes', async (t) => {
  const q = new Queue();
  q.add(e('max', S64_MAX));
  q.add(e('zero', 0));
  q.add(e('min', S64_MIN));
  t.equal(recv(q, S64_MAX, true), 'min');
  t.equal(recv(q, S64_MAX, true), 'zero');
  t.equal(recv(q, S64_MAX, true), 'max');
});

t.test('USE_PRIORITY: ENOMSG when the lowest is above the requested priority', async (t) => {
  const q = new Queue();
  q.add(e('a', 10));
  q.add(e('b', 20));
  t.equal(peek(q, 9n, true), 'ENOMSG');
  t.equal(peek(q, -100n, true), 'ENOMSG');
  t.equal(peek(q, S64_MIN, true), 'ENOMSG');
  t.equal(tag(peek(q, 10n, true)), 'a', 'equal to the requested priority is fine');
  t.equal(tag(peek(q, 15n, true)), 'a');
  t.equal(q.count, 2, 'ENOMSG and peek leave the queue alone');
  t.equal(tag(peek(q, 9n, false)), 'a', 'without USE_PRIORITY the priority does not matter');
  t.equal(recv(q, 10n, true), 'a');
  t.equal(peek(q, 10n, true), 'ENOMSG', 'b (20) is above 10');
  t.equal(recv(q, 20n, true), 'b');
  t.equal(peek(q, 20n, true), 'EAGAIN', 'empty beats ENOMSG');
});

t.test('a new lower priority arriving later is picked first', async (t) => {
  const q = new Queue();
  q.add(e('a', 5));
  t.equal(tag(peek(q, S64_MAX, true)), 'a');
  q.add(e('b', 1));
  t.equal(tag(peek(q, S64_MAX, true)), 'b');
  t.equal(tag(peek(q, S64_MAX, false)), 'a', 'FIFO head is still a');
  q.add(e('c', 3));
  t.equal(tag(peek(q, S64_MAX, true)), 'b');
  q.add(e('d', -1));
  t.equal(tag(peek(q, S64_MAX, true)), 'd');
});

t.test('remove keeps both views consistent', async (t) => {
  t.test('removing the FIFO head (taken without USE_PRIORITY) updates the priority view', async (t) => {
    const q = new Queue();
    q.add(e('a', 1));
    q.add(e('b', 2));
    q.add(e('c', 1));
    t.equal(recv(q, 0n, false), 'a');
    t.equal(tag(peek(q, S64_MAX, true)), 'c', 'the next of priority 1');
    t.equal(recv(q, 0n, false), 'b');
    t.equal(tag(peek(q, S64_MAX, true)), 'c');
    t.equal(tag(peek(q, 0n, false)), 'c');
    t.equal(peek(q, 0n, true), 'ENOMSG', 'lowest is 1');
    t.equal(recv(q, 1n, true), 'c');
    t.equal(q.count, 0);
    t.equal(peek(q, S64_MAX, true), 'EAGAIN');
  });

  t.test('removing the priority head (taken with USE_PRIORITY) updates the FIFO view', async (t) => {
    const q = new Queue();
    q.add(e('a', 5));
    q.add(e('b', 1));
    q.add(e('c', 3));
    t.equal(recv(q, S64_MAX, true), 'b');
    t.same(tags(q), ['a', 'c']);
    t.equal(tag(peek(q, 0n, false)), 'a');
    t.equal(recv(q, S64_MAX, true), 'c');
    t.same(tags(q), ['a']);
    t.equal(q.count, 1);
  });

  t.test('removing from the middle (e.g. a timed-out or moved message)', async (t) => {
    const q = new Queue();
    const a = e('a', 2);
    const b = e('b', 1);
    const c = e('c', 1);
    const d = e('d', 1);
    const x = e('x', 0);
    for (const y of [a, b, c, d, x]) q.add(y);
    q.remove(c);
    t.same(tags(q), ['a', 'b', 'd', 'x']);
    t.equal(q.count, 4, 'count follows');
    q.remove(x); // the only one of its priority
    t.same(tags(q), ['a', 'b', 'd']);
    t.equal(q.count, 3);
    t.equal(tag(peek(q, S64_MAX, true)), 'b');
    t.equal(peek(q, 0n, true), 'ENOMSG', 'priority 0 is gone from the priority view');
    q.remove(b);
    t.equal(tag(peek(q, S64_MAX, true)), 'd', 'd follows b, c was removed');
    q.remove(d);
    t.equal(tag(peek(q, 1n, true)), 'ENOMSG', 'priority 1 is gone');
    t.equal(tag(peek(q, S64_MAX, true)), 'a');
    q.remove(a);
    t.equal(q.count, 0);
    t.equal(peek(q, S64_MAX, true), 'EAGAIN');
    t.equal(peek(q, 0n, false), 'EAGAIN');
  });

  t.test('removing an entry that is not queued is a no-op', async (t) => {
    const q = new Queue();
    const a = e('a', 1);
    q.add(a);
    q.remove(e('stranger', 1));
    q.remove(e('stranger', 7));
    t.equal(q.count, 1);
    q.remove(a);
    q.remove(a);
    t.equal(q.count, 0);
    t.equal(peek(q, S64_MAX, true), 'EAGAIN');
  });

  t.test('a priority emptied and used again', async (t) => {
    const q = new Queue();
    q.add(e('a', 1));
    q.add(e('z', 9));
    t.equal(recv(q, S64_MAX, true), 'a');
    q.add(e('b', 1));
    t.equal(tag(peek(q, S64_MAX, true)), 'b');
    t.equal(tag(peek(q, 0n, false)), 'z');
  });

  t.test('interleaved adds and removes against a model', async (t) => {
    const q = new Queue();
    const model: Array<{ x: QueueEntry; seq: number }> = [];
    let seed = 4242;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let seq = 0;
    let ok = true;
    for (let i = 0; i < 3000 && ok; i++) {
      const op = rnd(4);
      if (op <= 1 || model.length === 0) {
        const x = e(`m${seq}`, rnd(7) - 3);
        model.push({ x, seq: seq++ });
        q.add(x);
        continue;
      }
      const limit = BigInt(rnd(9) - 4);
      const use = op === 2;
      const want = use
        ? [...model].sort((p, r) => (p.x.priority < r.x.priority ? -1 : p.x.priority > r.x.priority ? 1 : p.seq - r.seq))[0]!
        : model[0]!;
      const expect = use && want.x.priority > limit ? 'ENOMSG' : tag(want.x);
      const got = peek(q, limit, use);
      if (tag(got) !== expect) ok = false;
      if (typeof got !== 'string') {
        q.remove(got);
        model.splice(model.findIndex((m) => m.x === got), 1);
      } else if (rnd(2) === 0) {
        // remove something from the middle
        const k = rnd(model.length);
        q.remove(model[k]!.x);
        model.splice(k, 1);
      }
      if (q.count !== model.length || tags(q).join() !== model.map((m) => tag(m.x)).join()) ok = false;
    }
    t.ok(ok, 'peek/remove follow the model in both views');
  });
});
