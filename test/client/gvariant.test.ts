// The GVariant codec (lib/client/gvariant.ts) against encodings made by GLib's
// own implementation (libglib-2.0 2.74, g_variant_new_parsed +
// g_variant_get_data) and sd-bus 2015's tables of sizes and alignments
// (test-bus-gvariant.c); round trips; framing-offset widths; refusals.
import { createHash } from 'node:crypto';
import t from 'tap';
import { CodecError } from '../../lib/client/codec-error.js';
import { decodeBody, decodeValue, encodeBody, encodeValue, offsetSize } from '../../lib/client/gvariant.js';
import { parseSingleType } from '../../lib/client/signature.js';
import { Variant, type DBusValue } from '../../lib/client/variant.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Buffer => Buffer.from(h, 'hex');

t.test('values encode to GLib\'s bytes and decode back', async t => {
  const glib: [string, DBusValue, string][] = [
    ['s', 'hello world', '68656c6c6f20776f726c6400'],
    ['ab', [true, false], '0100'],
    ['as', ['hello', 'world'], '68656c6c6f00776f726c6400060c'],
    ['a(si)', [['hi', -2], ['bye', -1]], '68690000feffffff0300000062796500ffffffff040915'],
    ['(si)', ['foo', -1], '666f6f00ffffffff04'],
    ['a{si}', new Map([['a key', 514]]), '61206b657900000002020000060d'],
    ['v', new Variant('v', new Variant('u', 1)), '0100000000750076'],
    ['aay', [Buffer.from([1, 2, 3]), Buffer.alloc(0), Buffer.from([4, 5])], '0102030405030305'],
    ['a{sv}', new Map([['one', new Variant('s', '1')], ['two', new Variant('ai', [1, 2])]]),
      '6f6e650000000000310000730400000074776f00000000000100000002000000006169040d24'],
    ['(yqut)', [1, 2, 3, 4n], '01000200030000000400000000000000'],
    ['(ty)', [7n, 9], '07000000000000000900000000000000'],
    ['ax', [], ''],
    ['(asa{sv}ay)', [[], new Map(), Buffer.alloc(0)], '0000'],
    ['d', 1.5, '000000000000f83f'],
    ['x', -5000000000n, '000efad5feffffff'],
    ['t', 18446744073709551615n, 'ffffffffffffffff'],
    ['n', -2, 'feff'],
    ['q', 65535, 'ffff'],
    ['o', '/a/b', '2f612f6200'],
    ['g', 'a{sv}', '617b73767d00'],
    ['aav', [[new Variant('i', 1), new Variant('s', 'x')], []], '010000000069000078000073060c00000e10'],
    ['a(ib)', [[1, true], [-1, false]], '0100000001000000ffffffff00000000'],
    ['(sai)', ['ü€', [1, -1]], 'c3bce282ac00000001000000ffffffff06'],
  ];
  for (const [sig, value, expected] of glib) {
    const encoded = encodeValue(sig, value);
    t.equal(hex(encoded), expected, `${sig} encodes as GLib does`);
    t.strictSame(decodeValue(sig, encoded), value, `${sig} decodes to what was encoded`);
  }
});

t.test('framing offsets take 1, 2, 4 or 8 bytes as the container grows', async t => {
  // GLib's encodings of the same values, by size, last bytes and SHA-256
  const glib: [string, string, DBusValue, number, string, string][] = [
    ['as', '1-byte', ['a'.repeat(100), 'b'], 105, '', ''],
    ['as', '2-byte', ['a'.repeat(250), 'b'.repeat(10)], 266, '62626200fb000601',
      'dc7ce97d6d7ca2e748fde95f1eb08c23f0b995deb2b0385b4d0fc28380700ac9'],
    ['as', '4-byte', ['a'.repeat(70000), 'b'], 70011, '7111010073110100',
      'd1144d4269518980046815bdb54593957103052c38a29ce12c5cbd475b06af38'],
    ['(sas)', '2-byte struct', ['x'.repeat(300), ['y']], 306, '7878007900022d01',
      '85d37a07a5a436d329e826c4e89738b3b78f7b2b44d4242a0c6ec63e550013b0'],
  ];
  for (const [sig, what, value, size, tail, sha] of glib) {
    const encoded = encodeValue(sig, value);
    t.equal(encoded.length, size, `${sig} with ${what} offsets: size`);
    if (tail) t.equal(hex(encoded.subarray(-8)), tail, `${sig} with ${what} offsets: framing`);
    if (sha) t.equal(createHash('sha256').update(encoded).digest('hex'), sha, `${sig} with ${what} offsets: GLib's bytes`);
    t.strictSame(decodeValue(sig, encoded), value, `${sig} with ${what} offsets: decodes back`);
  }
  // a container past 4 GiB cannot be built in a test: the width rule at each boundary
  t.equal(offsetSize(0xff - 1, 1), 1);
  t.equal(offsetSize(0xff, 1), 2, '256 bytes with a 1-byte offset would not fit');
  t.equal(offsetSize(0xffff - 2, 1), 2);
  t.equal(offsetSize(0xffff - 1, 1), 4);
  t.equal(offsetSize(0xffff_ffff - 4, 1), 4);
  t.equal(offsetSize(0xffff_ffff - 3, 1), 8);
  t.equal(offsetSize(0xffff_ffff, 0), 4, 'no offsets: the content alone decides');
});

