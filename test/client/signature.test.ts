// D-Bus signatures (lib/client/signature.ts) and names (lib/client/dbus-names.ts)
// against the D-Bus specification's rules and limits.
import t from 'tap';
import {
  isBusName, isErrorName, isInterfaceName, isMemberName, isObjectPath, isUniqueName, isWellKnownName,
} from '../../lib/client/dbus-names.js';
import { bodyType, isValidSignature, parseSignature, parseSingleType } from '../../lib/client/signature.js';

t.test('valid signatures parse into their complete types', async t => {
  t.strictSame(parseSignature('').length, 0);
  t.strictSame(parseSignature('ybnqiuxtdhsogv').map(x => x.signature), [...'ybnqiuxtdhsogv']);
  t.strictSame(parseSignature('a{sv}(ia(ss))aay').map(x => x.signature), ['a{sv}', '(ia(ss))', 'aay']);
  const dict = parseSingleType('a{oa{sv}}');
  t.equal(dict.kind, 'array');
  t.equal(dict.kind === 'array' && dict.element.kind, 'dict-entry');
  t.equal(bodyType('su').signature, '(su)');
  t.equal(parseSignature('s'.repeat(255)).length, 255, '255 characters is the most');
  t.ok(isValidSignature('a'.repeat(32) + 'y'), '32 nested arrays');
  t.ok(isValidSignature('('.repeat(32) + 'y' + ')'.repeat(32)), '32 nested structs');
  t.ok(isValidSignature('a(' .repeat(32) + 'y' + ')'.repeat(32)), '64 containers in all');
});

t.test('invalid signatures are refused with the reason', async t => {
  const bad: [string, RegExp][] = [
    ['s'.repeat(256), /more than 255/],
    ['a'.repeat(33) + 'y', /arrays nest deeper than 32/],
    ['('.repeat(33) + 'y' + ')'.repeat(33), /structs nest deeper than 32/],
    ['a', /ends inside a type/],
    ['(', /struct not closed/],
    ['(i', /struct not closed/],
    ['()', /empty struct/],
    [')', /unknown type code/],
    ['{sv}', /dict entry outside an array/],
    ['a{vs}', /key is not a basic type/],
    ['a{(i)s}', /key is not a basic type/],
    ['a{s}', /without a value/],
    ['a{sss}', /more than two types/],
    ['a{sv', /more than two types or is not closed/],
    ['mi', /unknown type code "m"/],
    ['r', /unknown type code/],
    ['a{sv}}', /unknown type code/],
  ];
  for (const [sig, why] of bad) t.throws(() => parseSignature(sig), why, sig);
  t.throws(() => parseSingleType('ii'), /2 complete types where one was expected/);
  t.throws(() => parseSingleType(''), /0 complete types/);
});

t.test('names follow the D-Bus specification', async t => {
  for (const p of ['/', '/a', '/a/b_c/D9']) t.ok(isObjectPath(p), p);
  for (const p of ['', 'a', '//', '/a/', '/a//b', '/a-b', '/ä']) t.notOk(isObjectPath(p), p);
  for (const n of ['a.b', 'org.freedesktop.DBus', '_a.b_9']) t.ok(isInterfaceName(n), n);
  for (const n of ['a', 'a..b', '.a.b', 'a.9b', 'a-b.c', `a.${'b'.repeat(254)}`]) t.notOk(isInterfaceName(n), n);
  t.ok(isErrorName('org.x.Error.Failed'));
  for (const n of ['Echo', '_x9']) t.ok(isMemberName(n), n);
  for (const n of ['', '9x', 'a.b', 'a-b']) t.notOk(isMemberName(n), n);
  for (const n of [':1.42', ':a-b.9']) t.ok(isUniqueName(n), n);
  for (const n of [':1', '1.42', ':.1']) t.notOk(isUniqueName(n), n);
  for (const n of ['org.kdbusfs.Example', 'a-b.c_d']) t.ok(isWellKnownName(n), n);
  for (const n of ['a', 'a.9b', ':1.2']) t.notOk(isWellKnownName(n), n);
  t.ok(isBusName(':1.2') && isBusName('a.b'));
});
