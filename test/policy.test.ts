import t from 'tap';
import {
  PolicyDb, NO_ACCESS, ACCESS_SEE, ACCESS_TALK, ACCESS_OWN,
  policyOwnName, policyTalk, policySeeName, policySee, policySeeNotification,
  type PolicyConn, type PolicyCreds,
} from '../lib/core/policy.js';
import {
  ITEM, LIMITS, POLICY_ACCESS_USER, POLICY_ACCESS_GROUP, POLICY_ACCESS_WORLD,
  POLICY_SEE, POLICY_TALK, POLICY_OWN, SIZEOF_POLICY_ACCESS,
} from '../lib/abi/kdbus.js';
import { validateItems } from '../lib/abi/items.js';
import { errno } from '../lib/core/errors.js';
import { errnoOf, item } from './helpers.js';

// ---- command buffers -------------------------------------------------------

const HEAD = 32; // a fake command header before the items

const name = (s: string): Buffer => item(ITEM.NAME, Buffer.from(s + '\0'));
function acc(type: bigint, access: bigint, id: bigint | number = 0): Buffer {
  const p = Buffer.alloc(SIZEOF_POLICY_ACCESS);
  p.writeBigUInt64LE(type, 0);
  p.writeBigUInt64LE(access, 8);
  p.writeBigUInt64LE(BigInt(id), 16);
  return item(ITEM.POLICY_ACCESS, p);
}
const user = (id: bigint | number, access: bigint) => acc(POLICY_ACCESS_USER, access, id);
const group = (id: bigint | number, access: bigint) => acc(POLICY_ACCESS_GROUP, access, id);
const world = (access: bigint) => acc(POLICY_ACCESS_WORLD, access, 0);

interface Cmd { buf: Buffer; start: number; size: number }
function cmd(...parts: Buffer[]): Cmd {
  const body = Buffer.concat(parts);
  const buf = Buffer.concat([Buffer.alloc(HEAD, 0xaa), body]);
  validateItems(buf, HEAD, body.length); // what the callers do first
  return { buf, start: HEAD, size: body.length };
}

function set(db: PolicyDb, owner: object, c: Cmd, max = 0, wild = true): void {
  db.set(c.buf, c.start, c.size, max, wild, owner);
}

/** The errno fn fails with, 0 if it succeeds. */
const errOf = (fn: () => void): number => errnoOf(fn) ?? 0;

const creds = (euid: number, egid = euid, groups: number[] = [], uid = euid): PolicyCreds =>
  ({ uid, euid, fsuid: euid, gid: egid, egid, fsgid: egid, groups });

// ---- the database ----------------------------------------------------------

t.test('empty database grants nothing', async (t) => {
  const db = new PolicyDb();
  t.equal(db.size, 0);
  t.equal(NO_ACCESS, -errno.EPERM, 'nothing is -EPERM, i.e. -1');
  t.equal(db.query(creds(0), 'com.example.a'), NO_ACCESS);
  t.equal(db.query(creds(0), 'nodot'), NO_ACCESS);
  t.same([ACCESS_SEE, ACCESS_TALK, ACCESS_OWN], [0, 1, 2]);
});

t.test('USER matches euid, GROUP egid or a supplementary group, WORLD everyone', async (t) => {
  const db = new PolicyDb();
  const h = {};
  set(db, h, cmd(name('com.example.u'), user(1000, POLICY_OWN),
    name('com.example.g'), group(50, POLICY_TALK),
    name('com.example.w'), world(POLICY_SEE)));
  t.equal(db.size, 3);

  t.equal(db.query(creds(1000), 'com.example.u'), ACCESS_OWN);
  t.equal(db.query(creds(1001), 'com.example.u'), NO_ACCESS);
  t.equal(db.query({ ...creds(1001), uid: 1000, fsuid: 1000 }, 'com.example.u'), NO_ACCESS, 'uid/fsuid do not count');

  t.equal(db.query(creds(1, 50), 'com.example.g'), ACCESS_TALK, 'egid');
  t.equal(db.query(creds(1, 7, [3, 50, 9]), 'com.example.g'), ACCESS_TALK, 'supplementary group');
  t.equal(db.query({ ...creds(1, 7), gid: 50, fsgid: 50 }, 'com.example.g'), NO_ACCESS, 'gid/fsgid do not count');
  t.equal(db.query(creds(50, 7), 'com.example.g'), NO_ACCESS, 'a uid is no gid');

  t.equal(db.query(creds(12345), 'com.example.w'), ACCESS_SEE);
  t.equal(db.query(creds(12345), 'com.example.x'), NO_ACCESS, 'unknown name');
});

