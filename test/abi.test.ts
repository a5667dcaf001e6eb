// The ABI codec (lib/abi/kdbus.ts, lib/abi/items.ts) against the kernel:
// util.c kdbus_memdup_user / kdbus_check_and_write_flags, item.c
// kdbus_items_validate / kdbus_item_validate / kdbus_item_validate_name /
// kdbus_items_get, util.c kdbus_sysname_is_valid, and the ioctl numbers of
// include/uapi/linux/kdbus.h.
import t from 'tap';
import {
  ITEM, CMD, KDBUS_FLAG_KERNEL, KDBUS_IOCTL_MAGIC, ITEM_HEADER_SIZE, LIMITS, align8,
  CMD_MAKE, CMD_HELLO, CMD_SEND, CMD_RECV, CMD_FREE, CMD_NAME, CMD_NAME_LIST, CMD_INFO, CMD_UPDATE,
  CMD_MATCH, MSG, INFO, NAME_INFO,
  SIZEOF_VEC, SIZEOF_MEMFD, SIZEOF_BLOOM_PARAMETER, SIZEOF_BLOOM_FILTER, SIZEOF_POLICY_ACCESS,
  SIZEOF_NOTIFY_ID_CHANGE, SIZEOF_NOTIFY_NAME_CHANGE, SIZEOF_CREDS, SIZEOF_PIDS, SIZEOF_TIMESTAMP,
  SIZEOF_AUDIT,
} from '../lib/abi/kdbus.js';
import {
  commandBuffer, negotiateFlags, validateItems, singleItem, items, itemSysname, strValid, sysnameBytes,
  sysnameShown, sysnameValid, u64,
} from '../lib/abi/items.js';
import { errno } from '../lib/core/errors.js';
import { errnoOf, item, str } from './helpers.js';

const u64le = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

const zeros = (n: number): Buffer => Buffer.alloc(n);

const HDR = 32; // a kdbus_cmd_make-like header in front of the items, to test a non-zero start

/** validateItems over a command made of a 32-byte header and `parts`; null or the errno. */
function check(...parts: Buffer[]): number | null {
  const buf = Buffer.concat([zeros(HDR), ...parts]);
  return errnoOf(() => validateItems(buf, HDR, buf.length - HDR));
}
/** Same with an explicit items size (the command may end before the padding of the last item). */
function checkSized(itemsSize: number, ...parts: Buffer[]): number | null {
  const buf = Buffer.concat([zeros(HDR), ...parts]);
  return errnoOf(() => validateItems(buf.subarray(0, HDR + itemsSize), HDR, itemsSize));
}

t.test('commandBuffer (kdbus_memdup_user)', async (t) => {
  const MIN = 32;
  const MAX = 1024;
  const cmdOf = (size: number | bigint, len = Number(size)): Buffer => {
    const b = Buffer.alloc(len);
    b.writeBigUInt64LE(BigInt(size), 0);
    return b;
  };
  const head = (size: number | bigint): Buffer => u64le(size);

  t.test('a good command is returned as read', async (t) => {
    const c = cmdOf(40);
    t.equal(commandBuffer(0x1000, head(40), c, MIN, MAX), c);
    t.equal(commandBuffer(0x1000, head(MIN), cmdOf(MIN), MIN, MAX).length, MIN, 'size == min is fine');
    t.equal(commandBuffer(0x1000, head(MAX), cmdOf(MAX), MIN, MAX).length, MAX, 'size == max is fine');
  });

  t.test('EFAULT for an unaligned argument, before anything else', async (t) => {
    for (const arg of [0x1001, 0x1004, 0x1007, 1]) {
      t.equal(errnoOf(() => commandBuffer(arg, head(40), cmdOf(40), MIN, MAX)), errno.EFAULT, `arg 0x${arg.toString(16)}`);
    }
    // kdbus_copy_from_user of the size fails before the size is looked at
    t.equal(errnoOf(() => commandBuffer(0x1004, head(8), null, MIN, MAX)), errno.EFAULT, 'unaligned beats too small');
    t.equal(errnoOf(() => commandBuffer(0x1004, head(1n << 40n), null, MIN, MAX)), errno.EFAULT, 'unaligned beats too big');
  });

  t.test('EFAULT when the size itself could not be read', async (t) => {
    t.equal(errnoOf(() => commandBuffer(0x1000, Buffer.alloc(4), null, MIN, MAX)), errno.EFAULT);
    t.equal(errnoOf(() => commandBuffer(0x1000, Buffer.alloc(0), null, MIN, MAX)), errno.EFAULT);
  });

  t.test('EINVAL below min', async (t) => {
    t.equal(errnoOf(() => commandBuffer(0x1000, head(MIN - 1), cmdOf(MIN - 1), MIN, MAX)), errno.EINVAL);
    t.equal(errnoOf(() => commandBuffer(0x1000, head(0), null, MIN, MAX)), errno.EINVAL, 'size 0');
    t.equal(errnoOf(() => commandBuffer(0x1000, head(8), -errno.EFAULT, MIN, MAX)), errno.EINVAL,
      'the size is checked before the copy');
  });

  t.test('EMSGSIZE above max', async (t) => {
    t.equal(errnoOf(() => commandBuffer(0x1000, head(MAX + 1), null, MIN, MAX)), errno.EMSGSIZE);
    t.equal(errnoOf(() => commandBuffer(0x1000, head(0xffff_ffff_ffff_ffffn), null, MIN, MAX)), errno.EMSGSIZE, 'u64 max');
    t.equal(errnoOf(() => commandBuffer(0x1000, head(1n << 53n), -errno.ENOMEM, MIN, MAX)), errno.EMSGSIZE,
      'the size is checked before the copy');
  });

  t.test('errno of the native read passes through', async (t) => {
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), -errno.EFAULT, MIN, MAX)), errno.EFAULT);
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), -errno.ENOMEM, MIN, MAX)), errno.ENOMEM);
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), -errno.EIO, MIN, MAX)), errno.EIO);
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), null, MIN, MAX)), errno.EFAULT, 'not read at all');
  });

  t.test('EINVAL when the size changed between the two reads', async (t) => {
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), cmdOf(48, 40), MIN, MAX)), errno.EINVAL, 'size field grew');
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), cmdOf(32, 40), MIN, MAX)), errno.EINVAL, 'size field shrank');
    t.equal(errnoOf(() => commandBuffer(0x1000, head(40), cmdOf(40, 48), MIN, MAX)), errno.EINVAL, 'buffer of another length');
  });
});