t.test('sizes and alignments of sd-bus\'s test-bus-gvariant.c', async t => {
  const table: [string, number, number | null][] = [
    ['y', 1, 1], ['b', 1, 1], ['n', 2, 2], ['q', 2, 2], ['i', 4, 4], ['u', 4, 4], ['h', 4, 4],
    ['x', 8, 8], ['t', 8, 8], ['d', 8, 8], ['s', 1, null], ['o', 1, null], ['g', 1, null],
    ['v', 8, null], ['ay', 1, null], ['as', 1, null], ['au', 4, null], ['an', 2, null],
    ['(u)', 4, 4], ['(uuuuy)', 4, 20], ['(uusuuy)', 4, null], ['a{ss}', 1, null],
    ['((u)yyy(b(iiii)))', 4, 28], ['((u)yyy(b(iiivi)))', 8, null], ['((b)(t))', 8, 16],
    ['((b)(b)(t))', 8, 16], ['(bt)', 8, 16], ['((t)(b))', 8, 16], ['(tb)', 8, 16], ['((b)(b))', 1, 2],
    ['((t)(t))', 8, 16], ['(ss)', 1, null], ['(ssu)', 4, null], ['a(ssu)', 4, null],
  ];
  for (const [sig, alignment, size] of table) {
    const type = parseSingleType(sig);
    t.equal(type.alignment, alignment, `${sig} aligns to ${alignment}`);
    t.equal(type.fixedSize, size, `${sig} size ${size ?? 'varies'}`);
  }
});

t.test('nested and empty containers round-trip', async t => {
  const cases: [string, DBusValue][] = [
    ['a{sa{sv}}', new Map([['outer', new Map([['k', new Variant('a{sv}', new Map())]])], ['empty', new Map()]])],
    ['aaas', [[[]], [['a', ''], []], []]],
    ['a(yv)', [[1, new Variant('(uas)', [3, ['x']])], [2, new Variant('ay', Buffer.from('zz'))]]],
    ['(a(ii)a(ss)v)', [[], [], new Variant('as', [])]],
    ['a{ox}', new Map([['/a', -1n], ['/', 0n]])],
    ['a{by}', new Map([[true, 1], [false, 0]])],
    ['av', [new Variant('v', new Variant('v', new Variant('(ddd)', [0.5, -0, Infinity])))]],
    ['(yyyyuu)', [0x6c, 1, 0, 2, 0, 1]],
    ['ah', [0, 1, 2]],
  ];
  for (const [sig, value] of cases) {
    t.strictSame(decodeValue(sig, encodeValue(sig, value)), value, sig);
  }
  t.strictSame(decodeValue('(d)', encodeValue('(d)', [NaN])), [NaN], 'NaN survives');
});

t.test('plain objects and pairs stand for string-keyed dicts', async t => {
  const viaObject = encodeValue('a{ss}', { a: 'b', c: 'd' });
  t.equal(hex(viaObject), hex(encodeValue('a{ss}', new Map([['a', 'b'], ['c', 'd']]))));
  t.equal(hex(encodeValue('a{us}', [[1, 'x']])), hex(encodeValue('a{us}', new Map([[1, 'x']]))));
  t.throws(() => encodeValue('a{us}', { 1: 'x' }), CodecError, 'numeric keys want a Map');
});

t.test('message bodies are structs of their signature, as sd-bus wrote them', async t => {
  t.equal(encodeBody('', []).length, 0, 'an empty signature has no bytes');
  t.strictSame(decodeBody('', Buffer.alloc(0)), []);
  t.throws(() => decodeBody('', Buffer.from([0])), CodecError);
  t.equal(hex(encodeBody('s', ['hello'])), '68656c6c6f00', 'one string: just the string');
  t.equal(hex(encodeBody('uy', [1, 2])), '0100000002', 'fixed-size body ends after its last value');
  t.strictSame(decodeBody('uy', bytes('0100000002')), [1, 2], 'sd-bus\'s short form reads');
  t.strictSame(decodeBody('uy', bytes('0100000002000000')), [1, 2], 'and so does GVariant\'s padded one');
  t.throws(() => decodeBody('uy', bytes('01000000020000')), CodecError, 'anything between is refused');
  t.throws(() => encodeBody('su', ['x']), /2 values, 1 given/);
});

