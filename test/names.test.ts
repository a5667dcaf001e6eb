import t from 'tap';
import { User } from '../lib/core/user.js';
import { NameRegistry, nameValid, type NameClient, type NameEvents } from '../lib/core/names.js';
import {
  ITEM, CMD_NAME, HELLO_ACTIVATOR, HELLO_ACCEPT_FD, HELLO_MONITOR, HELLO_POLICY_HOLDER, LIMITS, align8,
  NAME_REPLACE_EXISTING, NAME_ALLOW_REPLACEMENT, NAME_QUEUE, NAME_IN_QUEUE, NAME_ACTIVATOR,
  NAME_LIST_UNIQUE, NAME_LIST_NAMES, NAME_LIST_ACTIVATORS, NAME_LIST_QUEUED,
} from '../lib/abi/kdbus.js';
import { validateItems } from '../lib/abi/items.js';
import { errno, KdbusError } from '../lib/core/errors.js';
import { errnoOf } from './helpers.js';

const NAME = 'foo.bla.blaz';

const conn = (id: number, flags = 0n): NameClient => ({ id: BigInt(id), flags, user: new User(id) });
const activator = (id: number): NameClient => conn(id, HELLO_ACTIVATOR);

type Note = [string, bigint, bigint, bigint, bigint, string];

class Events implements NameEvents {
  notes: Note[] = [];
  moves: Array<[bigint, bigint, bigint]> = [];
  log: string[] = []; // notifications and moves interleaved
  forbidden = new Set<string>();
  hidden = new Set<string>();
  failMove: number | null = null;

  nameChanged(type: number, oldId: bigint, oldFlags: bigint, newId: bigint, newFlags: bigint, name: string): void {
    const kind = type === ITEM.NAME_ADD ? 'add' : type === ITEM.NAME_REMOVE ? 'remove'
      : type === ITEM.NAME_CHANGE ? 'change' : `type ${type}`;
    this.notes.push([kind, oldId, oldFlags, newId, newFlags, name]);
    this.log.push(`${kind} ${oldId}->${newId} ${name}`);
  }
  moveMessages(from: NameClient, to: NameClient, nameId: bigint): void {
    if (this.failMove !== null) throw new KdbusError(this.failMove, 'move failed');
    this.moves.push([from.id, to.id, nameId]);
    this.log.push(`move ${from.id}->${to.id} #${nameId}`);
  }
  canOwn(_c: NameClient, name: string): boolean {
    return !this.forbidden.has(name);
  }
  canSee(_v: NameClient, name: string): boolean {
    return !this.hidden.has(name);
  }
  seesAll(_v: NameClient): boolean {
    return this.hidden.size === 0;
  }
  take(): Note[] {
    const n = this.notes;
    this.notes = [];
    return n;
  }
}

function setup(): { reg: NameRegistry; ev: Events } {
  const ev = new Events();
  return { reg: new NameRegistry(ev), ev };
}

/**
 * struct kdbus_cmd_name with the given items (type, payload as a byte string:
 * one char per byte, as the registry keeps names).
 */
function cmdName(flags: bigint, ...its: Array<[number, string]>): Buffer {
  const parts = its.map(([type, s]) => {
    const len = 16 + Buffer.byteLength(s, 'latin1') + 1;
    const b = Buffer.alloc(align8(len));
    b.writeBigUInt64LE(BigInt(len), 0);
    b.writeBigUInt64LE(BigInt(type), 8);
    b.write(s, 16, 'latin1');
    return b;
  });
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(CMD_NAME.items);
  const size = CMD_NAME.items + body.length; // last item's padding included, as align8 allows
  head.writeBigUInt64LE(BigInt(size), CMD_NAME.size);
  head.writeBigUInt64LE(flags, CMD_NAME.flags);
  return Buffer.concat([head, body]);
}

function cmdAcquire(reg: NameRegistry, c: NameClient, name: string, flags = 0n): bigint {
  const cmd = cmdName(flags, [ITEM.NAME, name]);
  validateItems(cmd, CMD_NAME.items, cmd.length - CMD_NAME.items);
  return reg.cmdAcquire(c, cmd, CMD_NAME.items, cmd.length - CMD_NAME.items, flags);
}
function cmdRelease(reg: NameRegistry, c: NameClient, name: string): void {
  const cmd = cmdName(0n, [ITEM.NAME, name]);
  reg.cmdRelease(c, cmd, CMD_NAME.items, cmd.length - CMD_NAME.items);
}