t.test('negotiateFlags (kdbus_check_and_write_flags)', async (t) => {
  const VALID = 0b1011n;

  t.test('known flags: kernel_flags written, no error', async (t) => {
    const written: bigint[] = [];
    negotiateFlags(0b1001n, VALID, (v) => written.push(v));
    t.same(written, [VALID | KDBUS_FLAG_KERNEL]);
    const w2: bigint[] = [];
    negotiateFlags(0n, VALID, (v) => w2.push(v));
    t.same(w2, [VALID | KDBUS_FLAG_KERNEL], 'no flags at all');
  });

  t.test('unknown flags: kernel_flags written first, then EINVAL', async (t) => {
    const log: string[] = [];
    const e = errnoOf(() => {
      negotiateFlags(0b0100n, VALID, (v) => log.push(`write 0x${v.toString(16)}`));
      log.push('returned');
    });
    t.equal(e, errno.EINVAL);
    t.same(log, [`write 0x${(VALID | KDBUS_FLAG_KERNEL).toString(16)}`]);
  });

  t.test('KDBUS_FLAG_KERNEL is never a valid request flag', async (t) => {
    let got: bigint | null = null;
    t.equal(errnoOf(() => negotiateFlags(KDBUS_FLAG_KERNEL, VALID, (v) => { got = v; })), errno.EINVAL);
    t.equal(got, VALID | KDBUS_FLAG_KERNEL);
    t.equal(errnoOf(() => negotiateFlags(1n << 62n, VALID, () => undefined)), errno.EINVAL, 'a high bit');
  });
});

