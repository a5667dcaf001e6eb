// The Node half of the every-type exchange with sd-bus 2015
// (test/clients/sdbus-types.c has the C half): the same constants, the same
// interface org.kdbusfs.Types, and the exact comparison. Imported by
// types-service.mjs and types-caller.mjs; not a test itself.
import { isDeepStrictEqual } from 'node:util';

export const IFACE = 'org.kdbusfs.Types';
export const PATH = '/org/kdbusfs/Types';
export const SIG = 'ybnqiuxtdsogvaiasaya{sv}a(yd)a{ys}aai(xa{ss})av';
export const BIG = 1 << 20;

/** The constants of SIG, as kdbusfs/client decodes them (see lib/client/variant.ts). */
export function values(Variant) {
  return [
    200, true, -12345, 54321, -2000000000, 4000000000,
    -9000000000000000000n, 18000000000000000000n, 3.25,
    'héllo wörld ✓', '/org/kdbusfs/Path/x1', 'a{sv}(ii)',
    new Variant('v', new Variant('s', 'deep')),
    [1, -2, 2147483647],
    [],
    Buffer.from([0, 1, 2, 255]),
    new Map([['one', new Variant('u', 1)], ['two', new Variant('as', ['a', 'b'])]]),
    [[1, 0.5], [2, -1.5]],
    new Map([[1, 'x'], [2, '']]),
    [[1], [], [2, 3]],
    [-5n, new Map()],
    [new Variant('i', 1), new Variant('s', 'two'), new Variant('ay', Buffer.alloc(0))],
  ];
}

const show = (v) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x instanceof Map ? [...x] : x));

/** '' when got equals the constants exactly (types included), else the first argument that differs. */
export function differences(Variant, got) {
  const want = values(Variant);
  if (got.length !== want.length) return `${got.length} arguments, not ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (!isDeepStrictEqual(got[i], want[i])) return `argument ${i} (${SIG}): ${show(got[i])}, not ${show(want[i])}`;
  }
  return '';
}

export function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}