t.test('the highest matching access wins, wherever it is in the list', async (t) => {
  const db = new PolicyDb();
  const h = {};
  // OWN only in the middle (test-policy-priv.c)
  set(db, h, cmd(name('com.example.a'), user(1, POLICY_OWN), user(2, POLICY_OWN), user(1000, POLICY_OWN),
    user(3, POLICY_OWN), user(4, POLICY_OWN)));
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_OWN);
  t.equal(db.query(creds(5), 'com.example.a'), NO_ACCESS);

  // SEE/TALK match, no OWN for this user
  set(db, h, cmd(name('com.example.a'), group(1000, POLICY_SEE), user(1000, POLICY_TALK),
    world(POLICY_TALK), world(POLICY_SEE)));
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_TALK);
  t.equal(db.query(creds(7), 'com.example.a'), ACCESS_TALK, 'world TALK');

  // a better grant after a lesser one, and a lesser one after it
  set(db, h, cmd(name('com.example.a'), world(POLICY_SEE), user(1000, POLICY_OWN), world(POLICY_TALK)));
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_OWN);
  t.equal(db.query(creds(1), 'com.example.a'), ACCESS_TALK);

  // a matching entry for someone else's uid does not grant
  set(db, h, cmd(name('com.example.a'), user(0, POLICY_OWN), user(1, POLICY_TALK), user(1000, POLICY_SEE),
    user(3, POLICY_TALK)));
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_SEE);
});

t.test('a name without access items grants nothing but exists', async (t) => {
  const db = new PolicyDb();
  const a = {}, b = {};
  set(db, a, cmd(name('com.example.a')), 1);
  t.equal(db.size, 1);
  t.equal(db.query(creds(0), 'com.example.a'), NO_ACCESS);
  t.equal(errOf(() => set(db, b, cmd(name('com.example.a'), world(POLICY_OWN)), 1)), errno.EEXIST,
    'an activator/holder without rules still reserves the name');
});

t.test('wildcards: one more element, exact entries first', async (t) => {
  const db = new PolicyDb();
  const h = {}, h2 = {};
  set(db, h, cmd(name('foo.bar.*'), world(POLICY_TALK)));
  t.equal(db.query(creds(1), 'foo.bar.baz'), ACCESS_TALK);
  t.equal(db.query(creds(1), 'foo.bar.bazbaz'), ACCESS_TALK);
  t.equal(db.query(creds(1), 'foo.bar.baz.baz'), NO_ACCESS, 'two more elements');
  t.equal(db.query(creds(1), 'foo.bar'), NO_ACCESS, 'the prefix itself');
  t.equal(db.query(creds(1), 'foo.barx.baz'), NO_ACCESS);
  t.equal(db.query(creds(1), 'foo.bar.*'), ACCESS_TALK, 'a query name is taken literally: one element past foo.bar');

  // an exact entry shadows the wildcard even when it grants less (or nothing)
  set(db, h2, cmd(name('foo.bar.baz'), user(5, POLICY_OWN)));
  t.equal(db.query(creds(5), 'foo.bar.baz'), ACCESS_OWN);
  t.equal(db.query(creds(1), 'foo.bar.baz'), NO_ACCESS, 'exact entry wins over the wildcard');
  t.equal(db.query(creds(1), 'foo.bar.qux'), ACCESS_TALK);
  set(db, h2, cmd(name('foo.bar.baz')));
  t.equal(db.query(creds(5), 'foo.bar.baz'), NO_ACCESS, 'empty exact entry still shadows');
  db.removeOwner(h2);
  t.equal(db.query(creds(1), 'foo.bar.baz'), ACCESS_TALK);

  // "x.*" with a one-element prefix
  set(db, h2, cmd(name('x.*'), world(POLICY_SEE)));
  t.equal(db.query(creds(1), 'x.y'), ACCESS_SEE);

  // not allowed: EINVAL (HELLO of an activator)
  const a = {};
  t.equal(errOf(() => set(db, a, cmd(name('org.act.*'), world(POLICY_OWN)), 1, false)), errno.EINVAL);
  t.equal(db.query(creds(1), 'org.act.x'), NO_ACCESS);
  set(db, a, cmd(name('org.act.x'), world(POLICY_OWN)), 1, false);
  t.equal(db.query(creds(1), 'org.act.x'), ACCESS_OWN, 'plain names are fine without wildcards');
});

