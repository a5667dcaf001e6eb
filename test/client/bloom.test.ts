// SipHash-2-4 against its published reference vectors, and sd-bus's signal
// bloom filters (lib/client/bloom.ts) against the filters the real sd-bus of
// February 2015 computed (bus_message_setup_bloom; printed by
// test/client/sdbus-reference/vectors.c) for the same signals on a bus with
// its default parameters (64 bytes, 8 hashes).
import t from 'tap';
import {
  BloomFilter, DEFAULT_BLOOM_PARAMETERS, signalBloomFilter, validBloomParameters,
} from '../../lib/client/bloom.js';
import { signal, type DBusMessage } from '../../lib/client/dbus-message.js';
import { siphash24 } from '../../lib/client/siphash24.js';

const SDBUS = {
  echoed: '62000000200200001110140040542000320400800050008000000022060480008c0300008b002481000004400001008010008801100080080000400003050040',
  nameOwnerChanged: '021008080400006c18000404441000207084802000000102e00080a02004500226010022822920210000020800200082112000411a00020000020104014040a2',
  args: '34082000990100000a0500144030014098240840400000004a150004300028011119000804103003018002024e8012c018083ac2094122b9046c010001000560',
  stop: '28000000000001000000000040300100180410000808000000040004000020001201000840042001200000000000008014000a80090002180400000000000400',
};

t.test('siphash24 gives the reference vectors', async t => {
  // key 00..0f, message 00..n-1 (SipHash paper and reference implementation)
  const key = Buffer.from(Array.from({ length: 16 }, (_, i) => i));
  const message = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i));
  t.equal(siphash24(message(0), key).toString('hex'), '310e0edd47db6f72');
  t.equal(siphash24(message(15), key).toString('hex'), 'e545be4961ca29a1', 'the paper\'s worked example');
  t.equal(siphash24(message(1), key).toString('hex'), 'fd67dc93c539f874');
  t.equal(siphash24(message(7), key).toString('hex'), '37d1018bf50002ab');
  t.equal(siphash24(message(8), key).toString('hex'), '6224939a79f5f593', 'one whole block');
  t.equal(siphash24(message(63), key).toString('hex'), '724506eb4c328a95');
  t.throws(() => siphash24(message(1), message(8)), RangeError);
});

const sig = (o: Partial<DBusMessage> & { path: string; interface: string; member: string }): DBusMessage =>
  ({ ...signal(o), signature: o.signature ?? '', body: o.body ?? [], cookie: 1 });

t.test('signal filters are the bits sd-bus set', async t => {
  const cases: [keyof typeof SDBUS, DBusMessage][] = [
    ['echoed', sig({ path: '/org/kdbusfs/Example', interface: 'org.kdbusfs.Example', member: 'Echoed', signature: 's', body: ['hello'] })],
    ['nameOwnerChanged', sig({ path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged',
      signature: 'sss', body: ['org.foo.Bar', '', ':1.5'] })],
    // string arrays go in and the first plain string ends the list ('g' and 'after' stay out)
    ['args', sig({ path: '/a/b/c', interface: 'x.y', member: 'Z', signature: 'asogsu', body: [['p.q.r', '/s/t'], '/o/p', 'ss', 'after', 1] })],
    // the first argument that is no string ends it
    ['stop', sig({ path: '/', interface: 'x.y', member: 'Z', signature: 'us', body: [1, 'not-in-bloom'] })],
  ];
  for (const [name, m] of cases) {
    t.equal(signalBloomFilter(m, DEFAULT_BLOOM_PARAMETERS).bytes.toString('hex'), SDBUS[name], name);
  }
});

t.test('a filter holds what was added, under the recipe\'s names', async t => {
  const f = signalBloomFilter(sig({ path: '/a/b/c', interface: 'x.y', member: 'Z', signature: 'as', body: [['p.q.r']] }),
    DEFAULT_BLOOM_PARAMETERS);
  const holds = (a: string, b: string): boolean => {
    const probe = new BloomFilter(DEFAULT_BLOOM_PARAMETERS);
    probe.addPair(a, b);
    return probe.bytes.every((byte, i) => (byte & f.bytes[i]!) === byte);
  };
  for (const [a, b] of [['message-type', 'signal'], ['interface', 'x.y'], ['member', 'Z'], ['path', '/a/b/c'],
    ['path-slash-prefix', '/a/b/c'], ['path-slash-prefix', '/a/b'], ['path-slash-prefix', '/a'], ['arg0', 'p.q.r'],
    ['arg0-dot-prefix', 'p.q'], ['arg0-dot-prefix', 'p']]) {
    t.ok(holds(a!, b!), `${a}:${b}`);
  }
  t.notOk(holds('arg0-dot-prefix', 'p.q.r'), 'a value is not its own dot prefix');
  t.notOk(holds('member', 'Y'));
});

t.test('parameters', async t => {
  t.ok(validBloomParameters(DEFAULT_BLOOM_PARAMETERS));
  t.ok(validBloomParameters({ size: 4096, nHash: 32 }), '2-byte indexes, 64 bytes of hash');
  t.notOk(validBloomParameters({ size: 4096, nHash: 33 }), 'more hash than the 8 keys give');
  t.notOk(validBloomParameters({ size: 0, nHash: 1 }));
  t.notOk(validBloomParameters({ size: 64, nHash: 0 }));
  t.notOk(validBloomParameters({ size: 12, nHash: 1 }), 'not whole u64 words');
  t.notOk(validBloomParameters({ size: 8192, nHash: 1 }), 'past kdbus\'s maximum');
  t.throws(() => new BloomFilter({ size: 0, nHash: 1 }), /not usable/);
  const small = signalBloomFilter(sig({ path: '/', interface: 'a.b', member: 'C' }), { size: 8, nHash: 1 });
  t.equal(small.bytes.length, 8);
  t.ok(small.bytes.some(b => b !== 0));
});