/** Parses a struct kdbus_name_list into records (names as byte strings). */
function parseList(b: Buffer): Array<{ id: bigint; connFlags: bigint; name?: string; flags?: bigint }> {
  const out: Array<{ id: bigint; connFlags: bigint; name?: string; flags?: bigint }> = [];
  const total = Number(b.readBigUInt64LE(0));
  if (total !== b.length) throw new Error(`list size ${total} != ${b.length}`);
  let off = 8;
  while (off < total) {
    const size = Number(b.readBigUInt64LE(off));
    if (size % 8 !== 0) throw new Error('unaligned record');
    const r: { id: bigint; connFlags: bigint; name?: string; flags?: bigint } = {
      connFlags: b.readBigUInt64LE(off + 8), id: b.readBigUInt64LE(off + 16),
    };
    if (size > 24) {
      const isize = Number(b.readBigUInt64LE(off + 24));
      if (Number(b.readBigUInt64LE(off + 32)) !== ITEM.OWNED_NAME) throw new Error('not OWNED_NAME');
      r.flags = b.readBigUInt64LE(off + 40);
      r.name = b.toString('latin1', off + 48, off + 24 + isize - 1);
      if (b[off + 24 + isize - 1] !== 0) throw new Error('name not terminated');
    }
    out.push(r);
    off += size;
  }
  return out;
}

t.test('name validity (kdbus_name_is_valid)', async (t) => {
  for (const n of ['foo.bla.blaz', 'a.b', 'A_.-b', 'foo1.b2ar', '_1.-2', 'x.' + 'y'.repeat(253)]) {
    t.ok(nameValid(n, false), `valid: ${n}`);
  }
  for (const n of ['.bla.blaz', 'foo', 'foo.bla.bl.*', '', 'foo.', 'foo..bar', '1foo.bar', 'foo.1bar',
    'foo.b@r', 'foo bar.baz', 'x.' + 'y'.repeat(254), '*', '*.foo', 'foo.*']) {
    t.notOk(nameValid(n, false), `invalid: ${JSON.stringify(n)}`);
  }
  t.ok(nameValid('foo.bla.bl.*', true), 'wildcard allowed for policy names');
  t.ok(nameValid('foo.*', true));
  t.notOk(nameValid('*', true), 'a lone * has no dot');
  t.notOk(nameValid('foo.*.bar', true), '* only at the end');
  t.notOk(nameValid('foo.b*', true), '* only as a whole element');
  t.notOk(nameValid('.*', true));
  t.notOk(nameValid('foo.**', true));
});

// Names are byte strings (one char per byte). kdbus_name_is_valid tests each
// byte with the kernel's isalpha/isdigit, whose table (lib/ctype.c) is
// Latin-1: 0xC0-0xD6, 0xD8-0xF6 and 0xF8-0xFF are letters too.
const latin1Letter = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
  (c >= 0xc0 && c <= 0xd6) || (c >= 0xd8 && c <= 0xf6) || (c >= 0xf8 && c <= 0xff);

t.test('name validity: every byte 1-255 (kernel ctype, Latin-1)', async (t) => {
  const wrong: string[] = [];
  for (let c = 1; c < 256; c++) {
    const b = String.fromCharCode(c);
    const digit = c >= 0x30 && c <= 0x39;
    const atStart = latin1Letter(c) || b === '_' || b === '-';
    const inside = atStart || digit;
    const cases: Array<[string, boolean, boolean]> = [
      [`${b}x.y`, false, atStart], [`x.${b}y`, false, atStart], [`x.${b}`, false, atStart],
      [`x${b}.y`, false, inside], [`x.y${b}`, false, inside], [`x.y${b}z`, false, inside || b === '.'],
      // a policy name may end in a '*' element, nowhere else
      [`x.${b}`, true, atStart || b === '*'], [`${b}.y`, true, atStart], [`x.y${b}`, true, inside],
    ];
    for (const [name, wild, want] of cases) {
      if (nameValid(name, wild) !== want) {
        wrong.push(`0x${c.toString(16)} in ${JSON.stringify(name)}${wild ? ' (wildcard)' : ''}`);
      }
    }
  }
  t.same(wrong, [], 'each byte valid exactly where kdbus_name_is_valid takes it');
  t.ok(nameValid('org.caf\xe9.x', false), 'a Latin-1 letter byte inside an element');
  t.ok(nameValid('\xc0\xff.\xd8', false), 'and at element starts');
  t.notOk(nameValid('org.caf\xc3\xa9.x', false), 'the UTF-8 spelling of "café": 0xA9 is no letter');
  t.notOk(nameValid('org.\xd7.x', false), '0xD7 (multiplication sign) is no letter');
  t.notOk(nameValid('org.\xf7.x', false), '0xF7 (division sign) is no letter');
  t.notOk(nameValid('org.caf\u00e9\u0301.x', false), 'a char above 0xFF is no byte');
  t.ok(nameValid('x.' + '\xe9'.repeat(253), false), 'KDBUS_NAME_MAX_LEN (255) counts bytes');
  t.notOk(nameValid('x.' + '\xe9'.repeat(254), false), '256 bytes are too long');
  t.ok(nameValid('\xe9.' + '\xe9'.repeat(251) + '.*', true), 'a 255-byte wildcard name');
});