t.test('validateItems: structure (kdbus_items_validate)', async (t) => {
  t.equal(check(), null, 'no items');
  t.equal(check(item(ITEM.ID, u64le(1)), item(ITEM.NAME, str('a.b')), item(ITEM.CAPS, zeros(3))), null, 'several items');

  t.test('item size below the header', async (t) => {
    for (const s of [0, 1, 8, 15]) {
      const it = Buffer.alloc(16);
      it.writeBigUInt64LE(BigInt(s), 0);
      it.writeBigUInt64LE(BigInt(ITEM.CAPS), 8);
      t.equal(check(it), errno.EINVAL, `size ${s}`);
    }
  });

  t.test('item running past the end', async (t) => {
    t.equal(check(item(ITEM.CAPS, zeros(8), 32)), errno.EINVAL, 'size 32 in 24 bytes');
    t.equal(check(item(ITEM.CAPS, zeros(8), 25)), errno.EINVAL, 'one byte too many');
    t.equal(check(item(ITEM.CAPS, zeros(8), 0xffff_ffff_ffff_ffffn)), errno.EINVAL, 'u64 max');
    t.equal(check(item(ITEM.CAPS, zeros(8), 1n << 60n)), errno.EINVAL, 'huge');
    t.equal(check(item(ITEM.ID, u64le(1)), item(ITEM.CAPS, zeros(8), 40)), errno.EINVAL, 'the second one');
  });

  t.test('trailing garbage', async (t) => {
    t.equal(check(item(ITEM.ID, u64le(1)), zeros(8)), errno.EINVAL, 'zeros after the last item');
    t.equal(check(item(ITEM.ID, u64le(1)), zeros(16)), errno.EINVAL, 'a zero header after the last item');
    t.equal(check(zeros(8)), errno.EINVAL, 'less than a header');
    t.equal(checkSized(8, zeros(16)), errno.EINVAL, 'items size shorter than one header');
    // item of 24 bytes inside an items area of 30: the next one at 24 has no room
    t.equal(checkSized(30, item(ITEM.ID, u64le(1)), zeros(8)), errno.EINVAL, 'unaligned tail after a full item');
  });

  t.test('last item unaligned / padding', async (t) => {
    // MAKE_NAME "abcd\0": size 21, the command ends at 21 (padding not included)
    t.equal(checkSized(21, item(ITEM.MAKE_NAME, str('abcd'))), null, 'command ends at the unaligned item end');
    t.equal(checkSized(24, item(ITEM.MAKE_NAME, str('abcd'))), null, 'command includes the padding');
    t.equal(checkSized(22, item(ITEM.MAKE_NAME, str('abcd'))), null, 'command ends inside the padding');
    t.equal(check(item(ITEM.MAKE_NAME, str('abcd')), item(ITEM.ID, u64le(1))), null, 'unaligned item, then another');
  });

  t.test('first error wins', async (t) => {
    const badFd = Buffer.concat([u64le(0), u64le(10), Buffer.from([0xff, 0xff, 0xff, 0xff]), zeros(4)]);
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, badFd), item(ITEM.ID, zeros(4))), errno.EBADF);
    t.equal(check(item(ITEM.ID, zeros(4)), item(ITEM.PAYLOAD_MEMFD, badFd)), errno.EINVAL);
  });
});

