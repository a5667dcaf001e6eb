// lib/core/match.ts against ipc/kdbus/match.c: kdbus_match_db_add (rule
// parsing, REPLACE, KDBUS_MATCH_MAX), kdbus_match_db_remove,
// kdbus_match_rules (user broadcasts vs kernel notifications) and
// kdbus_match_bloom.
import t from 'tap';
import { MatchDb, bloomMatches, type MatchSubject } from '../lib/core/match.js';
import { ITEM, CMD_MATCH, KDBUS_MATCH_ID_ANY, LIMITS } from '../lib/abi/kdbus.js';
import { validateItems } from '../lib/abi/items.js';
import { errno } from '../lib/core/errors.js';
import { errnoOf, item, str, u64s } from './helpers.js';

const ANY = KDBUS_MATCH_ID_ANY;
const BLOOM_SIZE = 8; // bytes; the bus's bloom size for most tests (one u64 word)


// rule items as userspace writes them
const bloomMask = (...words: bigint[]): Buffer => item(ITEM.BLOOM_MASK, u64s(...words));
const nameRule = (name: string): Buffer => item(ITEM.NAME, str(name));
const idRule = (id: bigint): Buffer => item(ITEM.ID, u64s(id));
/** kdbus_notify_name_change: old_id {id, flags}, new_id {id, flags}, name[] */
const nameChange = (type: number, oldId: bigint, newId: bigint, name?: string): Buffer =>
  item(type, Buffer.concat([u64s(oldId, 0xdeadn, newId, 0xbeefn), name === undefined ? Buffer.alloc(0) : str(name)]));
/** kdbus_notify_id_change: {id, flags} */
const idChange = (type: number, id: bigint): Buffer => item(type, u64s(id, 0x1234n));

/** struct kdbus_cmd_match with the items; validated like handle.c does before kdbus_match_db_add. */
function cmd(cookie: bigint, ...items: Buffer[]): Buffer {
  const body = Buffer.concat(items);
  const b = Buffer.concat([Buffer.alloc(CMD_MATCH.items), body]);
  b.writeBigUInt64LE(BigInt(b.length), CMD_MATCH.size);
  b.writeBigUInt64LE(cookie, CMD_MATCH.cookie);
  validateItems(b, CMD_MATCH.items, body.length);
  return b;
}

function add(db: MatchDb, cookie: bigint, items: Buffer[], opts: { replace?: boolean; bloomSize?: number } = {}): void {
  const c = cmd(cookie, ...items);
  db.add(cookie, c, CMD_MATCH.items, c.length - CMD_MATCH.items, opts.replace ?? false, opts.bloomSize ?? BLOOM_SIZE);
}
const addErr = (db: MatchDb, cookie: bigint, items: Buffer[], opts: { replace?: boolean; bloomSize?: number } = {}) =>
  errnoOf(() => add(db, cookie, items, opts));

// subjects
const user = (srcId: bigint, o: { names?: string[]; gen?: bigint; bloom?: bigint[] | null } = {}): MatchSubject => ({
  kind: 'user',
  srcId,
  srcHasName: (n: string) => (o.names ?? []).includes(n),
  bloomGeneration: o.gen ?? 0n,
  bloom: o.bloom === null ? null : BigUint64Array.from(o.bloom ?? [0n]),
});
const notify = (type: number, oldId: bigint, newId: bigint, name: string | null = null): MatchSubject =>
  ({ kind: 'notify', type, oldId, newId, name });

const single = (items: Buffer[], opts: { bloomSize?: number } = {}): MatchDb => {
  const db = new MatchDb();
  add(db, 1n, items, opts);
  return db;
};