t.test('encoding refuses values D-Bus cannot carry', async t => {
  const bad: [string, unknown, RegExp][] = [
    ['y', 256, /cannot encode/], ['y', -1, /cannot encode/], ['n', 32768, /cannot encode/],
    ['i', 1.5, /cannot encode/], ['u', -1, /cannot encode/], ['x', 1n << 63n, /cannot encode/],
    ['t', -1n, /cannot encode/], ['b', 1, /cannot encode/], ['d', '1', /cannot encode/],
    ['s', 'a\0b', /NUL/], ['s', 'a\ud800', /lone surrogate/], ['o', 'a/b', /object path/],
    ['o', '/a/', /object path/], ['g', 'a{vs}', /signature/], ['g', 'x'.repeat(256), /signature/],
    ['v', 'x', /cannot encode/], ['(is)', [1], /cannot encode/], ['ai', 'x', /cannot encode/],
    ['as', Buffer.from('x'), /cannot encode/],
  ];
  for (const [sig, value, why] of bad) {
    t.throws(() => encodeValue(sig, value as DBusValue), why, `${sig} ${String(value).slice(0, 20)}`);
  }
  let deep: DBusValue = 1;
  for (let i = 0; i < 70; i++) deep = new Variant(i === 0 ? 'i' : 'v', deep);
  t.throws(() => encodeValue('v', deep), /nest deeper than 64/);
});

t.test('decoding refuses malformed data and never reads past it', async t => {
  const bad: [string, string, RegExp][] = [
    ['u', '010000', /takes 4 bytes, not 3/],
    ['u', '0100000000', /takes 4 bytes, not 5/],
    ['b', '02', /neither 0 nor 1/],
    ['s', '', /no NUL/],
    ['s', '6869', /not NUL-terminated/],
    ['s', '680069', /NUL before its end/],
    ['s', '68006900', /NUL before its end/],
    ['s', 'ff00', /not valid UTF-8/],
    ['s', 'eda08000', /not valid UTF-8/],
    ['o', '2f612f00', /invalid object path/],
    ['g', '7b737d00', /invalid signature/],
    ['ai', '010000000200', /not a multiple of 4/],
    ['as', '6100', /framing offset 0 points outside|out of order/],
    ['as', '610009', /points outside/],
    ['as', '6100620003', /no NUL/],
    ['as', '61006200040302', /out of order or range/],
    ['(si)', '666f6f00ffffffff', /runs outside|too short|stray/],
    ['(si)', '666f6f00ffffffff09', /runs outside/],
    ['(su)', '666f6f0001000000ff04', /stray bytes|runs outside/],
    ['(yu)', '01ff000002000000', /padding byte is not zero/],
    ['(ty)', '07000000000000000901000000000000', /padding byte is not zero/],
    ['v', '01020304', /without the NUL/],
    ['v', '01000000', /0 complete types/],
    ['v', '0100000000', /variant signature/],
    ['v', '010000000079', /'y' takes 1 bytes, not 4/],
    ['v', '0100000000757500', /variant signature/],
    ['v', '0000007b7d', /variant signature/],
    ['aay', '00'.repeat(256), /wider than needed/],
  ];
  for (const [sig, data, why] of bad) {
    t.throws(() => decodeValue(sig, bytes(data)), why, `${sig} ${data}`);
  }
  t.strictSame(decodeValue('aay', bytes('00'.repeat(128))), Array.from({ length: 128 }, () => Buffer.alloc(0)),
    '128 empty arrays with 1-byte offsets are normal form');
  // nested variants past the depth limit
  let data = encodeValue('i', 1);
  let sig = 'i';
  for (let i = 0; i < 70; i++) {
    data = Buffer.concat([data, Buffer.from([0]), Buffer.from(sig)]);
    sig = 'v';
  }
  t.throws(() => decodeValue('v', data), /nest deeper than 64/);
  // every truncation of a valid value is refused, never read past
  const whole = encodeValue('(sa{sv}ayt)', ['x', new Map([['k', new Variant('as', ['a', 'b'])]]), Buffer.from([1]), 5n]);
  for (let n = 0; n < whole.length; n++) {
    const cut = Buffer.from(whole.subarray(0, n)); // its own memory: no byte of `whole` after it is reachable
    t.throws(() => decodeValue('(sa{sv}ayt)', cut), CodecError, `cut at ${n}`);
  }
});