t.test('validateItems: every item type (kdbus_item_validate)', async (t) => {
  t.test('PAYLOAD_VEC / PAYLOAD_OFF', async (t) => {
    for (const type of [ITEM.PAYLOAD_VEC, ITEM.PAYLOAD_OFF]) {
      t.equal(check(item(type, Buffer.concat([u64le(5), u64le(0x1000)]))), null, `${type}: good`);
      t.equal(check(item(type, Buffer.concat([u64le(0), u64le(0x1000)]))), errno.EINVAL, `${type}: size 0`);
      t.equal(check(item(type, u64le(5))), errno.EINVAL, `${type}: 8 bytes`);
      t.equal(check(item(type, zeros(24))), errno.EINVAL, `${type}: 24 bytes`);
      t.equal(check(item(type)), errno.EINVAL, `${type}: empty`);
    }
  });

  t.test('PAYLOAD_MEMFD', async (t) => {
    const memfd = (size: bigint, fd: number): Buffer => {
      const b = Buffer.alloc(SIZEOF_MEMFD);
      b.writeBigUInt64LE(0n, 0);
      b.writeBigUInt64LE(size, 8);
      b.writeInt32LE(fd, 16);
      return b;
    };
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(10n, 3))), null, 'good');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(10n, 0))), null, 'fd 0');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(10n, -1))), errno.EBADF, 'fd -1');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(10n, -2147483648))), errno.EBADF, 'fd INT_MIN');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(0n, 3))), errno.EINVAL, 'size 0');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(0n, -1))), errno.EINVAL, 'size 0 is checked before the fd');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, memfd(10n, 3).subarray(0, 16))), errno.EINVAL, '16 bytes');
    t.equal(check(item(ITEM.PAYLOAD_MEMFD, Buffer.concat([memfd(10n, 3), zeros(8)]))), errno.EINVAL, '32 bytes');
  });

  t.test('FDS, AUXGROUPS: multiples of 4', async (t) => {
    for (const type of [ITEM.FDS, ITEM.AUXGROUPS]) {
      for (const n of [0, 4, 12, 8 * 253]) t.equal(check(item(type, zeros(n))), null, `${type}: ${n}`);
      for (const n of [1, 2, 6, 7]) t.equal(check(item(type, zeros(n))), errno.EINVAL, `${type}: ${n}`);
    }
  });

  t.test('fixed sizes', async (t) => {
    const fixed: Array<[string, number, number]> = [
      ['CANCEL_FD', ITEM.CANCEL_FD, 4],
      ['BLOOM_PARAMETER', ITEM.BLOOM_PARAMETER, SIZEOF_BLOOM_PARAMETER],
      ['ATTACH_FLAGS_SEND', ITEM.ATTACH_FLAGS_SEND, 8],
      ['ATTACH_FLAGS_RECV', ITEM.ATTACH_FLAGS_RECV, 8],
      ['ID', ITEM.ID, 8],
      ['TIMESTAMP', ITEM.TIMESTAMP, SIZEOF_TIMESTAMP],
      ['CREDS', ITEM.CREDS, SIZEOF_CREDS],
      ['AUDIT', ITEM.AUDIT, SIZEOF_AUDIT],
      ['POLICY_ACCESS', ITEM.POLICY_ACCESS, SIZEOF_POLICY_ACCESS],
      ['ID_ADD', ITEM.ID_ADD, SIZEOF_NOTIFY_ID_CHANGE],
      ['ID_REMOVE', ITEM.ID_REMOVE, SIZEOF_NOTIFY_ID_CHANGE],
      ['REPLY_TIMEOUT', ITEM.REPLY_TIMEOUT, 0],
      ['REPLY_DEAD', ITEM.REPLY_DEAD, 0],
    ];
    for (const [name, type, size] of fixed) {
      t.equal(check(item(type, zeros(size))), null, `${name}: ${size}`);
      for (const bad of [size - 4, size - 1, size + 1, size + 4, size + 8, 0]) {
        if (bad < 0 || bad === size) continue;
        t.equal(check(item(type, zeros(bad))), errno.EINVAL, `${name}: ${bad}`);
      }
    }
  });

  t.test('BLOOM_FILTER: at least the generation', async (t) => {
    t.equal(check(item(ITEM.BLOOM_FILTER, zeros(8))), null, 'generation only');
    t.equal(check(item(ITEM.BLOOM_FILTER, zeros(8 + 64))), null, 'generation + 64 bytes');
    t.equal(check(item(ITEM.BLOOM_FILTER, zeros(13))), null, 'odd size (the bus checks the bloom size later)');
    t.equal(check(item(ITEM.BLOOM_FILTER, zeros(7))), errno.EINVAL, '7');
    t.equal(check(item(ITEM.BLOOM_FILTER)), errno.EINVAL, 'empty');
  });

  t.test('unchecked types: BLOOM_MASK, CAPS, PIDS, OWNED_NAME, unknown', async (t) => {
    for (const [name, type] of [['BLOOM_MASK', ITEM.BLOOM_MASK], ['CAPS', ITEM.CAPS], ['PIDS', ITEM.PIDS],
      ['OWNED_NAME', ITEM.OWNED_NAME], ['0', 0], ['0x9999', 0x9999], ['0x100e', 0x100e]] as const) {
      for (const n of [0, 3, 8, SIZEOF_PIDS + 1]) t.equal(check(item(type, zeros(n))), null, `${name}: ${n}`);
    }
    t.equal(check(item(0xffff_ffff_ffff_ffffn, zeros(3))), null, 'type u64 max');
    t.equal(check(item((1n << 32n) | BigInt(ITEM.ID), zeros(3))), null, 'type with high bits is not ID');
  });

  t.test('string items', async (t) => {
    const types: Array<[string, number]> = [['NAME', ITEM.NAME], ['DST_NAME', ITEM.DST_NAME],
      ['PID_COMM', ITEM.PID_COMM], ['TID_COMM', ITEM.TID_COMM], ['EXE', ITEM.EXE], ['CMDLINE', ITEM.CMDLINE],
      ['CGROUP', ITEM.CGROUP], ['SECLABEL', ITEM.SECLABEL]];
    for (const [name, type] of types) {
      t.equal(check(item(type, str('org.foo.bar'))), null, `${name}: terminated`);
      t.equal(check(item(type, str(''))), null, `${name}: just the NUL`);
      t.equal(check(item(type, str('x'.repeat(300)))), null, `${name}: long`);
      t.equal(check(item(type)), errno.EINVAL, `${name}: empty payload`);
      t.equal(check(item(type, Buffer.from('abc'))), errno.EINVAL, `${name}: unterminated`);
      t.equal(check(item(type, Buffer.from('abc')), item(ITEM.ID, u64le(0))), errno.EINVAL,
        `${name}: unterminated, NULs in the next item do not count`);
      t.equal(check(item(type, Buffer.from('a\0b\0'))), errno.EINVAL, `${name}: embedded NUL`);
      t.equal(check(item(type, Buffer.from('ab\0\0'))), errno.EINVAL, `${name}: two NULs at the end`);
    }
  });

  t.test('NAME_ADD / NAME_REMOVE / NAME_CHANGE', async (t) => {
    for (const type of [ITEM.NAME_ADD, ITEM.NAME_REMOVE, ITEM.NAME_CHANGE]) {
      const ids = zeros(SIZEOF_NOTIFY_NAME_CHANGE);
      t.equal(check(item(type, ids)), null, `${type}: no name`);
      t.equal(check(item(type, Buffer.concat([ids, str('foo.bar')]))), null, `${type}: with a name`);
      t.equal(check(item(type, Buffer.concat([ids, str('')]))), null, `${type}: empty name`);
      t.equal(check(item(type, zeros(24))), errno.EINVAL, `${type}: 24 bytes`);
      t.equal(check(item(type, zeros(16))), errno.EINVAL, `${type}: 16 bytes`);
      t.equal(check(item(type)), errno.EINVAL, `${type}: empty`);
      t.equal(check(item(type, Buffer.concat([ids, Buffer.from('foo')]))), errno.EINVAL, `${type}: unterminated`);
      t.equal(check(item(type, Buffer.concat([ids, Buffer.from('f\0o\0')]))), errno.EINVAL, `${type}: embedded NUL`);
    }
  });

  t.test('MAKE_NAME / CONN_DESCRIPTION (kdbus_item_validate_name)', async (t) => {
    for (const [tn, type] of [['MAKE_NAME', ITEM.MAKE_NAME], ['CONN_DESCRIPTION', ITEM.CONN_DESCRIPTION]] as const) {
      const name = (s: string | Buffer): number | null => check(item(type, typeof s === 'string' ? str(s) : s));
      t.equal(name('1000-mybus'), null, `${tn}: uid-prefixed`);
      t.equal(name('a'), null, `${tn}: one char (size 18)`);
      t.equal(name('x'.repeat(LIMITS.SYSNAME_MAX_LEN)), null, `${tn}: 63 chars (size 80)`);
      t.equal(name('x'.repeat(LIMITS.SYSNAME_MAX_LEN + 1)), errno.ENAMETOOLONG, `${tn}: 64 chars`);
      t.equal(name('x'.repeat(300)), errno.ENAMETOOLONG, `${tn}: 300 chars`);
      t.equal(name(Buffer.from('x'.repeat(70))), errno.ENAMETOOLONG, `${tn}: too long is checked before termination`);
      t.equal(name(''), errno.EINVAL, `${tn}: empty string (size 17)`);
      t.equal(name(Buffer.alloc(0)), errno.EINVAL, `${tn}: no payload (size 16)`);
      t.equal(name(Buffer.from('ab')), errno.EINVAL, `${tn}: unterminated`);
      t.equal(name(Buffer.from('a\0b\0')), errno.EINVAL, `${tn}: embedded NUL`);
      t.equal(name(Buffer.from('\0\0')), errno.EINVAL, `${tn}: NUL NUL`);
      // kdbus_sysname_is_valid: [A-Za-z0-9_], '-' and '.' only inside
      for (const ok of ['a-b', 'a.b', 'a_b', '_', '__', '9', '0abc', 'A.b-C_d.9', 'a--b', 'a..b', '_-_']) {
        t.equal(name(ok), null, `${tn}: "${ok}" valid`);
      }
      for (const bad of ['-', '.', '-ab', 'ab-', '.ab', 'ab.', 'a b', 'a/b', 'a:b', 'a*', 'a+b', 'a\tb', 'é', 'aé']) {
        t.equal(name(bad), errno.EINVAL, `${tn}: "${bad}" invalid`);
      }
    }
  });

  t.test('sysname: bytes the kernel isalpha() accepts (Latin-1 _ctype)', async (t) => {
    // lib/ctype.c marks 0xC0-0xD6, 0xD8-0xF6, 0xF8-0xFF as _U/_L, so
    // kdbus_sysname_is_valid() accepts e.g. the raw byte 0xE9; UTF-8 'é'
    // (0xC3 0xA9) is rejected because 0xA9 is _P (tested above).
    const raw = (...bytes: number[]): Buffer => Buffer.from([...bytes, 0]);
    for (const [tn, type] of [['MAKE_NAME', ITEM.MAKE_NAME], ['CONN_DESCRIPTION', ITEM.CONN_DESCRIPTION]] as const) {
      t.equal(check(item(type, raw(0x62, 0x75, 0x73, 0xe9))), null, `${tn}: "bus\\xE9"`);
      t.equal(check(item(type, raw(0xe9, 0x2d, 0xff))), null, `${tn}: "\\xE9-\\xFF" ('-' inside)`);
      t.equal(check(item(type, raw(0x61, 0xd7))), errno.EINVAL, `${tn}: 0xD7 (multiplication sign) is _P`);
      t.equal(check(item(type, raw(0x61, 0xa9))), errno.EINVAL, `${tn}: 0xA9 is _P`);
    }
    // every single-byte name: letters of the Latin-1 table, digits, '_'
    const letter = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
      (c >= 0xc0 && c <= 0xd6) || (c >= 0xd8 && c <= 0xf6) || (c >= 0xf8 && c <= 0xff);
    const wrong: number[] = [];
    for (let c = 1; c < 256; c++) {
      const want = letter(c) || (c >= 0x30 && c <= 0x39) || c === 0x5f ? null : errno.EINVAL;
      if (check(item(ITEM.MAKE_NAME, raw(c))) !== want) wrong.push(c);
    }
    t.same(wrong, [], 'bytes 1-255 as one-byte names: accepted exactly when isalpha, isdigit or \'_\'');
  });
});