t.test('names are bytes: acquired, listed, notified and released byte for byte', async (t) => {
  const { reg, ev } = setup();
  const a = conn(1, HELLO_ACCEPT_FD);
  const name = 'org.caf\xe9.x'; // the byte 0xE9
  t.equal(cmdAcquire(reg, a, name), 0n, 'acquire');
  t.same(ev.take(), [['add', 0n, 0n, 1n, 0n, name]], 'NAME_ADD with the same byte string');
  t.same(reg.ownedNames(a), [{ name, flags: 0n }]);
  t.equal(errnoOf(() => cmdAcquire(reg, conn(2), 'org.caf\xc3\xa9.x')), errno.EINVAL,
    'the UTF-8 spelling is no valid name');
  t.equal(errnoOf(() => cmdRelease(reg, a, 'org.caf\xc9.x')), errno.ESRCH, '0xC9 is another name than 0xE9');

  const list = reg.list(a, NAME_LIST_NAMES, [a]);
  t.same(parseList(list), [{ id: 1n, connFlags: HELLO_ACCEPT_FD, name, flags: 0n }]);
  // item: 16 header + 8 flags + 10 name bytes + NUL = 35 (a UTF-8 encoding would make it 36)
  t.equal(list.readBigUInt64LE(32), 35n, 'OWNED_NAME item size counts bytes');
  t.same(list.subarray(56, 72), Buffer.from([...Buffer.from('org.caf'), 0xe9, ...Buffer.from('.x'), 0, 0, 0, 0, 0, 0]),
    'the name\'s bytes, then NUL and padding');

  cmdRelease(reg, a, name);
  t.same(ev.take(), [['remove', 1n, 0n, 0n, 0n, name]], 'NAME_REMOVE with the same byte string');
  t.equal(reg.size(), 0);
});

t.test('acquire, EALREADY, EEXIST, release, ESRCH (test-names.c)', async (t) => {
  const { reg, ev } = setup();
  const a = conn(1);
  const b = conn(2);
  t.equal(cmdAcquire(reg, a, NAME), 0n);
  t.same(ev.take(), [['add', 0n, 0n, 1n, 0n, NAME]]);
  t.same(reg.lookup(NAME), { owner: a, flags: 0n, activator: null, nameId: 1n });
  t.same(reg.ownedNames(a), [{ name: NAME, flags: 0n }]);
  t.equal(reg.size(), 1);

  t.equal(errnoOf(() => cmdAcquire(reg, a, NAME)), errno.EALREADY);
  t.equal(errnoOf(() => cmdAcquire(reg, a, NAME, NAME_QUEUE)), errno.EALREADY, 'even with QUEUE');
  t.equal(errnoOf(() => cmdAcquire(reg, b, NAME)), errno.EEXIST);
  t.equal(errnoOf(() => cmdAcquire(reg, b, NAME, NAME_REPLACE_EXISTING)), errno.EEXIST,
    'REPLACE_EXISTING needs the owner\'s ALLOW_REPLACEMENT');
  t.equal(errnoOf(() => cmdRelease(reg, b, NAME)), errno.ESRCH, 'foreign name: ESRCH, not EADDRINUSE');
  t.same(ev.take(), []);

  cmdRelease(reg, a, NAME);
  t.same(ev.take(), [['remove', 1n, 0n, 0n, 0n, NAME]]);
  t.equal(reg.lookup(NAME), null);
  t.same(reg.ownedNames(a), []);
  t.equal(reg.size(), 0);
  t.equal(errnoOf(() => cmdRelease(reg, a, NAME)), errno.ESRCH);
  t.equal(errnoOf(() => cmdRelease(reg, a, 'foo.bar.xxx')), errno.ESRCH);

  cmdAcquire(reg, a, NAME);
  t.equal(reg.lookup(NAME)!.nameId, 2n, 'every registration gets a new name id');
});

t.test('command errors', async (t) => {
  const { reg, ev } = setup();
  const a = conn(1);
  for (const n of ['.bla.blaz', 'foo', 'foo.bla.bl.*']) {
    t.equal(errnoOf(() => cmdAcquire(reg, a, n)), errno.EINVAL, `acquire ${n}`);
    t.equal(errnoOf(() => cmdRelease(reg, a, n)), errno.EINVAL, `release ${n}`);
  }
  const none = cmdName(0n, [ITEM.CONN_DESCRIPTION, 'x']);
  t.equal(errnoOf(() => reg.cmdAcquire(a, none, 32, none.length - 32, 0n)), errno.EINVAL, 'no NAME item');
  const two = cmdName(0n, [ITEM.NAME, 'a.b'], [ITEM.NAME, 'a.c']);
  t.equal(errnoOf(() => reg.cmdAcquire(a, two, 32, two.length - 32, 0n)), errno.EINVAL, 'two NAME items');
  t.equal(errnoOf(() => reg.cmdRelease(a, two, 32, two.length - 32)), errno.EINVAL);
  const extra = cmdName(0n, [ITEM.CONN_DESCRIPTION, 'x'], [ITEM.NAME, 'a.b']);
  t.equal(reg.cmdAcquire(a, extra, 32, extra.length - 32, 0n), 0n, 'other item types are ignored');

  ev.forbidden.add('no.way');
  t.equal(errnoOf(() => cmdAcquire(reg, a, 'no.way')), errno.EPERM);
  t.equal(errnoOf(() => cmdAcquire(reg, a, 'no.way.')), errno.EINVAL, 'validity before policy');

  for (const f of [HELLO_ACTIVATOR, HELLO_POLICY_HOLDER, HELLO_MONITOR]) {
    t.equal(errnoOf(() => cmdAcquire(reg, conn(9, f), 'x.y')), errno.EOPNOTSUPP);
    t.equal(errnoOf(() => cmdRelease(reg, conn(9, f), 'x.y')), errno.EOPNOTSUPP);
  }
  t.equal(cmdAcquire(reg, conn(8, HELLO_ACCEPT_FD), 'x.y'), 0n, 'ACCEPT_FD is ordinary');
});

