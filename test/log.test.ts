// The log's parts, in process: the per-uid refusal limiter (token bucket,
// summaries, forgetting idle users), the line writer under a reader that
// falls behind (drops counted and reported, partial writes finished, lines
// never mixed), levels, and telling the journal's stream from other stderrs.
import { fstatSync } from 'node:fs';
import t from 'tap';
import { LineWriter } from '../lib/log-writer.js';
import { logging, logLevel, parseLogLevel, setLogLevel, stderrIsJournal } from '../lib/log.js';
import { RefusalLimiter, summaryText } from '../lib/refusal-limiter.js';

const LIMITS = { burst: 4, perSecond: 2, summaryMs: 10_000, summaryKinds: 2 };

function clock(): { now: () => number; advance: (ms: number) => void } {
  let at = 1_000_000;
  return { now: () => at, advance: (ms) => { at += ms; } };
}

t.test('each uid gets a burst, then its rate; the rest is counted per kind', async (t) => {
  const c = clock();
  const r = new RefusalLimiter(LIMITS, c.now);
  const admitted = (uid: number, n: number, kind = 'BUS_MAKE EINVAL') =>
    Array.from({ length: n }, () => r.admit(uid, kind)).filter(Boolean).length;
  t.equal(admitted(1000, 100), 4, 'a burst of 4 lines, then none');
  t.equal(admitted(1001, 100), 4, 'another uid has a bucket of its own');
  c.advance(1000);
  t.equal(admitted(1000, 100), 2, 'a second later: 2 more lines (2 a second)');
  c.advance(250);
  t.equal(admitted(1000, 1), 0, 'a quarter second buys half a line: none');
  c.advance(250);
  t.equal(admitted(1000, 1), 1, 'half a second buys one');
  t.equal(admitted(1000, 5, 'HELLO EPERM'), 0, 'other kinds are suppressed too');
  t.equal(admitted(1000, 1, 'SEND ENXIO'), 0);
  t.equal(r.pending, 96 + 96 + 98 + 1 + 5 + 1, 'every refusal not logged is counted');
  t.same(r.summaries(), [], 'no summary before the period is over');
  c.advance(10_000);
  const s = r.summaries();
  t.equal(s.length, 2, 'then one summary per uid with suppressed refusals');
  const u = s.find((x) => x.uid === 1000)!;
  t.equal(u.total, 96 + 98 + 1 + 5 + 1, 'the uid\'s total');
  t.same(u.kinds, [['BUS_MAKE EINVAL', 195], ['HELLO EPERM', 5]], 'the biggest kinds first, at most summaryKinds');
  t.equal(u.others, 1, 'the rest counted as others');
  t.match(summaryText(u), /^uid 1000: 201 more refusals in the last 12 s not logged one by one: BUS_MAKE EINVAL x195, HELLO EPERM x5, others x1$/);
  t.equal(r.pending, 0, 'summaries reset the counts');
  t.same(r.summaries(true), [], 'nothing more to sum up');
});

t.test('users whose buckets are full again are forgotten', async (t) => {
  const c = clock();
  const r = new RefusalLimiter(LIMITS, c.now);
  for (let uid = 0; uid < 1000; uid++) r.admit(uid, 'HELLO EPERM');
  t.equal(r.users, 1000, 'a bucket per uid refused');
  c.advance(10_000);
  r.summaries();
  t.equal(r.users, 0, 'none left once their buckets refilled');
});

/** A reader with room for `room` bytes at a time (0: behind); records what got through. */
function fakeOut(): { out: (d: Buffer) => number; room: number; got: string } {
  const o = {
    room: 1 << 20,
    got: '',
    out: (d: Buffer): number => {
      if (o.room === 0) return -11;
      const n = Math.min(o.room, d.length);
      o.got += d.subarray(0, n).toString();
      o.room -= n;
      return n;
    },
  };
  return o;
}

t.test('a reader that falls behind: lines dropped, counted and reported', async (t) => {
  const o = fakeOut();
  const w = new LineWriter(o.out, (n) => `dropped ${n}\n`);
  t.ok(w.write('one\n'), 'written while the reader keeps up');
  o.room = 0;
  t.notOk(w.write('two\n'), 'dropped while it does not');
  t.notOk(w.write('three\n'));
  t.equal(w.pendingDrops, 2, 'and counted');
  o.room = 1 << 20;
  t.ok(w.write('four\n'), 'written once it reads again');
  t.equal(o.got, 'one\ndropped 2\nfour\n', 'after the count of what was dropped');
  t.equal(w.pendingDrops, 0);
});

t.test('a line written in part is finished before the next; drops reported by flush', async (t) => {
  const o = fakeOut();
  const w = new LineWriter(o.out, (n) => `dropped ${n}\n`);
  o.room = 3;
  t.ok(w.write('abcdef\n'), 'a partial write counts as written');
  t.notOk(w.write('next\n'), 'the next line waits for none: dropped while the rest cannot go');
  o.room = 1 << 20;
  w.flush();
  t.equal(o.got, 'abcdef\ndropped 1\n', 'flush finishes the line, then reports the drop');
  t.ok(w.write('last\n'));
  t.equal(o.got, 'abcdef\ndropped 1\nlast\n', 'lines never mix');
});

t.test('levels', async (t) => {
  t.equal(parseLogLevel('notice'), 'notice');
  t.equal(parseLogLevel('verbose'), null, 'unknown names are refused');
  const before = logLevel();
  setLogLevel('warning');
  t.notOk(logging(), 'info lines are not built at warning');
  setLogLevel('debug');
  t.ok(logging(), 'they are at debug');
  t.equal(logLevel(), 'debug');
  setLogLevel(before);
});

t.test('the journal is recognized by the device and inode of stderr', async (t) => {
  const st = fstatSync(2, { bigint: true });
  t.ok(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }), 'JOURNAL_STREAM naming fd 2');
  t.notOk(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }), 'another inode: not the journal');
  t.notOk(stderrIsJournal({}), 'no JOURNAL_STREAM');
  t.notOk(stderrIsJournal({ JOURNAL_STREAM: 'junk' }), 'a malformed one');
});
