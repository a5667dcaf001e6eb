// In process: busctl's command-line value syntax read into D-Bus values, and
// values written back as busctl prints them (one-line and JSON forms), the
// round trip through GVariant included; --json's exact numbers.
import t from 'tap';
import { ArgumentError, parseArguments } from '../../lib/commands/dbus-arguments.js';
import { formatLine, jsonBody, jsonValue } from '../../lib/commands/dbus-values.js';
import { toJson } from '../../lib/commands/json-output.js';
import { decodeBody, encodeBody } from '../../lib/client/gvariant.js';
import { Variant } from '../../lib/client/variant.js';

/** words -> values -> GVariant -> values -> busctl's line. */
function roundTrip(signature: string, words: string[]): string {
  const values = parseArguments(signature, words);
  return formatLine(signature, decodeBody(signature, encodeBody(signature, values)));
}

t.test('busctl argument syntax, printed back the same way', async (t) => {
  t.equal(roundTrip('s', ['hi there']), 's "hi there"');
  t.equal(roundTrip('ai', ['3', '1', '-2', '3']), 'ai 3 1 -2 3');
  t.equal(roundTrip('a{sv}', ['2', 'one', 'u', '1', 'two', 's', 'zwei']), 'a{sv} 2 "one" u 1 "two" s "zwei"');
  t.equal(roundTrip('(isb)', ['5', 'five', 'yes']), '(isb) 5 "five" true');
  t.equal(roundTrip('ay', ['3', '0', '127', '255']), 'ay 3 0 127 255');
  t.equal(roundTrip('tx', ['18446744073709551615', '-9223372036854775808']), 'tx 18446744073709551615 -9223372036854775808');
  t.equal(roundTrip('d', ['0.1']), 'd 0.1');
  t.equal(roundTrip('d', ['1234567']), 'd 1.23457e+06', 'doubles as %g');
  t.equal(roundTrip('v', ['as', '2', 'a', 'b']), 'v as 2 "a" "b"');
  t.equal(roundTrip('og', ['/a/b', 'a{sv}']), 'og "/a/b" "a{sv}"');
  t.equal(roundTrip('s', ['quote " back\\ nl\n']), 's "quote \\" back\\\\ nl\\n"', 'strings C-escaped');
});

t.test('arguments that do not fit their signature are refused, saying why', async (t) => {
  const refused = (sig: string, words: string[], why: RegExp): void => {
    t.throws(() => parseArguments(sig, words), { constructor: ArgumentError, message: why }, `${sig} ${words.join(' ')}`);
  };
  refused('i', [], /too few arguments/);
  refused('i', ['1', '2'], /too many arguments/);
  refused('i', ['x'], /cannot parse 'x' as a signed 32-bit integer/);
  refused('y', ['256'], /out of range for a byte/);
  refused('u', ['-1'], /out of range/);
  refused('b', ['maybe'], /boolean/);
  refused('ai', ['3', '1'], /claims 3 entries/);
  refused('a{', ['1'], /invalid signature/);
  refused('v', ['ii', '1', '2'], /one complete type/);
  refused('h', ['3'], /file descriptors/);
  refused('d', ['one'], /double/);
});

t.test('JSON forms as busctl --json: type and data, 64-bit numbers exact', async (t) => {
  const body = parseArguments('sa{sv}t', ['x', '1', 'k', 'i', '-3', '18446744073709551615']);
  t.equal(toJson(jsonBody('sa{sv}t', body)),
    '{"type":"sa{sv}t","data":["x",{"k":{"type":"i","data":-3}},18446744073709551615]}');
  t.equal(toJson(jsonValue(new Variant('(ub)', [7, false]))), '{"type":"(ub)","data":[7,false]}');
  t.equal(toJson({ b: Buffer.from([1, 2]), n: undefined, z: null }, 2), '{\n  "b": [\n    1,\n    2\n  ],\n  "z": null\n}');
  t.same(JSON.parse(toJson({ id: 5n, list: [1n, 'a'] })), { id: 5, list: [1, 'a'] }, 'bigints are JSON numbers');
});