t.test('singleItem (kdbus_items_get)', async (t) => {
  const buf = Buffer.concat([zeros(HDR), item(ITEM.ID, u64le(7)), item(ITEM.MAKE_NAME, str('bus1')), item(ITEM.CAPS, zeros(4))]);
  const size = buf.length - HDR;
  validateItems(buf, HDR, size);
  const it = singleItem(buf, HDR, size, ITEM.MAKE_NAME);
  t.equal(it.type, ITEM.MAKE_NAME);
  t.equal(it.off, HDR + 24);
  t.equal(it.size, 16 + 5);
  t.equal(it.data, HDR + 24 + 16);
  t.equal(it.len, 5);
  t.equal(itemSysname(buf, it), 'bus1');
  t.equal(buf.readBigUInt64LE(singleItem(buf, HDR, size, ITEM.ID).data), 7n);

  t.equal(errnoOf(() => singleItem(buf, HDR, size, ITEM.NAME)), errno.EBADMSG, 'missing');
  t.equal(errnoOf(() => singleItem(buf, HDR, 0, ITEM.ID)), errno.EBADMSG, 'no items at all');
  const twice = Buffer.concat([zeros(HDR), item(ITEM.MAKE_NAME, str('a')), item(ITEM.ID, u64le(1)), item(ITEM.MAKE_NAME, str('b'))]);
  t.equal(errnoOf(() => singleItem(twice, HDR, twice.length - HDR, ITEM.MAKE_NAME)), errno.EEXIST, 'twice');
  t.equal(singleItem(twice, HDR, twice.length - HDR, ITEM.ID).type, ITEM.ID, 'other types are not confused');
  t.equal(errnoOf(() => singleItem(buf, HDR, 24, ITEM.MAKE_NAME)), errno.EBADMSG, 'only the given range is searched');
});