t.test('add: parsing rules', async (t) => {
  t.test('BLOOM_MASK: one and two generations, EDOM for bad sizes', async (t) => {
    const db = new MatchDb();
    t.equal(addErr(db, 1n, [bloomMask(0x1n)]), null, '8 bytes on an 8-byte bloom: 1 generation');
    t.equal(addErr(db, 2n, [bloomMask(0x1n, 0x2n)]), null, '16 bytes: 2 generations');
    t.equal(addErr(db, 3n, [bloomMask(0x1n, 0x2n, 0x3n)]), null, '24 bytes: 3 generations');
    t.equal(db.size, 3);
    t.equal(addErr(db, 4n, [item(ITEM.BLOOM_MASK)]), errno.EDOM, 'empty mask');
    t.equal(addErr(db, 4n, [item(ITEM.BLOOM_MASK, Buffer.alloc(4))]), errno.EDOM, '4 bytes');
    t.equal(addErr(db, 4n, [item(ITEM.BLOOM_MASK, Buffer.alloc(12))]), errno.EDOM, '12 bytes');
    t.equal(addErr(db, 4n, [bloomMask(1n)], { bloomSize: 16 }), errno.EDOM, '8 bytes on a 16-byte bloom');
    t.equal(addErr(db, 4n, [bloomMask(1n, 2n, 3n)], { bloomSize: 16 }), errno.EDOM, '24 bytes on a 16-byte bloom');
    t.equal(addErr(db, 4n, [bloomMask(1n, 2n)], { bloomSize: 16 }), null, '16 bytes on a 16-byte bloom');
    t.equal(addErr(db, 5n, [bloomMask(1n, 2n, 3n, 4n)], { bloomSize: 16 }), null, '32 bytes on a 16-byte bloom');
    t.equal(db.size, 5);
  });

  t.test('NAME: must be a valid well-known name, no wildcard', async (t) => {
    const db = new MatchDb();
    t.equal(addErr(db, 1n, [nameRule('foo.bar')]), null);
    t.equal(addErr(db, 1n, [nameRule('org.freedesktop.DBus')]), null);
    t.equal(addErr(db, 1n, [nameRule('a-b._c.d9')]), null);
    for (const bad of ['foo', '', 'foo.', '.foo', 'foo..bar', 'foo.9bar', '9foo.bar', 'foo.*', 'foo.b*r', 'foo bar.x',
      ':1.42', 'a.' + 'b'.repeat(254)]) {
      t.equal(addErr(db, 2n, [nameRule(bad)]), errno.EINVAL, `"${bad.length > 20 ? bad.slice(0, 20) + '…' : bad}"`);
    }
    t.equal(addErr(db, 2n, [nameRule('a.' + 'b'.repeat(253))]), null, '255 chars is the maximum');
    t.equal(db.size, 4);
  });

  t.test('ID, NAME_*, ID_* parse', async (t) => {
    const db = new MatchDb();
    const rules = [
      [idRule(5n)], [idRule(ANY)],
      [nameChange(ITEM.NAME_ADD, ANY, ANY)], [nameChange(ITEM.NAME_ADD, 0n, 7n, 'foo.bar')],
      [nameChange(ITEM.NAME_REMOVE, 7n, 0n)], [nameChange(ITEM.NAME_REMOVE, ANY, ANY, 'foo.bar')],
      [nameChange(ITEM.NAME_CHANGE, 7n, 8n)], [nameChange(ITEM.NAME_CHANGE, ANY, 8n, 'foo.bar')],
      [idChange(ITEM.ID_ADD, ANY)], [idChange(ITEM.ID_ADD, 9n)], [idChange(ITEM.ID_REMOVE, ANY)], [idChange(ITEM.ID_REMOVE, 9n)],
    ];
    for (const r of rules) t.equal(addErr(db, 1n, r), null);
    t.equal(db.size, rules.length);
  });

  t.test('items that are not match rules: EINVAL', async (t) => {
    const db = new MatchDb();
    const bad: Array<[string, Buffer]> = [
      ['ATTACH_FLAGS_SEND', item(ITEM.ATTACH_FLAGS_SEND, u64s(0n))],
      ['DST_NAME', item(ITEM.DST_NAME, str('foo.bar'))],
      ['BLOOM_FILTER', item(ITEM.BLOOM_FILTER, u64s(0n, 1n))],
      ['PAYLOAD_VEC', item(ITEM.PAYLOAD_VEC, u64s(1n, 0n))],
      ['REPLY_TIMEOUT', item(ITEM.REPLY_TIMEOUT)],
      ['CAPS', item(ITEM.CAPS, Buffer.alloc(8))],
      ['unknown 0x9999', item(0x9999, Buffer.alloc(8))],
    ];
    for (const [n, it] of bad) {
      t.equal(addErr(db, 1n, [it]), errno.EINVAL, n);
      t.equal(addErr(db, 1n, [idRule(1n), it]), errno.EINVAL, `${n} after a good rule`);
    }
    t.equal(db.size, 0, 'nothing was added');
  });

  t.test('a failed add leaves the database alone (even with REPLACE)', async (t) => {
    const db = new MatchDb();
    add(db, 1n, [idRule(5n)]);
    t.equal(addErr(db, 1n, [idRule(6n), nameRule('bad')], { replace: true }), errno.EINVAL);
    t.equal(addErr(db, 1n, [bloomMask(1n), item(ITEM.BLOOM_MASK, Buffer.alloc(4))], { replace: true }), errno.EDOM);
    t.equal(db.size, 1);
    t.ok(db.matches(user(5n), 1), 'the old entry is still there');
  });
});