t.test('per-connection name limit: E2BIG, owned names only', async (t) => {
  const { reg, ev } = setup();
  const a = conn(1);
  const b = conn(2);
  cmdAcquire(reg, b, 'other.name');
  for (let i = 0; i < LIMITS.CONN_MAX_NAMES - 1; i++) cmdAcquire(reg, a, `n.x${i}`);
  t.equal(cmdAcquire(reg, a, 'other.name', NAME_QUEUE), NAME_QUEUE | NAME_IN_QUEUE, 'queueing is fine');
  cmdAcquire(reg, a, 'n.last');
  t.equal(reg.ownedNames(a).length, LIMITS.CONN_MAX_NAMES);
  t.equal(errnoOf(() => cmdAcquire(reg, a, 'n.more')), errno.E2BIG);
  t.equal(errnoOf(() => cmdAcquire(reg, a, 'n.x0')), errno.E2BIG, 'E2BIG before EALREADY');
  ev.forbidden.add('n.more');
  t.equal(errnoOf(() => cmdAcquire(reg, a, 'n.more')), errno.E2BIG, 'E2BIG before EPERM');
  // the raw registry op has no limit (a waiter promoted past it keeps the name)
  cmdRelease(reg, b, 'other.name');
  t.equal(reg.ownedNames(a).length, LIMITS.CONN_MAX_NAMES + 1);
  cmdRelease(reg, a, 'n.x0');
  cmdRelease(reg, a, 'n.x1');
  t.equal(cmdAcquire(reg, a, 'n.more2'), 0n);
});

t.test('queue: IN_QUEUE, handover in order, waiter release', async (t) => {
  const { reg, ev } = setup();
  const [a, b, c, d] = [conn(1), conn(2), conn(3), conn(4)];
  cmdAcquire(reg, a, NAME, NAME_ALLOW_REPLACEMENT);
  ev.take();
  t.equal(cmdAcquire(reg, b, NAME, NAME_QUEUE), NAME_QUEUE | NAME_IN_QUEUE);
  t.equal(cmdAcquire(reg, c, NAME, NAME_QUEUE | NAME_ALLOW_REPLACEMENT),
    NAME_QUEUE | NAME_ALLOW_REPLACEMENT | NAME_IN_QUEUE);
  t.equal(cmdAcquire(reg, d, NAME, NAME_QUEUE), NAME_QUEUE | NAME_IN_QUEUE);
  t.same(ev.take(), [], 'queueing is silent');
  t.equal(reg.lookup(NAME)!.owner, a);

  cmdRelease(reg, d, NAME); // a waiter gives up: silently
  t.same(ev.take(), []);
  t.equal(errnoOf(() => cmdRelease(reg, d, NAME)), errno.ESRCH);

  cmdRelease(reg, a, NAME);
  t.same(ev.take(), [['change', 1n, NAME_ALLOW_REPLACEMENT, 2n, NAME_QUEUE, NAME]]);
  t.same(reg.lookup(NAME), { owner: b, flags: NAME_QUEUE, activator: null, nameId: 1n });
  t.same(reg.ownedNames(b), [{ name: NAME, flags: NAME_QUEUE }]);

  cmdRelease(reg, b, NAME);
  t.same(ev.take(), [['change', 2n, NAME_QUEUE, 3n, NAME_QUEUE | NAME_ALLOW_REPLACEMENT, NAME]]);
  cmdRelease(reg, c, NAME);
  t.same(ev.take(), [['remove', 3n, NAME_QUEUE | NAME_ALLOW_REPLACEMENT, 0n, 0n, NAME]]);
  t.equal(reg.size(), 0);
});