t.test('items() iteration', async (t) => {
  const buf = Buffer.concat([zeros(HDR), item(ITEM.MAKE_NAME, str('abcd')), item(ITEM.ID, u64le(9))]);
  const got = [...items(buf, HDR, buf.length - HDR)].map((i) => [i.type, i.off, i.size, i.len]);
  t.same(got, [[ITEM.MAKE_NAME, HDR, 21, 5], [ITEM.ID, HDR + 24, 24, 8]], 'steps by the aligned size');
});

t.test('helpers', async (t) => {
  t.test('strValid (kdbus_str_valid)', async (t) => {
    const b = Buffer.from('ab\0cd\0');
    t.ok(strValid(b, 0, 3));
    t.ok(strValid(b, 3, 3));
    t.ok(strValid(b, 2, 1), 'just the NUL');
    t.notOk(strValid(b, 0, 0), 'size 0');
    t.notOk(strValid(b, 0, 2), 'NUL past the size');
    t.notOk(strValid(b, 0, 6), 'NUL before the end');
    t.notOk(strValid(Buffer.from('abc'), 0, 3), 'no NUL at all');
  });

  t.test('sysnameValid', async (t) => {
    t.ok(sysnameValid('a'));
    t.ok(sysnameValid('1-a.b_c'));
    t.notOk(sysnameValid(''));
    t.notOk(sysnameValid('a-'));
    t.notOk(sysnameValid('.a'));
    t.ok(sysnameValid('1000-bus\xe9'), 'a byte string with a Latin-1 letter');
    t.notOk(sysnameValid('a\u0100'), 'a char above 0xFF is no byte');
  });

  t.test('sysnames are byte strings', async (t) => {
    const bytes = Buffer.from([0x31, 0x2d, 0x62, 0xe9, 0xff, 0]);
    const buf = Buffer.concat([zeros(HDR), item(ITEM.CONN_DESCRIPTION, bytes)]);
    const it = singleItem(buf, HDR, buf.length - HDR, ITEM.CONN_DESCRIPTION);
    const name = itemSysname(buf, it);
    t.equal(name, '1-b\xe9\xff', 'one char per byte');
    t.same(sysnameBytes(name), bytes.subarray(0, 5), 'the same bytes back');
    t.equal(sysnameShown(name), '1-b\\xE9\\xFF', 'logged with the bytes escaped');
    t.equal(sysnameShown('a b\t'), 'a b\\x09');
  });

  t.test('u64 saturates', async (t) => {
    t.equal(u64(u64le(42), 0), 42);
    t.equal(u64(u64le(BigInt(Number.MAX_SAFE_INTEGER)), 0), Number.MAX_SAFE_INTEGER);
    t.equal(u64(u64le(0xffff_ffff_ffff_ffffn), 0), Number.MAX_SAFE_INTEGER);
  });

  t.test('align8 (KDBUS_ALIGN8)', async (t) => {
    t.equal(align8(0), 0);
    t.equal(align8(1), 8);
    t.equal(align8(8), 8);
    t.equal(align8(9), 16);
    t.equal(align8(0x7fff_fff0), 0x7fff_fff0);
  });

  t.test('align8 beyond 31 bits (size_t arithmetic in the kernel)', async (t) => {
    t.equal(align8(2 ** 31), 2 ** 31, '2^31');
    t.equal(align8(2 ** 32), 2 ** 32, '2^32');
    t.equal(align8(2 ** 32 + 1), 2 ** 32 + 8, '2^32 + 1');
  });
});