t.test('names are bytes: a Latin-1 letter byte in exact and wildcard names', async (t) => {
  const db = new PolicyDb();
  const bytes = (s: string): Buffer => item(ITEM.NAME, Buffer.from(s + '\0', 'latin1'));
  set(db, {}, cmd(bytes('org.caf\xe9.*'), world(POLICY_TALK), bytes('org.caf\xe9.own'), world(POLICY_OWN)));
  t.equal(db.query(creds(1), 'org.caf\xe9.x'), ACCESS_TALK, 'the wildcard "org.caf\\xE9.*" covers one more element');
  t.equal(db.query(creds(1), 'org.caf\xe9.own'), ACCESS_OWN, 'the exact entry first');
  t.equal(db.query(creds(1), 'org.caf\xc9.x'), NO_ACCESS, '0xC9 is another byte');
  t.equal(errOf(() => set(db, {}, cmd(bytes('org.caf\xc3\xa9.*'), world(POLICY_SEE)))), errno.EINVAL,
    'the UTF-8 spelling of "café" is no valid name (0xA9 is no letter)');
});

t.test('duplicates across owners: EEXIST, except specific vs wildcard (test-policy.c)', async (t) => {
  const db = new PolicyDb();
  const a = {}, b = {};
  const up = (o: object, n: string) => errOf(() => set(db, o, cmd(name(n), user(1000, POLICY_SEE)), 1, true));
  t.equal(up(a, 'com.example.a'), 0);
  t.equal(up(b, 'com.example.a'), errno.EEXIST);
  t.equal(up(b, 'com.example.a.*'), 0);
  t.equal(up(a, 'com.example.a.*'), errno.EEXIST);
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_SEE, "a's entry survived its failed update");
  t.equal(up(a, 'com.example.*'), 0);
  t.equal(db.query(creds(1000), 'com.example.a'), ACCESS_SEE, 'now through the wildcard com.example.*');
  t.equal(up(b, 'com.example.a'), 0, 'b gives up com.example.a.* for com.example.a');
  t.equal(up(b, 'com.example.*'), errno.EEXIST);
  t.equal(up(b, '.example.*'), errno.EINVAL);
  t.equal(up(b, 'example'), errno.EINVAL);
  t.equal(db.size, 2);
  t.equal(db.query(creds(1000), 'com.example.a.x'), NO_ACCESS, 'b lost com.example.a.*');
  t.equal(db.query(creds(1000), 'com.example.z'), ACCESS_SEE);
});

t.test('the same name twice in one command is EEXIST; an owner may re-set its own names', async (t) => {
  const db = new PolicyDb();
  const a = {};
  t.equal(errOf(() => set(db, a, cmd(name('a.b'), world(POLICY_SEE), name('a.b'), world(POLICY_OWN)))), errno.EEXIST);
  t.equal(db.size, 0);
  set(db, a, cmd(name('a.b'), world(POLICY_SEE), name('a.b.*'), world(POLICY_OWN)));
  t.equal(db.size, 2, 'a.b and a.b.* are different entries');
  set(db, a, cmd(name('a.b'), world(POLICY_TALK)));
  t.equal(db.size, 1);
  t.equal(db.query(creds(1), 'a.b'), ACCESS_TALK, 'replaced');
  t.equal(db.query(creds(1), 'a.b.c'), NO_ACCESS, 'a.b.* is gone');
});