t.test('replacement: ALLOW_REPLACEMENT + REPLACE_EXISTING', async (t) => {
  const { reg, ev } = setup();
  const [a, b, c] = [conn(1), conn(2), conn(3)];

  // the replaced owner without QUEUE loses the name
  cmdAcquire(reg, a, NAME, NAME_ALLOW_REPLACEMENT);
  ev.take();
  t.equal(cmdAcquire(reg, b, NAME, NAME_REPLACE_EXISTING), NAME_REPLACE_EXISTING, 'no IN_QUEUE');
  t.same(ev.take(), [['change', 1n, NAME_ALLOW_REPLACEMENT, 2n, NAME_REPLACE_EXISTING, NAME]]);
  t.equal(reg.lookup(NAME)!.owner, b);
  t.same(reg.ownedNames(a), []);
  t.equal(errnoOf(() => cmdRelease(reg, a, NAME)), errno.ESRCH, 'a neither owns nor waits');
  t.equal(errnoOf(() => cmdAcquire(reg, a, NAME, NAME_REPLACE_EXISTING)), errno.EEXIST,
    'b did not allow replacement');
  cmdRelease(reg, b, NAME);
  t.same(ev.take(), [['remove', 2n, NAME_REPLACE_EXISTING, 0n, 0n, NAME]]);

  // the replaced owner with QUEUE goes to the end of the queue, with its flags
  const af = NAME_ALLOW_REPLACEMENT | NAME_QUEUE;
  cmdAcquire(reg, a, NAME, af);
  cmdAcquire(reg, c, NAME, NAME_QUEUE);
  ev.take();
  cmdAcquire(reg, b, NAME, NAME_REPLACE_EXISTING | NAME_ALLOW_REPLACEMENT);
  t.same(ev.take(), [['change', 1n, af, 2n, NAME_REPLACE_EXISTING | NAME_ALLOW_REPLACEMENT, NAME]]);
  cmdRelease(reg, b, NAME);
  t.same(ev.take(), [['change', 2n, NAME_REPLACE_EXISTING | NAME_ALLOW_REPLACEMENT, 3n, NAME_QUEUE, NAME]],
    'the older waiter first');
  cmdRelease(reg, c, NAME);
  t.same(ev.take(), [['change', 3n, NAME_QUEUE, 1n, af, NAME]], 'then the replaced owner, with its flags');
  t.same(reg.ownedNames(a), [{ name: NAME, flags: af }]);

  // REPLACE_EXISTING without permission but with QUEUE: queued
  t.equal(cmdAcquire(reg, b, NAME, NAME_REPLACE_EXISTING | NAME_QUEUE) & NAME_IN_QUEUE, 0n,
    'a allowed replacement: b takes over instead of queueing');
  ev.take();
  t.equal(cmdAcquire(reg, c, NAME, NAME_REPLACE_EXISTING | NAME_QUEUE),
    NAME_REPLACE_EXISTING | NAME_QUEUE | NAME_IN_QUEUE, 'b did not allow it: c queues');
});

t.test('a waiter that takes the name over directly', async (t) => {
  // kdbus keeps the stale wait; on release it would retry it forever: we skip it
  const { reg, ev } = setup();
  const [a, b, c] = [conn(1), conn(2), conn(3)];
  cmdAcquire(reg, a, NAME, NAME_ALLOW_REPLACEMENT);
  cmdAcquire(reg, b, NAME, NAME_QUEUE);
  cmdAcquire(reg, c, NAME, NAME_QUEUE);
  cmdAcquire(reg, b, NAME, NAME_REPLACE_EXISTING);
  ev.take();
  cmdRelease(reg, b, NAME);
  t.same(ev.take(), [['change', 2n, NAME_REPLACE_EXISTING, 3n, NAME_QUEUE, NAME]]);
  t.same(parseList(reg.list(a, NAME_LIST_QUEUED, [a, b, c])), [], 'no waits left');

  // and a connection may queue twice for a name (kdbus does not check)
  cmdAcquire(reg, a, NAME, NAME_QUEUE);
  cmdAcquire(reg, a, NAME, NAME_QUEUE);
  t.equal(parseList(reg.list(a, NAME_LIST_QUEUED, [a, b, c])).length, 2);
  cmdRelease(reg, a, NAME);
  t.equal(parseList(reg.list(a, NAME_LIST_QUEUED, [a, b, c])).length, 1, 'release drops one wait');
});