t.test('ioctl numbers and struct layouts (include/uapi/linux/kdbus.h)', async (t) => {
  // struct layouts transcribed from kdbus.h: [member, size in bytes]
  type Layout = Array<[string, number]>;
  // struct kdbus_msg_info { u64 offset; u64 msg_size; u64 return_flags; } is embedded as
  // `reply` in kdbus_cmd_send and `msg` in kdbus_cmd_recv; kdbus.ts flattens its members.
  const structs: Record<string, Layout> = {
    kdbus_cmd_make: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8]],
    kdbus_cmd_hello: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8],
      ['attach_flags_send', 8], ['attach_flags_recv', 8], ['bus_flags', 8], ['id', 8], ['pool_size', 8],
      ['offset', 8], ['items_size', 8], ['id128', 16]],
    kdbus_cmd_send: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['kernel_msg_flags', 8],
      ['return_flags', 8], ['msg_address', 8], ['reply_offset', 8], ['reply_msg_size', 8],
      ['reply_return_flags', 8]],
    kdbus_cmd_recv: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8], ['priority', 8],
      ['dropped_msgs', 8], ['msg_offset', 8], ['msg_size', 8], ['msg_return_flags', 8]],
    kdbus_cmd_free: [['size', 8], ['offset', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8]],
    kdbus_cmd_name: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8]],
    kdbus_cmd_name_list: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8], ['offset', 8],
      ['list_size', 8]],
    kdbus_cmd_info: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8], ['id', 8],
      ['offset', 8], ['info_size', 8]],
    kdbus_cmd_update: [['size', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8]],
    kdbus_cmd_match: [['size', 8], ['cookie', 8], ['flags', 8], ['kernel_flags', 8], ['return_flags', 8]],
    kdbus_msg: [['size', 8], ['flags', 8], ['priority', 8], ['dst_id', 8], ['src_id', 8], ['payload_type', 8],
      ['cookie', 8], ['timeout_ns', 8]],
    kdbus_info: [['size', 8], ['id', 8], ['flags', 8]],
    kdbus_name_info: [['size', 8], ['conn_flags', 8], ['owner_id', 8]],
  };
  // all members are u64/s64 or u8[16]: offsets are running sums, sizeof aligned(8)
  const offsets = (l: Layout): Record<string, number> => {
    const o: Record<string, number> = {};
    let at = 0;
    for (const [n, s] of l) {
      o[n] = at;
      at += s;
    }
    o.items = at;
    return o;
  };
  const sizeOf = (name: string): number => align8(offsets(structs[name]!).items);

  t.test('ioctl numbers', async (t) => {
    const IOC_NRBITS = 8, IOC_TYPEBITS = 8, IOC_SIZEBITS = 14;
    const IOC_NRSHIFT = 0;
    const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
    const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
    const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
    const IOC_NONE = 0n, IOC_WRITE = 1n, IOC_READ = 2n;
    const IOC = (dir: bigint, type: number, nr: number, size: number): number =>
      Number((dir << BigInt(IOC_DIRSHIFT)) | (BigInt(size) << BigInt(IOC_SIZESHIFT)) |
        (BigInt(type) << BigInt(IOC_TYPESHIFT)) | (BigInt(nr) << BigInt(IOC_NRSHIFT)));
    const M = 0x95;
    const IO = (nr: number): number => IOC(IOC_NONE, M, nr, 0);
    const IOW = (nr: number, s: string): number => IOC(IOC_WRITE, M, nr, sizeOf(s));
    const IOWR = (nr: number, s: string): number => IOC(IOC_READ | IOC_WRITE, M, nr, sizeOf(s));

    t.equal(KDBUS_IOCTL_MAGIC, M);
    t.equal(sizeOf('kdbus_cmd_hello'), 104);
    t.equal(IOWR(0x20, 'kdbus_cmd_hello'), 0xc0689520, 'HELLO sanity check');

    const expected: Record<keyof typeof CMD, number> = {
      BUS_MAKE: IOW(0x00, 'kdbus_cmd_make'),
      ENDPOINT_MAKE: IOW(0x10, 'kdbus_cmd_make'),
      HELLO: IOWR(0x20, 'kdbus_cmd_hello'),
      BYEBYE: IO(0x21),
      SEND: IOWR(0x30, 'kdbus_cmd_send'),
      RECV: IOWR(0x31, 'kdbus_cmd_recv'),
      FREE: IOW(0x32, 'kdbus_cmd_free'),
      NAME_ACQUIRE: IOWR(0x40, 'kdbus_cmd_name'),
      NAME_RELEASE: IOW(0x41, 'kdbus_cmd_name'),
      NAME_LIST: IOWR(0x42, 'kdbus_cmd_name_list'),
      CONN_INFO: IOWR(0x50, 'kdbus_cmd_info'),
      CONN_UPDATE: IOW(0x51, 'kdbus_cmd_update'),
      BUS_CREATOR_INFO: IOWR(0x52, 'kdbus_cmd_info'),
      ENDPOINT_UPDATE: IOW(0x61, 'kdbus_cmd_update'),
      MATCH_ADD: IOW(0x70, 'kdbus_cmd_match'),
      MATCH_REMOVE: IOW(0x71, 'kdbus_cmd_match'),
    };
    t.same(Object.keys(CMD).sort(), Object.keys(expected).sort(), 'every command is there');
    for (const [k, v] of Object.entries(expected)) {
      t.equal(CMD[k as keyof typeof CMD], v, `${k} = 0x${v.toString(16)}`);
    }
    // a few spelled-out values
    t.equal(CMD.BYEBYE, 0x9521);
    t.equal(CMD.BUS_MAKE, 0x40209500);
    t.equal(CMD.SEND, 0xc0489530);
    t.equal(CMD.MATCH_ADD, 0x40289570);
  });

  t.test('struct member offsets', async (t) => {
    t.same({ ...CMD_MAKE }, offsets(structs.kdbus_cmd_make!), 'kdbus_cmd_make');
    t.same({ ...CMD_HELLO }, offsets(structs.kdbus_cmd_hello!), 'kdbus_cmd_hello');
    t.same({ ...CMD_SEND }, offsets(structs.kdbus_cmd_send!), 'kdbus_cmd_send');
    t.same({ ...CMD_RECV }, offsets(structs.kdbus_cmd_recv!), 'kdbus_cmd_recv');
    t.same({ ...CMD_FREE }, offsets(structs.kdbus_cmd_free!), 'kdbus_cmd_free');
    t.same({ ...CMD_NAME }, offsets(structs.kdbus_cmd_name!), 'kdbus_cmd_name');
    t.same({ ...CMD_NAME_LIST }, offsets(structs.kdbus_cmd_name_list!), 'kdbus_cmd_name_list');
    t.same({ ...CMD_INFO }, offsets(structs.kdbus_cmd_info!), 'kdbus_cmd_info');
    t.same({ ...CMD_UPDATE }, offsets(structs.kdbus_cmd_update!), 'kdbus_cmd_update');
    t.same({ ...CMD_MATCH }, offsets(structs.kdbus_cmd_match!), 'kdbus_cmd_match');
    t.same({ ...MSG }, offsets(structs.kdbus_msg!), 'kdbus_msg');
    t.same({ ...INFO }, offsets(structs.kdbus_info!), 'kdbus_info');
    t.same({ ...NAME_INFO }, offsets(structs.kdbus_name_info!), 'kdbus_name_info');
  });

  t.test('item payload sizes', async (t) => {
    t.equal(ITEM_HEADER_SIZE, 16, 'kdbus_item: u64 size, u64 type');
    t.equal(SIZEOF_VEC, 8 + 8, 'kdbus_vec');
    t.equal(SIZEOF_MEMFD, 8 + 8 + 4 + 4, 'kdbus_memfd');
    t.equal(SIZEOF_BLOOM_PARAMETER, 8 + 8, 'kdbus_bloom_parameter');
    t.equal(SIZEOF_BLOOM_FILTER, 8, 'kdbus_bloom_filter (generation)');
    t.equal(SIZEOF_POLICY_ACCESS, 3 * 8, 'kdbus_policy_access');
    t.equal(SIZEOF_NOTIFY_ID_CHANGE, 8 + 8, 'kdbus_notify_id_change');
    t.equal(SIZEOF_NOTIFY_NAME_CHANGE, 2 * (8 + 8), 'kdbus_notify_name_change');
    t.equal(SIZEOF_CREDS, 8 * 4, 'kdbus_creds');
    t.equal(SIZEOF_PIDS, 3 * 8, 'kdbus_pids');
    t.equal(SIZEOF_TIMESTAMP, 3 * 8, 'kdbus_timestamp');
    t.equal(SIZEOF_AUDIT, 4 + 4, 'kdbus_audit');
  });
});