t.test('an owner\'s set replaces all its entries; other items are skipped', async (t) => {
  const db = new PolicyDb();
  const ep = {}, other = {};
  set(db, other, cmd(name('o.x'), world(POLICY_OWN)));
  const flags = Buffer.alloc(8); flags.writeBigUInt64LE(1n);
  set(db, ep, cmd(item(ITEM.MAKE_NAME, Buffer.from('1000-ep\0')), name('a.one'), world(POLICY_SEE),
    item(ITEM.ATTACH_FLAGS_SEND, flags), user(7, POLICY_OWN), name('a.two'), world(POLICY_TALK)));
  t.equal(db.size, 3);
  t.equal(db.query(creds(7), 'a.one'), ACCESS_OWN, 'access after a foreign item still belongs to a.one');
  t.equal(db.query(creds(1), 'a.two'), ACCESS_TALK);

  set(db, ep, cmd(name('a.three'), world(POLICY_SEE)));
  t.equal(db.size, 2);
  t.equal(db.query(creds(7), 'a.one'), NO_ACCESS);
  t.equal(db.query(creds(7), 'a.two'), NO_ACCESS);
  t.equal(db.query(creds(7), 'a.three'), ACCESS_SEE);

  // no names at all (ENDPOINT_UPDATE with no items): clears the owner
  set(db, ep, cmd());
  t.equal(db.size, 1);
  t.equal(db.query(creds(1), 'o.x'), ACCESS_OWN, 'other owners untouched');

  // offsets: items not at the start of the buffer
  const c = cmd(name('p.q'), world(POLICY_SEE));
  const shifted = Buffer.concat([Buffer.alloc(40), c.buf]);
  db.set(shifted, c.start + 40, c.size, 0, true, ep);
  t.equal(db.query(creds(1), 'p.q'), ACCESS_SEE);
});

t.test('maxPolicies and the size limit: E2BIG', async (t) => {
  const db = new PolicyDb();
  const h = {};
  t.equal(errOf(() => set(db, h, cmd(name('a.a'), world(POLICY_SEE), name('a.b'), world(POLICY_SEE)), 1)), errno.E2BIG);
  t.equal(db.size, 0);
  set(db, h, cmd(name('a.a'), world(POLICY_SEE), name('a.b'), world(POLICY_SEE)), 2);
  t.equal(db.size, 2);
  t.equal(errOf(() => set(db, h, cmd(name('a.a'), name('a.b'), name('a.c')), 2)), errno.E2BIG);
  t.equal(db.size, 2, 'unchanged after E2BIG');
  const many: Buffer[] = [];
  for (let i = 0; i < 100; i++) many.push(name(`n.x${i}`), world(POLICY_SEE));
  set(db, h, cmd(...many), 0);
  t.equal(db.size, 100, '0: no limit');

  // the count is checked before the name is looked at
  t.equal(errOf(() => set(db, h, cmd(name('a.a'), name('bad')), 1)), errno.E2BIG);
  t.equal(errOf(() => set(db, h, cmd(name('bad'), name('a.a')), 1)), errno.EINVAL);

  // items larger than KDBUS_POLICY_MAX_SIZE: E2BIG before anything is parsed
  const big: Buffer[] = [name('bad')];
  let size = 0;
  for (const b of big) size += b.length;
  while (size <= LIMITS.POLICY_MAX_SIZE) { const b = world(POLICY_SEE); big.push(b); size += b.length; }
  t.equal(errOf(() => set(db, h, cmd(...big), 0)), errno.E2BIG);
  big.pop();
  const fits = cmd(...big.slice(0, big.length - 1));
  t.ok(fits.size <= LIMITS.POLICY_MAX_SIZE);
  t.equal(errOf(() => set(db, h, fits, 0)), errno.EINVAL, 'at the limit the items are parsed');
  t.equal(db.size, 100, 'unchanged');
});