t.test('activators', async (t) => {
  const { reg, ev } = setup();
  const act = activator(1);
  const impl = conn(2);
  const other = conn(3);

  // HELLO registers the activator's name with NAME_ACTIVATOR
  t.equal(reg.acquire(act, NAME, NAME_ACTIVATOR), NAME_ACTIVATOR);
  t.same(ev.take(), [['add', 0n, 0n, 1n, NAME_ACTIVATOR, NAME]]);
  t.same(reg.lookup(NAME), { owner: act, flags: NAME_ACTIVATOR, activator: act, nameId: 1n },
    'the activator owns its name for delivery');
  t.equal(errnoOf(() => reg.acquire(act, NAME, NAME_ACTIVATOR)), errno.EALREADY);
  t.equal(errnoOf(() => reg.acquire(act, 'other.name', NAME_ACTIVATOR)), errno.EINVAL, 'one name only');

  // an implementer takes over without REPLACE_EXISTING, getting all messages
  t.equal(cmdAcquire(reg, impl, NAME, NAME_QUEUE), NAME_QUEUE, 'taken over, not queued');
  t.same(ev.log, ['add 0->1 foo.bla.blaz', 'move 1->2 #0', 'change 1->2 foo.bla.blaz'], 'messages first');
  t.same(ev.take(), [['change', 1n, NAME_ACTIVATOR, 2n, NAME_QUEUE, NAME]]);
  t.same(reg.lookup(NAME), { owner: impl, flags: NAME_QUEUE, activator: act, nameId: 1n });
  t.same(reg.ownedNames(act), []);
  t.equal(errnoOf(() => reg.acquire(act, NAME, NAME_ACTIVATOR)), errno.EALREADY, 'still its activator');
  t.equal(errnoOf(() => cmdAcquire(reg, other, NAME)), errno.EEXIST, 'the implementer is a normal owner');

  // on release the name (and the messages sent to it) go back to the activator
  ev.log = [];
  cmdRelease(reg, impl, NAME);
  t.same(ev.log, ['move 2->1 #1', 'change 2->1 foo.bla.blaz']);
  t.same(ev.take(), [['change', 2n, NAME_QUEUE, 1n, NAME_ACTIVATOR, NAME]]);
  t.same(reg.lookup(NAME), { owner: act, flags: NAME_ACTIVATOR, activator: act, nameId: 1n });

  // waiters come before the activator
  cmdAcquire(reg, impl, NAME);
  cmdAcquire(reg, other, NAME, NAME_QUEUE);
  ev.take();
  ev.moves = [];
  cmdRelease(reg, impl, NAME);
  t.same(ev.take(), [['change', 2n, 0n, 3n, NAME_QUEUE, NAME]]);
  t.same(ev.moves, []);

  // disconnecting the implementer hands back too
  reg.releaseAll(other);
  t.same(ev.take(), [['change', 3n, NAME_QUEUE, 1n, NAME_ACTIVATOR, NAME]]);
  t.same(ev.moves, [[3n, 1n, 1n]]);

  // the activator goes away: its name disappears
  reg.releaseAll(act);
  t.same(ev.take(), [['remove', 1n, NAME_ACTIVATOR, 0n, 0n, NAME]]);
  t.equal(reg.size(), 0);
});

t.test('activator for a name that is already owned', async (t) => {
  const { reg, ev } = setup();
  const owner = conn(1);
  const act = activator(2);
  const act2 = activator(3);
  cmdAcquire(reg, owner, NAME);
  ev.take();
  t.equal(reg.acquire(act, NAME, NAME_ACTIVATOR), NAME_ACTIVATOR);
  t.same(ev.take(), [], 'no notification: ownership did not change');
  t.same(reg.lookup(NAME), { owner, flags: 0n, activator: act, nameId: 1n });
  t.equal(reg.acquire(act2, NAME, NAME_ACTIVATOR), NAME_ACTIVATOR, 'a second activator: silently nothing');
  t.equal(reg.lookup(NAME)!.activator, act);
  t.equal(errnoOf(() => reg.acquire(act, 'x.y', NAME_ACTIVATOR)), errno.EINVAL);

  reg.releaseAll(owner);
  t.same(ev.take(), [['change', 1n, 0n, 2n, NAME_ACTIVATOR, NAME]]);
  t.same(ev.moves, [[1n, 2n, 1n]]);

  // an activator gone while an implementer holds the name: nothing to hand back to
  cmdAcquire(reg, owner, NAME);
  ev.take();
  reg.releaseAll(act);
  t.same(ev.take(), [], 'the activator leaves silently');
  t.equal(reg.lookup(NAME)!.activator, null);
  reg.releaseAll(act2);
  cmdRelease(reg, owner, NAME);
  t.same(ev.take(), [['remove', 1n, 0n, 0n, 0n, NAME]]);
});

t.test('message move failures', async (t) => {
  const { reg, ev } = setup();
  const act = activator(1);
  const impl = conn(2);
  reg.acquire(act, NAME, NAME_ACTIVATOR);
  ev.take();
  ev.failMove = errno.ENOBUFS;
  t.equal(errnoOf(() => cmdAcquire(reg, impl, NAME)), errno.ENOBUFS, 'takeover fails');
  t.same(ev.take(), []);
  t.equal(reg.lookup(NAME)!.owner, act);
  ev.failMove = null;
  cmdAcquire(reg, impl, NAME);
  ev.take();
  ev.failMove = errno.ENOBUFS;
  t.equal(errnoOf(() => cmdRelease(reg, impl, NAME)), errno.ENOBUFS, 'release fails, the name stays');
  t.equal(reg.lookup(NAME)!.owner, impl);
  reg.releaseAll(impl);
  t.same(ev.take(), [['change', 2n, 0n, 1n, NAME_ACTIVATOR, NAME]], 'disconnect hands back regardless');
});