t.test('REPLACE, remove, MATCH_MAX', async (t) => {
  t.test('same cookie without REPLACE: both entries live', async (t) => {
    const db = new MatchDb();
    add(db, 1n, [idRule(5n)]);
    add(db, 1n, [idRule(6n)]);
    t.equal(db.size, 2);
    t.ok(db.matches(user(5n), 1));
    t.ok(db.matches(user(6n), 1));
  });

  t.test('REPLACE drops every entry with the cookie, keeps the others', async (t) => {
    const db = new MatchDb();
    add(db, 1n, [idRule(5n)]);
    add(db, 1n, [idRule(6n)]);
    add(db, 2n, [idRule(7n)]);
    add(db, 1n, [idRule(8n)], { replace: true });
    t.equal(db.size, 2);
    t.notOk(db.matches(user(5n), 1));
    t.notOk(db.matches(user(6n), 1));
    t.ok(db.matches(user(7n), 1));
    t.ok(db.matches(user(8n), 1));
    add(db, 3n, [idRule(9n)], { replace: true });
    t.equal(db.size, 3, 'REPLACE with a new cookie just adds');
  });

  t.test('remove: every entry with the cookie, ENOENT if none', async (t) => {
    const db = new MatchDb();
    t.equal(errnoOf(() => db.remove(1n)), errno.ENOENT, 'empty');
    add(db, 1n, [idRule(5n)]);
    add(db, 1n, [idRule(6n)]);
    add(db, 2n, [idRule(7n)]);
    t.equal(errnoOf(() => db.remove(3n)), errno.ENOENT);
    t.equal(db.size, 3);
    db.remove(1n);
    t.equal(db.size, 1);
    t.notOk(db.matches(user(5n), 1));
    t.ok(db.matches(user(7n), 1));
    t.equal(errnoOf(() => db.remove(1n)), errno.ENOENT, 'twice');
    db.remove(2n);
    t.equal(db.size, 0);
    t.notOk(db.matches(user(7n), 1), 'an empty database matches nothing');
  });

  t.test('MATCH_MAX: EMFILE at 257', async (t) => {
    const db = new MatchDb();
    for (let i = 0; i < LIMITS.MATCH_MAX; i++) add(db, BigInt(i), [idRule(BigInt(i))]);
    t.equal(db.size, 256);
    t.equal(addErr(db, 1000n, [idRule(1n)]), errno.EMFILE);
    t.equal(addErr(db, 1000n, []), errno.EMFILE, 'empty entry too');
    t.equal(addErr(db, 1000n, [idRule(1n)], { replace: true }), errno.EMFILE, 'REPLACE of an unknown cookie');
    t.equal(db.size, 256);
    t.equal(addErr(db, 7n, [idRule(700n)], { replace: true }), null, 'REPLACE frees room first');
    t.equal(db.size, 256);
    t.ok(db.matches(user(700n), 1));
    t.notOk(db.matches(user(7n), 1));
    db.remove(8n);
    t.equal(addErr(db, 1000n, [idRule(1n)]), null, 'after a remove there is room');
    t.equal(addErr(db, 1001n, [idRule(1n)]), errno.EMFILE);
  });
});