t.test('invalid names and access items: EINVAL', async (t) => {
  const db = new PolicyDb();
  const h = {};
  const bad = (c: Cmd, max = 0, wild = true) => errOf(() => set(db, h, c, max, wild));
  for (const n of ['.example.a', 'example', 'foo..bar', 'foo.bar.', '1foo.bar', 'foo.1bar', 'foo.*.bar',
    'foo.b*', '*.foo', 'foo.**', 'foo.bär', 'foo bar.x', `a.${'b'.repeat(254)}`]) {
    t.equal(bad(cmd(name(n), world(POLICY_SEE))), errno.EINVAL, `name "${n.slice(0, 20)}"`);
  }
  t.equal(bad(cmd(name(`a.${'b'.repeat(253)}`), world(POLICY_SEE))), 0, '255 characters are fine');
  t.equal(bad(cmd(name('foo.b1-_'), world(POLICY_SEE))), 0);
  set(db, h, cmd());

  t.equal(bad(cmd(world(POLICY_SEE))), errno.EINVAL, 'access before any name');
  t.equal(bad(cmd(world(POLICY_SEE), name('a.b'))), errno.EINVAL);
  t.equal(bad(cmd(name('a.b'), world(3n))), errno.EINVAL, 'access 3');
  t.equal(bad(cmd(name('a.b'), world((1n << 32n) | 1n))), errno.EINVAL, 'access is compared as u64');
  t.equal(bad(cmd(name('a.b'), acc(0n, POLICY_SEE))), errno.EINVAL, 'type 0');
  t.equal(bad(cmd(name('a.b'), acc(4n, POLICY_SEE))), errno.EINVAL, 'type 4');
  t.equal(bad(cmd(name('a.b'), acc((1n << 32n) | 3n, POLICY_SEE))), errno.EINVAL, 'type is compared as u64');
  t.equal(bad(cmd(name('a.b'), user(0xffffffff, POLICY_SEE))), errno.EINVAL, 'uid -1');
  t.equal(bad(cmd(name('a.b'), group(0xffffffff, POLICY_SEE))), errno.EINVAL, 'gid -1');
  t.equal(bad(cmd(name('a.b'), user(0x1ffffffffn, POLICY_SEE))), errno.EINVAL, 'truncates to uid -1');
  t.equal(bad(cmd(name('a.b'), world(POLICY_SEE))), 0);
  t.equal(bad(cmd(name('a.b'), acc(POLICY_ACCESS_WORLD, POLICY_SEE, 0xffffffffffffffffn))), 0, 'world ignores id');

  // the id is a 32-bit uid_t: the upper half is dropped
  set(db, h, cmd(name('a.b'), user((1n << 32n) | 5n, POLICY_OWN)));
  t.equal(db.query(creds(5), 'a.b'), ACCESS_OWN);

  // errors come in item order; parse errors before EEXIST
  const other = {};
  set(db, other, cmd(name('taken.x'), world(POLICY_SEE)));
  t.equal(bad(cmd(name('taken.x'), world(POLICY_SEE), name('a.c'), world(9n))), errno.EINVAL);
  t.equal(bad(cmd(name('a.c'), world(9n), name('bad'))), errno.EINVAL);
  t.equal(bad(cmd(name('taken.x'), world(POLICY_SEE))), errno.EEXIST);
  t.equal(db.query(creds(5), 'a.b'), ACCESS_OWN, 'failed sets changed nothing');
  t.equal(db.size, 2);
});

t.test('removeOwner', async (t) => {
  const db = new PolicyDb();
  const a = {}, b = {};
  set(db, a, cmd(name('a.x'), world(POLICY_OWN), name('a.*'), world(POLICY_SEE)));
  set(db, b, cmd(name('b.x'), world(POLICY_OWN)));
  t.equal(db.size, 3);
  db.removeOwner(a);
  t.equal(db.size, 1);
  t.equal(db.query(creds(1), 'a.x'), NO_ACCESS);
  t.equal(db.query(creds(1), 'a.y'), NO_ACCESS);
  db.removeOwner(a);
  db.removeOwner({});
  t.equal(db.size, 1);
  set(db, {}, cmd(name('a.x'), world(POLICY_TALK)));
  t.equal(db.query(creds(1), 'a.x'), ACCESS_TALK, 'the name is free again');
  db.removeOwner(b);
  t.equal(db.query(creds(1), 'b.x'), NO_ACCESS);
});