t.test('releaseAll: waits dropped silently, names passed on in the order gained', async (t) => {
  const { reg, ev } = setup();
  const [a, b, c] = [conn(1), conn(2), conn(3)];
  cmdAcquire(reg, a, 'n.one');
  cmdAcquire(reg, b, 'n.two', NAME_ALLOW_REPLACEMENT);
  cmdAcquire(reg, a, 'n.three');
  cmdAcquire(reg, c, 'n.three', NAME_QUEUE);
  cmdAcquire(reg, a, 'n.two', NAME_REPLACE_EXISTING); // gained last
  cmdAcquire(reg, a, 'n.four', 0n);
  cmdAcquire(reg, b, 'n.four', NAME_QUEUE);
  cmdAcquire(reg, c, 'n.five');
  cmdAcquire(reg, a, 'n.five', NAME_QUEUE);
  t.same(reg.ownedNames(a).map((n) => n.name), ['n.one', 'n.three', 'n.two', 'n.four']);
  ev.take();

  reg.releaseAll(a);
  t.same(ev.take(), [
    ['remove', 1n, 0n, 0n, 0n, 'n.one'],
    ['change', 1n, 0n, 3n, NAME_QUEUE, 'n.three'],
    ['remove', 1n, NAME_REPLACE_EXISTING, 0n, 0n, 'n.two'],
    ['change', 1n, 0n, 2n, NAME_QUEUE, 'n.four'],
  ]);
  t.same(reg.ownedNames(a), []);
  t.same(reg.ownedNames(b), [{ name: 'n.four', flags: NAME_QUEUE }]);
  t.same(reg.ownedNames(c).map((n) => n.name), ['n.five', 'n.three']);
  reg.releaseAll(c);
  t.same(ev.take(), [['remove', 3n, 0n, 0n, 0n, 'n.five'], ['remove', 3n, NAME_QUEUE, 0n, 0n, 'n.three']]);
  reg.releaseAll(b);
  t.equal(reg.size(), 0);
  reg.releaseAll(conn(42)); // never had names
});

t.test('NAME_LIST byte layout', async (t) => {
  const { reg } = setup();
  const a = conn(1, HELLO_ACCEPT_FD);
  cmdAcquire(reg, a, NAME, NAME_ALLOW_REPLACEMENT);

  const empty = reg.list(a, 0n, [a]);
  t.same([...empty], [8, 0, 0, 0, 0, 0, 0, 0], 'just the size header');

  const uniq = reg.list(a, NAME_LIST_UNIQUE, [a]);
  t.equal(uniq.length, 8 + 24);
  t.equal(uniq.readBigUInt64LE(0), 32n);
  t.equal(uniq.readBigUInt64LE(8), 24n, 'info.size');
  t.equal(uniq.readBigUInt64LE(16), HELLO_ACCEPT_FD, 'conn_flags');
  t.equal(uniq.readBigUInt64LE(24), 1n, 'owner_id');
  const b = reg.list(a, NAME_LIST_NAMES, [a]);
  // header 8 + info 24 + item (16 header + 8 flags + 12 name + NUL) = 37, padded to 40
  t.equal(b.length, 8 + 24 + 40);
  t.equal(b.readBigUInt64LE(0), 72n, 'list size');
  t.equal(b.readBigUInt64LE(8), 64n, 'info size includes padding');
  t.equal(b.readBigUInt64LE(16), HELLO_ACCEPT_FD, 'conn_flags');
  t.equal(b.readBigUInt64LE(24), 1n, 'owner_id');
  t.equal(b.readBigUInt64LE(32), 37n, 'item size unaligned');
  t.equal(b.readBigUInt64LE(40), BigInt(ITEM.OWNED_NAME));
  t.equal(b.readBigUInt64LE(48), NAME_ALLOW_REPLACEMENT, 'name flags');
  t.equal(b.toString('latin1', 56, 68), NAME);
  t.same([...b.subarray(68, 72)], [0, 0, 0, 0], 'NUL and zero padding');

  cmdAcquire(reg, a, 'x.abcdefghijklm'); // 15 chars + NUL: item 40, no padding
  const c = reg.list(a, NAME_LIST_NAMES, [a]);
  t.equal(c.length, 8 + 64 + 64);
  t.equal(c.readBigUInt64LE(72), 64n);
  t.equal(c.readBigUInt64LE(96), 40n);
});

