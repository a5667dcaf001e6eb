// lib/memory-giveback.ts: memory goes back after a large drop in what users
// hold, at most once per interval; never while held memory only grows.
import t from 'tap';
import { GIVE_BACK_DROP, GIVE_BACK_INTERVAL_MS, heldBytes, MemoryGiveBack } from '../lib/memory-giveback.js';
import { UserRegistry } from '../lib/core/user.js';

t.test('gives back after a drop of GIVE_BACK_DROP once it is over, at most once per interval', async (t) => {
  let held = 0;
  let now = 0;
  let given = 0;
  const m = new MemoryGiveBack(() => held, () => given++, () => now);
  held = 100 * GIVE_BACK_DROP;
  t.notOk(m.check(), 'growing: nothing to give back');
  held -= GIVE_BACK_DROP - 1;
  t.notOk(m.check(), 'a drop just short of the threshold, still dropping');
  t.notOk(m.check(), 'a drop just short of the threshold, settled');
  held -= 1;
  t.notOk(m.check(), 'a drop of the threshold, still dropping');
  t.ok(m.check(), 'a drop of the threshold below the peak, settled');
  t.equal(given, 1);
  held -= 2 * GIVE_BACK_DROP;
  t.notOk(m.check());
  now += GIVE_BACK_INTERVAL_MS - 1;
  t.notOk(m.check(), 'not again within the interval');
  now += 1;
  t.ok(m.check(), 'again once the interval passed');
  t.notOk(m.check(), 'the peak starts again from there');
  t.equal(given, 2);
});

t.test('heldBytes counts every user\'s names, matches and rule bytes', async (t) => {
  const users = new UserRegistry();
  t.equal(heldBytes(users), 0);
  users.get(1000).charge('matchBytes', 4096);
  const none = heldBytes(users);
  t.equal(none, 4096, 'rule bytes');
  users.get(1001).charge('names', 1);
  users.get(1001).charge('matches', 1);
  t.ok(heldBytes(users) > none, 'names and matches cost beside their bytes');
});