t.test('removing entries keeps the others\' masks (they are packed in one array)', async (t) => {
  const db = new MatchDb();
  // cookie c wants bit c (two generations for cookie 2); cookie 4 has an ID rule too
  add(db, 1n, [bloomMask(0b10n)]);
  add(db, 2n, [bloomMask(0b100n, 0b1000n)]);
  add(db, 3n, [item(ITEM.ID, u64s(7n))]);
  add(db, 4n, [bloomMask(0b10000n), item(ITEM.ID, u64s(9n))]);
  const wants = (bits: bigint, gen = 0n, src = 9n) => db.matches(user(src, { bloom: [bits], gen }), 1);
  t.ok(wants(0b10n), 'cookie 1');
  t.ok(wants(0b1000n, 1n), 'cookie 2, generation 1');
  db.remove(1n);
  t.notOk(wants(0b10n), 'cookie 1 gone');
  t.ok(wants(0b100n), 'cookie 2 moved down, generation 0');
  t.ok(wants(0b1000n, 5n), 'cookie 2 moved down, its last generation');
  t.ok(wants(0b10000n), 'cookie 4 with its ID rule');
  t.notOk(wants(0b10000n, 0n, 8n), 'cookie 4 from another sender');
  t.ok(wants(0n, 0n, 7n), 'cookie 3');
  db.remove(2n);
  add(db, 5n, [bloomMask(0b100000n)]);
  t.notOk(wants(0b100n), 'cookie 2 gone');
  t.ok(wants(0b10000n), 'cookie 4 still');
  t.ok(wants(0b100000n), 'cookie 5 added after the repack');
  db.remove(3n);
  db.remove(4n);
  db.remove(5n);
  t.equal(db.size, 0);
  t.notOk(wants(0n, 0n, 7n), 'nothing left matches');
});

t.test('adjacent entries with the same masks share them; removing one keeps the other', async (t) => {
  const db = new MatchDb();
  add(db, 1n, [bloomMask(0b1n, 0b10n)]);
  add(db, 2n, [bloomMask(0b1n, 0b10n)]);
  add(db, 3n, [bloomMask(0b1n, 0b100n)], {}); // differs in generation 1 only
  add(db, 4n, [bloomMask(0b1n, 0b10n), item(ITEM.ID, u64s(7n))]);
  const wants = (bits: bigint, gen: bigint, src = 9n) => db.matches(user(src, { bloom: [bits], gen }), 1);
  t.ok(wants(0b10n, 1n), 'cookies 1, 2');
  t.ok(wants(0b100n, 1n), 'cookie 3 is not taken for its neighbour');
  db.remove(1n);
  t.ok(wants(0b10n, 1n), 'cookie 2 keeps the masks it shared');
  t.ok(wants(0b1n, 0n), 'generation 0 too');
  db.remove(2n);
  t.notOk(wants(0b10n, 1n), 'cookie 4 wants sender 7');
  t.ok(wants(0b10n, 1n, 7n), 'cookie 4, after its neighbours went');
  t.ok(wants(0b100n, 1n), 'cookie 3 still');
});