t.test('NAME_LIST contents per flags', async (t) => {
  const { reg, ev } = setup();
  const act = activator(1);      // stands in for "svc.a", owned by impl
  const act2 = activator(2);     // owns "svc.b" itself
  const impl = conn(3);
  const waiter = conn(4);
  const idle = conn(5, HELLO_ACCEPT_FD);
  const mon = conn(6, HELLO_MONITOR);
  const all = [act, act2, impl, waiter, idle, mon];
  reg.acquire(act, 'svc.a', NAME_ACTIVATOR);
  reg.acquire(act2, 'svc.b', NAME_ACTIVATOR);
  cmdAcquire(reg, impl, 'svc.a', NAME_ALLOW_REPLACEMENT);
  cmdAcquire(reg, impl, 'plain.name');
  cmdAcquire(reg, waiter, 'plain.name', NAME_QUEUE);
  const ls = (flags: bigint, viewer: NameClient = idle) =>
    parseList(reg.list(viewer, flags, all)).map((r) => `${r.id}:${r.name ?? '-'}:${r.flags ?? '-'}:${r.connFlags}`);

  // hash order of ids 1..6: 5, 2, 4, 1, 6, 3
  t.same(ls(NAME_LIST_UNIQUE), ['5:-:-:1', '4:-:-:0', '6:-:-:8', '3:-:-:0'],
    'UNIQUE skips activators, lists monitors');
  t.same(ls(NAME_LIST_NAMES), ['3:svc.a:2:0', '3:plain.name:0:0'], 'real owners only');
  t.same(ls(NAME_LIST_ACTIVATORS), ['2:svc.b:16:2', '1:svc.a:2:2'],
    'activator-owned names, and activators behind implementers (with the owner\'s flags)');
  t.same(ls(NAME_LIST_NAMES | NAME_LIST_ACTIVATORS),
    ['2:svc.b:16:2', '1:svc.a:2:2', '3:svc.a:2:0', '3:plain.name:0:0']);
  t.same(ls(NAME_LIST_QUEUED), ['4:plain.name:0:0'], 'waiters, with the entry\'s (owner\'s) flags');
  t.same(ls(NAME_LIST_UNIQUE | NAME_LIST_NAMES | NAME_LIST_ACTIVATORS | NAME_LIST_QUEUED),
    ['5:-:-:1', '2:svc.b:16:2', '4:plain.name:0:0', '1:-:-:2', '6:-:-:8', '1:svc.a:2:2', '3:svc.a:2:0',
      '3:plain.name:0:0'],
    'a unique-id record only for connections without any name record');

  // SEE policy hides name records; the connection still counts as listed
  ev.hidden.add('plain.name');
  t.same(ls(NAME_LIST_UNIQUE | NAME_LIST_QUEUED), ['5:-:-:1', '6:-:-:8', '3:-:-:0'],
    'the waiter\'s only record is hidden: no unique-id record for it either');
  t.same(ls(NAME_LIST_UNIQUE | NAME_LIST_NAMES), ['5:-:-:1', '4:-:-:0', '6:-:-:8', '3:svc.a:2:0']);
});

t.test('NAME_LIST walks the connection hash table', async (t) => {
  const { reg } = setup();
  const ids = [8, 7, 6, 5, 4, 3, 2, 1, 147];
  const order = parseList(reg.list(conn(1), NAME_LIST_UNIQUE, ids.map((i) => conn(i)))).map((r) => Number(r.id));
  // buckets: 5:23 2:60 7:83 4:120 1:158 6:181 {147,3}:218 8:241; newest first in a bucket
  t.same(order, [5, 2, 7, 4, 1, 6, 147, 3, 8]);
});

t.test('NAME_LIST cache: a viewer that sees every name gets what a fresh walk gives, after every change', async (t) => {
  const { reg, ev } = setup();
  const [a, b, c] = [conn(1), conn(2), conn(3)];
  const all = [a, b, c];
  const flagSets = [NAME_LIST_UNIQUE, NAME_LIST_NAMES, NAME_LIST_QUEUED, NAME_LIST_NAMES | NAME_LIST_QUEUED | NAME_LIST_UNIQUE];
  // a hidden name turns the cache off: the walk itself is the reference
  const walked = (flags: bigint, conns: NameClient[]): Buffer => {
    ev.hidden.add('never.owned');
    try {
      return reg.list(a, flags, conns);
    } finally {
      ev.hidden.delete('never.owned');
    }
  };
  const same = (what: string, conns: NameClient[] = all): void => {
    for (const f of flagSets) {
      const first = reg.list(a, f, conns);
      t.same(parseList(first), parseList(walked(f, conns)), `${what} (flags ${f})`);
      t.equal(reg.list(b, f, conns), first, `${what}: asked again (flags ${f}), the same buffer: no walk`);
    }
  };
  same('empty');
  cmdAcquire(reg, a, 'n.one', NAME_ALLOW_REPLACEMENT | NAME_QUEUE);
  same('acquired');
  cmdAcquire(reg, b, 'n.one', NAME_QUEUE);
  same('queued');
  cmdAcquire(reg, c, 'n.one', NAME_REPLACE_EXISTING);
  same('replaced (the old owner waits)');
  cmdRelease(reg, c, 'n.one');
  same('released (passed on)');
  reg.releaseAll(b);
  same('a waiter disconnects');
  reg.changed(); // the bus says so when a connection comes or goes
  same('a connection gone', [a, c]);
});