// ---- connection-level decisions --------------------------------------------

interface FakeConn extends PolicyConn { names: string[] }
function fake(c: PolicyCreds, opts: { privileged?: boolean; ep?: PolicyConn['ep']; bus: PolicyConn['bus']; names?: string[] }): FakeConn {
  const conn: FakeConn = {
    privileged: opts.privileged ?? false, creds: c,
    ep: opts.ep ?? { hasPolicy: false, policy: new PolicyDb() },
    bus: opts.bus, names: opts.names ?? [],
    ownedNames: () => conn.names,
  };
  return conn;
}

t.test('policyOwnName', async (t) => {
  const bus = { policy: new PolicyDb() };
  const holder = {};
  set(bus.policy, holder, cmd(name('com.example.a'), user(1000, POLICY_OWN), user(1001, POLICY_TALK)), 1);
  const u1000 = fake(creds(1000), { bus });
  const u1001 = fake(creds(1001), { bus });
  const priv = fake(creds(0), { bus, privileged: true });
  t.ok(policyOwnName(u1000, 'com.example.a'));
  t.notOk(policyOwnName(u1001, 'com.example.a'), 'TALK is not OWN');
  t.notOk(policyOwnName(u1000, 'com.example.b'), 'no policy: denied');
  t.ok(policyOwnName(priv, 'com.example.b'), 'privileged bypasses the bus policy');
  t.ok(policyOwnName(u1001, 'com.example.a', creds(1000)), 'explicit creds (current_cred) win');
  t.notOk(policyOwnName(u1000, 'com.example.a', creds(1001)));

  // custom endpoint: its policy must grant OWN first, also for the privileged
  const epdb = new PolicyDb();
  const ep = { hasPolicy: true, policy: epdb };
  set(epdb, ep, cmd(name('com.example.a'), world(POLICY_OWN), name('com.example.b'), world(POLICY_TALK)));
  const e1000 = fake(creds(1000), { bus, ep });
  const e1001 = fake(creds(1001), { bus, ep });
  const epriv = fake(creds(0), { bus, ep, privileged: true });
  t.ok(policyOwnName(e1000, 'com.example.a'), 'endpoint and bus both grant');
  t.notOk(policyOwnName(e1001, 'com.example.a'), 'endpoint grants, bus does not');
  t.notOk(policyOwnName(epriv, 'com.example.b'), 'endpoint TALK only: even privileged denied');
  t.ok(policyOwnName(epriv, 'com.example.a'));
  t.notOk(policyOwnName(epriv, 'com.example.c'));
});