t.test('an entry without rules matches everything', async (t) => {
  const db = single([]);
  t.ok(db.matches(user(1n), 1), 'a broadcast');
  t.ok(db.matches(user(1n, { bloom: null }), 1), 'a broadcast without a bloom filter');
  for (const type of [ITEM.ID_ADD, ITEM.ID_REMOVE, ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
    t.ok(db.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `notification ${type}`);
  }
});

t.test('matches: user broadcasts', async (t) => {
  t.test('ID', async (t) => {
    const db = single([idRule(5n)]);
    t.ok(db.matches(user(5n), 1));
    t.notOk(db.matches(user(6n), 1));
    const any = single([idRule(ANY)]);
    t.ok(any.matches(user(5n), 1));
    t.ok(any.matches(user(6n), 1));
  });

  t.test('NAME: the sender owns the name', async (t) => {
    const db = single([nameRule('foo.bar')]);
    t.ok(db.matches(user(5n, { names: ['x.y', 'foo.bar'] }), 1));
    t.notOk(db.matches(user(5n, { names: ['x.y'] }), 1));
    t.notOk(db.matches(user(5n), 1));
  });

  t.test('BLOOM_MASK, one generation: mask bits must be a subset of the filter', async (t) => {
    const db = single([bloomMask(0b1010n)]);
    t.ok(db.matches(user(1n, { bloom: [0b1010n] }), 1), 'equal');
    t.ok(db.matches(user(1n, { bloom: [0b1111n] }), 1), 'superset');
    t.notOk(db.matches(user(1n, { bloom: [0b1000n] }), 1), 'missing a bit');
    t.notOk(db.matches(user(1n, { bloom: [0b0101n] }), 1), 'disjoint');
    t.notOk(db.matches(user(1n, { bloom: null }), 1), 'no filter');
    t.ok(db.matches(user(1n, { bloom: [0b1010n], gen: 7n }), 1), 'any filter generation uses the only one');
    const zero = single([bloomMask(0n)]);
    t.ok(zero.matches(user(1n, { bloom: [0n] }), 1), 'an empty mask matches any filter');
  });

  t.test('BLOOM_MASK, two generations', async (t) => {
    const G0 = 0b0011n;
    const G1 = 0b1100n;
    const db = single([bloomMask(G0, G1)]);
    t.ok(db.matches(user(1n, { gen: 0n, bloom: [G0] }), 1), 'gen 0 uses mask 0');
    t.notOk(db.matches(user(1n, { gen: 0n, bloom: [G1] }), 1), 'gen 0 does not use mask 1');
    t.ok(db.matches(user(1n, { gen: 1n, bloom: [G1] }), 1), 'gen 1 uses mask 1');
    t.notOk(db.matches(user(1n, { gen: 1n, bloom: [G0] }), 1), 'gen 1 does not use mask 0');
    t.ok(db.matches(user(1n, { gen: 2n, bloom: [G1] }), 1), 'gen 2 is beyond the mask: the last one');
    t.notOk(db.matches(user(1n, { gen: 2n, bloom: [G0] }), 1));
    t.ok(db.matches(user(1n, { gen: 0xffff_ffff_ffff_ffffn, bloom: [G1] }), 1), 'gen u64 max: the last one');
  });

  t.test('BLOOM_MASK on a two-word bloom', async (t) => {
    const db = single([bloomMask(0x1n, 0x2n, 0x4n, 0x8n)], { bloomSize: 16 });
    t.ok(db.matches(user(1n, { gen: 0n, bloom: [0x1n, 0x2n] }), 2));
    t.notOk(db.matches(user(1n, { gen: 0n, bloom: [0x1n, 0x0n] }), 2), 'second word checked');
    t.ok(db.matches(user(1n, { gen: 1n, bloom: [0x4n, 0x8n] }), 2));
    t.ok(db.matches(user(1n, { gen: 5n, bloom: [0x5n, 0xan] }), 2), 'beyond: last generation');
    t.notOk(db.matches(user(1n, { gen: 1n, bloom: [0x1n, 0x2n] }), 2));
  });

  t.test('BLOOM_MASK at the largest bloom size (4 KiB, two generations)', async (t) => {
    const words = LIMITS.BUS_BLOOM_MAX_SIZE / 8;
    const mask = new Array<bigint>(2 * words).fill(0n);
    mask[words - 1] = 1n << 63n; // gen 0: last bit of the last word
    mask[words] = 1n; // gen 1: first bit of the first word
    const db = single([bloomMask(...mask)], { bloomSize: LIMITS.BUS_BLOOM_MAX_SIZE });
    const filter = (w: number, v: bigint): bigint[] => {
      const f = new Array<bigint>(words).fill(0n);
      f[w] = v;
      return f;
    };
    t.ok(db.matches(user(1n, { gen: 0n, bloom: filter(words - 1, 1n << 63n) }), words));
    t.notOk(db.matches(user(1n, { gen: 0n, bloom: filter(0, 1n) }), words));
    t.ok(db.matches(user(1n, { gen: 1n, bloom: filter(0, 1n) }), words));
    t.ok(db.matches(user(1n, { gen: 9n, bloom: filter(0, 1n) }), words));
    t.notOk(db.matches(user(1n, { gen: 9n, bloom: filter(words - 1, 1n << 63n) }), words));
  });

  t.test('all rules of an entry must hold; any entry may', async (t) => {
    const db = new MatchDb();
    add(db, 1n, [idRule(5n), nameRule('foo.bar'), bloomMask(0b1n)]);
    t.ok(db.matches(user(5n, { names: ['foo.bar'], bloom: [0b1n] }), 1));
    t.notOk(db.matches(user(6n, { names: ['foo.bar'], bloom: [0b1n] }), 1), 'wrong id');
    t.notOk(db.matches(user(5n, { names: [], bloom: [0b1n] }), 1), 'no name');
    t.notOk(db.matches(user(5n, { names: ['foo.bar'], bloom: [0b10n] }), 1), 'bloom');
    add(db, 2n, [idRule(6n)]);
    t.ok(db.matches(user(6n), 1), 'the second entry');
  });

  t.test('notification rules never match a broadcast', async (t) => {
    for (const r of [nameChange(ITEM.NAME_ADD, ANY, ANY), nameChange(ITEM.NAME_CHANGE, ANY, ANY),
      nameChange(ITEM.NAME_REMOVE, ANY, ANY), idChange(ITEM.ID_ADD, ANY), idChange(ITEM.ID_REMOVE, ANY)]) {
      t.notOk(single([r]).matches(user(1n, { names: ['foo.bar'] }), 1));
      t.notOk(single([idRule(ANY), r]).matches(user(1n), 1), 'not even with a matching ID rule');
    }
  });
});

t.test('matches: kernel notifications', async (t) => {
  t.test('ID_ADD / ID_REMOVE', async (t) => {
    const addAny = single([idChange(ITEM.ID_ADD, ANY)]);
    t.ok(addAny.matches(notify(ITEM.ID_ADD, 0n, 5n), 1));
    t.ok(addAny.matches(notify(ITEM.ID_ADD, 0n, 6n), 1));
    t.notOk(addAny.matches(notify(ITEM.ID_REMOVE, 5n, 0n), 1), 'other type');
    t.notOk(addAny.matches(notify(ITEM.NAME_ADD, 0n, 5n, 'a.b'), 1), 'other type');

    const add5 = single([idChange(ITEM.ID_ADD, 5n)]);
    t.ok(add5.matches(notify(ITEM.ID_ADD, 0n, 5n), 1), 'the new id');
    t.notOk(add5.matches(notify(ITEM.ID_ADD, 0n, 6n), 1));
    t.notOk(add5.matches(notify(ITEM.ID_ADD, 5n, 6n), 1), 'the old id is not looked at');

    const rmAny = single([idChange(ITEM.ID_REMOVE, ANY)]);
    t.ok(rmAny.matches(notify(ITEM.ID_REMOVE, 5n, 0n), 1));
    t.notOk(rmAny.matches(notify(ITEM.ID_ADD, 0n, 5n), 1));

    const rm5 = single([idChange(ITEM.ID_REMOVE, 5n)]);
    t.ok(rm5.matches(notify(ITEM.ID_REMOVE, 5n, 0n), 1), 'the old id');
    t.notOk(rm5.matches(notify(ITEM.ID_REMOVE, 6n, 0n), 1));
    t.notOk(rm5.matches(notify(ITEM.ID_REMOVE, 6n, 5n), 1), 'the new id is not looked at');
  });

  t.test('NAME_ADD / NAME_REMOVE / NAME_CHANGE: ids', async (t) => {
    for (const type of [ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
      const any = single([nameChange(type, ANY, ANY)]);
      t.ok(any.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `${type}: ANY/ANY`);
      t.ok(any.matches(notify(type, 0n, 0n, 'x.y'), 1), `${type}: ANY/ANY, any name`);
      const other = type === ITEM.NAME_ADD ? ITEM.NAME_REMOVE : ITEM.NAME_ADD;
      t.notOk(any.matches(notify(other, 1n, 2n, 'foo.bar'), 1), `${type}: other name type`);
      t.notOk(any.matches(notify(ITEM.ID_ADD, 1n, 2n), 1), `${type}: ID_ADD`);

      const oldOnly = single([nameChange(type, 1n, ANY)]);
      t.ok(oldOnly.matches(notify(type, 1n, 9n, 'foo.bar'), 1), `${type}: old id`);
      t.notOk(oldOnly.matches(notify(type, 2n, 9n, 'foo.bar'), 1), `${type}: wrong old id`);

      const newOnly = single([nameChange(type, ANY, 2n)]);
      t.ok(newOnly.matches(notify(type, 9n, 2n, 'foo.bar'), 1), `${type}: new id`);
      t.notOk(newOnly.matches(notify(type, 9n, 3n, 'foo.bar'), 1), `${type}: wrong new id`);

      const both = single([nameChange(type, 1n, 2n)]);
      t.ok(both.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `${type}: both ids`);
      t.notOk(both.matches(notify(type, 2n, 1n, 'foo.bar'), 1), `${type}: swapped`);

      const zero = single([nameChange(type, 0n, 2n)]);
      t.ok(zero.matches(notify(type, 0n, 2n, 'foo.bar'), 1), `${type}: id 0 is a real id, not ANY`);
      t.notOk(zero.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `${type}: id 0 does not match 1`);
    }
  });

  t.test('NAME_*: names', async (t) => {
    for (const type of [ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
      const named = single([nameChange(type, ANY, ANY, 'foo.bar')]);
      t.ok(named.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `${type}: same name`);
      t.notOk(named.matches(notify(type, 1n, 2n, 'foo.baz'), 1), `${type}: other name`);
      t.notOk(named.matches(notify(type, 1n, 2n, 'foo.ba'), 1), `${type}: prefix`);
      t.ok(named.matches(notify(type, 1n, 2n, null), 1), `${type}: a notification without a name is not filtered`);

      const unnamed = single([nameChange(type, ANY, ANY)]);
      t.ok(unnamed.matches(notify(type, 1n, 2n, 'whatever.name'), 1), `${type}: no name in the rule`);

      const all = single([nameChange(type, 1n, ANY, 'foo.bar')]);
      t.ok(all.matches(notify(type, 1n, 2n, 'foo.bar'), 1), `${type}: id and name`);
      t.notOk(all.matches(notify(type, 3n, 2n, 'foo.bar'), 1), `${type}: name but not id`);
    }
  });

  t.test('broadcast rules never match a notification', async (t) => {
    for (const r of [idRule(ANY), nameRule('foo.bar'), bloomMask(0n)]) {
      const db = single([r]);
      for (const type of [ITEM.ID_ADD, ITEM.ID_REMOVE, ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
        t.notOk(db.matches(notify(type, 1n, 1n, 'foo.bar'), 1));
      }
    }
  });

  t.test('two notification rules of different types in one entry never match', async (t) => {
    const db = single([idChange(ITEM.ID_ADD, ANY), idChange(ITEM.ID_REMOVE, ANY)]);
    t.notOk(db.matches(notify(ITEM.ID_ADD, 0n, 5n), 1));
    t.notOk(db.matches(notify(ITEM.ID_REMOVE, 5n, 0n), 1));
    const db2 = new MatchDb();
    add(db2, 1n, [idChange(ITEM.ID_ADD, ANY)]);
    add(db2, 1n, [idChange(ITEM.ID_REMOVE, ANY)]);
    t.ok(db2.matches(notify(ITEM.ID_ADD, 0n, 5n), 1), 'as two entries they do');
    t.ok(db2.matches(notify(ITEM.ID_REMOVE, 5n, 0n), 1));
  });
});

t.test('names are bytes: rules with a Latin-1 letter byte match byte for byte', async (t) => {
  const bytes = (s: string): Buffer => Buffer.from(s + '\0', 'latin1');
  const byName = single([item(ITEM.NAME, bytes('org.caf\xe9.x'))]);
  t.ok(byName.matches(user(5n, { names: ['org.caf\xe9.x'] }), 1), 'a NAME rule with the byte 0xE9');
  t.notOk(byName.matches(user(5n, { names: ['org.caf\xc9.x'] }), 1), '0xC9 is another byte');
  t.equal(addErr(new MatchDb(), 1n, [item(ITEM.NAME, bytes('org.caf\xc3\xa9.x'))]), errno.EINVAL,
    'the UTF-8 spelling of "café" is no valid name (0xA9 is no letter)');
  const added = single([item(ITEM.NAME_ADD, Buffer.concat([u64s(ANY, 0n, ANY, 0n), bytes('org.caf\xe9.x')]))]);
  t.ok(added.matches(notify(ITEM.NAME_ADD, 0n, 1n, 'org.caf\xe9.x'), 1), 'a NAME_ADD rule with the byte 0xE9');
  t.notOk(added.matches(notify(ITEM.NAME_ADD, 0n, 1n, 'org.caf\xc9.x'), 1), 'not another name');
});

t.test('bloomMatches (kdbus_match_bloom)', async (t) => {
  const A = (...v: bigint[]): Uint32Array => new Uint32Array(BigUint64Array.from(v).buffer);
  t.ok(bloomMatches(A(0b111n), 0, A(0b101n), 1, 1), 'subset');
  t.notOk(bloomMatches(A(0b011n), 0, A(0b101n), 1, 1), 'not a subset');
  t.ok(bloomMatches(A(0n), 0, A(0n), 1, 1), 'empty mask');
  t.ok(bloomMatches(A(0xffff_ffff_ffff_ffffn), 0, A(0x8000_0000_0000_0001n), 1, 1), 'top and bottom bits');
  t.notOk(bloomMatches(A(0x7fff_ffff_ffff_ffffn), 0, A(0x8000_0000_0000_0000n), 1, 1), 'top bit missing');

  // 3 generations of 2 words each
  const mask = A(0x1n, 0x10n, 0x2n, 0x20n, 0x4n, 0x40n);
  t.ok(bloomMatches(A(0x1n, 0x10n), 0, mask, 3, 2), 'gen 0');
  t.notOk(bloomMatches(A(0x1n, 0x0n), 0, mask, 3, 2), 'gen 0, second word');
  t.ok(bloomMatches(A(0x2n, 0x20n), 1, mask, 3, 2), 'gen 1');
  t.notOk(bloomMatches(A(0x1n, 0x10n), 1, mask, 3, 2), 'gen 1 with gen 0 bits');
  t.ok(bloomMatches(A(0x4n, 0x40n), 2, mask, 3, 2), 'gen 2');
  t.ok(bloomMatches(A(0x4n, 0x40n), 3, mask, 3, 2), 'gen 3: the last mask');
  t.ok(bloomMatches(A(0x4n, 0x40n), 1000, mask, 3, 2), 'gen 1000: the last mask');
  t.notOk(bloomMatches(A(0x2n, 0x20n), 1000, mask, 3, 2), 'gen 1000 is not gen 1');
  t.ok(bloomMatches(A(0x4n, 0x40n), 0xffff_ffff, mask, 3, 2), 'gen u64 max');
  t.ok(bloomMatches(A(0x1n, 0x10n, 0xffn), 0, A(0x1n, 0x10n), 1, 2), 'only `words` words are compared');
});
