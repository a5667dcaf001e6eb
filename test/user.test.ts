// Per-user accounting (lib/core/user.ts) in process: charges within kdbusfs's
// own limits, refusals naming the limit, the server-wide fd budget, a user
// kept while anything is charged to it, limits parsed as `--limit` gives them.
import t from 'tap';
import { DEFAULT_LIMITS, UserRegistry, parseLimit, type UserLimits } from '../lib/core/user.js';
import { NameRegistry, type NameClient, type NameEvents } from '../lib/core/names.js';
import { errno, KdbusError } from '../lib/core/errors.js';
import { CMD_NAME, ITEM, NAME_QUEUE } from '../lib/abi/kdbus.js';

function refusal(fn: () => void): KdbusError {
  try {
    fn();
  } catch (e) {
    if (e instanceof KdbusError) return e;
    throw e;
  }
  throw new Error('not refused');
}

const limits = (o: Partial<UserLimits>): UserLimits => ({ ...DEFAULT_LIMITS, ...o });

t.test('byte charges are refused with ENOBUFS naming the limit, and nothing is charged then', async (t) => {
  const reg = new UserRegistry(limits({ user_queued_bytes: 64 * 1024 * 1024 }));
  const u = reg.get(1000);
  u.charge('queuedBytes', 60 * 1024 * 1024);
  const e = refusal(() => u.charge('queuedBytes', 8 * 1024 * 1024));
  t.equal(e.errno, errno.ENOBUFS);
  t.match(e.message, /uid 1000: 64 MiB of queued message bytes \(limit user_queued_bytes\)/);
  t.equal(u.queuedBytes, 60 * 1024 * 1024, 'the refused charge left nothing');
  u.charge('queuedBytes', 4 * 1024 * 1024);
  t.equal(u.queuedBytes, 64 * 1024 * 1024, 'up to the limit is allowed');
});

t.test('count charges are refused with EMFILE naming the limit', async (t) => {
  const reg = new UserRegistry(limits({ user_matches: 2, user_names: 1, user_replies: 1 }));
  const u = reg.get(7);
  u.charge('matches', 2);
  const e = refusal(() => u.check('matches', 1));
  t.equal(e.errno, errno.EMFILE);
  t.match(e.message, /uid 7: 2 matches \(limit user_matches\)/);
  u.charge('replies', 1);
  t.match(refusal(() => u.charge('replies', 1)).message, /limit user_replies/);
});

t.test('a user stays registered while anything is charged, and leaves when nothing is', async (t) => {
  const reg = new UserRegistry();
  const u = reg.get(1000);
  reg.chargeConnection(u);
  u.charge('queuedBytes', 100);
  reg.uncharge(u, 'connections');
  t.equal(reg.size, 1, 'queued bytes keep the user');
  t.equal(reg.get(1000), u, 'coming back finds the old charges');
  u.uncharge('queuedBytes', 100);
  t.equal(reg.size, 0, 'nothing charged: forgotten');
  t.throws(() => u.uncharge('queuedBytes', 1), /uncharging 1 queuedBytes, 0 charged/, 'an uncharge below zero is a bug');
});

t.test('fds in flight: per user and all users within RLIMIT_NOFILE less the reserve', async (t) => {
  const reg = new UserRegistry(limits({ user_fds: 300, server_fds_reserved: 1000 }));
  reg.setFdLimit(1500);
  t.equal(reg.serverFdBudget, 500);
  const a = reg.get(1);
  const b = reg.get(2);
  a.charge('fds', 300);
  const e = refusal(() => a.charge('fds', 1));
  t.equal(e.errno, errno.EMFILE);
  t.match(e.message, /uid 1: 300 fds in flight \(limit user_fds\)/);
  b.charge('fds', 200);
  const s = refusal(() => b.charge('fds', 1));
  t.equal(s.errno, errno.EMFILE);
  t.match(s.message, /server_fds_reserved/, 'the server-wide budget names the reserve');
  t.equal(b.fds, 200, 'nothing charged by the refusal');
  a.uncharge('fds', 300);
  b.charge('fds', 1);
  t.equal(reg.serverFds, 201);
});

t.test('names: owned and queued are charged, passing on moves the charge', async (t) => {
  const reg = new UserRegistry(limits({ user_names: 2 }));
  const events: NameEvents = { nameChanged() {}, moveMessages() {}, canOwn: () => true, canSee: () => true, seesAll: () => true };
  const names = new NameRegistry(events);
  const a: NameClient = { id: 1n, flags: 0n, user: reg.get(1000) };
  const b: NameClient = { id: 2n, flags: 0n, user: reg.get(1001) };
  names.acquire(a, 'org.a', 0n);
  names.acquire(b, 'org.a', NAME_QUEUE);
  t.equal(a.user.names, 1);
  t.equal(b.user.names, 1, 'a wait counts');
  names.release(a, 'org.a');
  t.equal(a.user.names, 0);
  t.equal(b.user.names, 1, 'b owns it now, its wait is gone');
  names.acquire(b, 'org.b', 0n);
  const cmd = nameCmd('org.c');
  const e = refusal(() => names.cmdAcquire(b, cmd, CMD_NAME.items, cmd.length - CMD_NAME.items, 0n));
  t.equal(e.errno, errno.EMFILE);
  t.match(e.message, /uid 1001: 2 names \(limit user_names\)/);
  names.releaseAll(b);
  t.equal(reg.size, 0, 'every charge given back');
});

/** A NAME_ACQUIRE command (struct kdbus_cmd) with one NAME item. */
function nameCmd(name: string): Buffer {
  const itemLen = 16 + name.length + 1;
  const size = CMD_NAME.items + ((itemLen + 7) & ~7);
  const b = Buffer.alloc(size);
  b.writeBigUInt64LE(BigInt(size), CMD_NAME.size);
  b.writeBigUInt64LE(BigInt(itemLen), CMD_NAME.items);
  b.writeBigUInt64LE(BigInt(ITEM.NAME), CMD_NAME.items + 8);
  b.write(name, CMD_NAME.items + 16, 'latin1');
  return b;
}

t.test('limits parse as --limit gives them', async (t) => {
  const l = parseLimit(DEFAULT_LIMITS, 'user_queued_bytes=64M');
  t.notOk(l instanceof Error);
  t.equal((l as UserLimits).user_queued_bytes, 64 * 1024 * 1024);
  t.equal((parseLimit(DEFAULT_LIMITS, 'user_fds=10') as UserLimits).user_fds, 10);
  t.match((parseLimit(DEFAULT_LIMITS, 'nope=1') as Error).message, /unknown limit nope/);
  t.match((parseLimit(DEFAULT_LIMITS, 'user_fds') as Error).message, /not NAME=VALUE/);
});