t.test('policyTalk', async (t) => {
  const bus = { policy: new PolicyDb() };
  const holder = {};
  const a = fake(creds(1000), { bus });
  const b = fake(creds(2000), { bus, names: ['com.example.b'] });
  const b2 = fake(creds(2000), { bus, names: ['com.example.x', 'com.example.y'] });
  const nameless = fake(creds(2000), { bus });
  const priv = fake(creds(0), { bus, privileged: true });

  t.notOk(policyTalk(a, b), 'unprivileged, other user, no policy');
  t.ok(policyTalk(priv, b), 'privileged');
  t.ok(policyTalk(b, b2), 'same user');
  t.ok(policyTalk(a, fake({ ...creds(5), uid: 1000 }, { bus })), "conn's euid vs to's uid");
  t.notOk(policyTalk(a, fake({ ...creds(1000), uid: 5 }, { bus })), "to's euid does not count");
  t.ok(policyTalk(fake({ ...creds(2000), uid: 1 }, { bus }), b), "conn's uid does not count, its euid does");
  t.notOk(policyTalk(fake({ ...creds(1), uid: 2000 }, { bus }), b));

  set(bus.policy, holder, cmd(name('com.example.b'), user(1000, POLICY_TALK), name('com.example.y'), group(77, POLICY_OWN)));
  t.ok(policyTalk(a, b), 'TALK granted for a name of b');
  t.notOk(policyTalk(a, nameless), 'no names, nothing to grant');
  t.notOk(policyTalk(a, b2), 'b2 names are not granted to 1000');
  t.ok(policyTalk(fake(creds(3, 3, [77]), { bus }), b2), 'OWN on one of its names implies TALK');
  t.ok(policyTalk(a, b2, creds(4, 77)), 'explicit creds');
  set(bus.policy, holder, cmd(name('com.example.b'), user(1000, POLICY_SEE)));
  t.notOk(policyTalk(a, b), 'SEE is not TALK');

  // custom endpoint: enforced even for the privileged and the same user
  const epdb = new PolicyDb();
  const ep = { hasPolicy: true, policy: epdb };
  const ea = fake(creds(2000), { bus, ep });
  const epriv = fake(creds(0), { bus, ep, privileged: true });
  t.notOk(policyTalk(ea, b), 'same user, but the endpoint says no');
  t.notOk(policyTalk(epriv, b));
  set(epdb, ep, cmd(name('com.example.b'), world(POLICY_TALK)));
  t.ok(policyTalk(ea, b), 'endpoint grants, then same user');
  t.ok(policyTalk(epriv, b), 'endpoint grants, then privileged');
  t.notOk(policyTalk(fake(creds(1000), { bus, ep }), b), 'endpoint grants, bus only SEE');
});

t.test('policySeeName, policySee, policySeeNotification', async (t) => {
  const bus = { policy: new PolicyDb() };
  const plain = fake(creds(1000), { bus });
  const b = fake(creds(2000), { bus, names: ['com.example.b', 'com.example.hidden'] });
  const hiddenOnly = fake(creds(2000), { bus, names: ['com.example.hidden'] });
  const nameless = fake(creds(2000), { bus });

  t.ok(policySeeName(plain, 'com.example.anything'), 'default endpoint: all names visible');
  t.ok(policySee(plain, nameless), 'default endpoint: all peers visible');

  const epdb = new PolicyDb();
  const ep = { hasPolicy: true, policy: epdb };
  set(epdb, ep, cmd(name('com.example.b'), user(1000, POLICY_SEE), name('com.example.t'), world(POLICY_TALK),
    name('com.example.*'), group(9, POLICY_SEE)));
  const e = fake(creds(1000), { bus, ep });
  const priv = fake(creds(0), { bus, ep, privileged: true });
  t.ok(policySeeName(e, 'com.example.b'));
  t.ok(policySeeName(e, 'com.example.t'), 'TALK implies SEE');
  t.notOk(policySeeName(e, 'com.example.hidden'));
  t.notOk(policySeeName(priv, 'com.example.b'), 'privilege does not matter on custom endpoints');
  t.ok(policySeeName(e, 'com.example.hidden', creds(1, 9)), 'explicit creds, through the wildcard');
  t.ok(policySee(e, b), 'one visible name is enough');
  t.notOk(policySee(e, hiddenOnly));
  t.notOk(policySee(e, nameless), 'a peer without names is invisible on a custom endpoint');
  t.ok(policySee(e, hiddenOnly, creds(1, 1, [9])));

  const note = (type: number, n: string | null = null) => ({ type, name: n });
  for (const type of [ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
    t.ok(policySeeNotification(plain, note(type, 'com.example.hidden')));
    t.ok(policySeeNotification(e, note(type, 'com.example.b')));
    t.notOk(policySeeNotification(e, note(type, 'com.example.hidden')));
    t.ok(policySeeNotification(e, note(type, 'com.example.hidden'), creds(3, 9)));
  }
  for (const type of [ITEM.ID_ADD, ITEM.ID_REMOVE]) {
    t.ok(policySeeNotification(plain, note(type)), 'ID changes on default endpoints');
    t.notOk(policySeeNotification(e, note(type)), 'never on custom endpoints');
  }
  t.notOk(policySeeNotification(plain, note(ITEM.REPLY_TIMEOUT)), 'other types: never');
  t.notOk(policySeeNotification(plain, note(ITEM.NAME)));
});
