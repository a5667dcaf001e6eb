// Buses from configuration (lib/config-buses.ts): the file's validation, with
// errors naming file:field, in process; then a real mount with --buses: the
// configured bus exists with no client holding a control fd, clients HELLO on
// it, its policy entries decide who may own a name, and it goes with the mount.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { parseBusConfig } from '../lib/config-buses.js';
import {
  cli, compileClient, connect, fails, mountType, needRootAndFuse, ok, peerSet, startServer, statOf, stopServer,
} from './harness.js';

const sh = promisify(execFile);

t.test('validation', async (t) => {
  const parsed = parseBusConfig(JSON.stringify({ buses: [{ name: '0-system', access: 'world' }] }), 'b.json');
  t.same(parsed, [{ name: '0-system', owner: 0, group: 0, access: 'world', bloom: { size: 64, nHash: 1 }, policy: [] }],
    'defaults: owner 0, group 0, bloom 64 bytes / 1 hash, no policy');
  const bad: [unknown, string][] = [
    [{ buses: [{ name: '1000-x' }] }, 'b.json:buses[0].name: "1000-x" must start with "0-", the owner\'s uid'],
    [{ buses: [{ name: '0-a/b' }] }, 'b.json:buses[0].name: must be a bus name'],
    [{ buses: [{ name: '0-a' }, { name: '0-a' }] }, 'b.json:buses[1].name: "0-a" is configured twice'],
    [{ buses: [{ name: '0-a', access: 'everyone' }] }, 'b.json:buses[0].access: must be one of owner, group, world'],
    [{ buses: [{ name: '0-a', owner: -1 }] }, 'b.json:buses[0].owner: must be a uid/gid'],
    [{ buses: [{ name: '0-a', bloom: { size: 12 } }] }, 'b.json:buses[0].bloom.size: must be a multiple of 8'],
    [{ buses: [{ name: '0-a', bloom: { n_hash: 0 } }] }, 'b.json:buses[0].bloom.n_hash: must be an integer >= 1'],
    [{ buses: [{ name: '0-a', colour: 'red' }] }, 'b.json:buses[0].colour: unknown field'],
    [{ buses: [{ name: '0-a', policy: [{ name: 'a.b', allow: [{ world: true, access: 'write' }] }] }] },
      'b.json:buses[0].policy[0].allow[0].access: must be "see", "talk" or "own"'],
    [{ buses: [{ name: '0-a', policy: [{ name: 'a.b', allow: [{ user: 1, group: 2, access: 'own' }] }] }] },
      'b.json:buses[0].policy[0].allow[0]: needs exactly one of'],
    [{ buses: [{ name: '0-a', policy: [{ name: 'no dots', allow: [] }] }] }, 'b.json:buses[0].policy: invalid policy name'],
    [{ buses: [{ name: '0-a', policy: [{ name: 'a.b', allow: [] }, { name: 'a.b', allow: [] }] }] },
      'b.json:buses[0].policy: policy for "a.b" already set'],
    [[], 'b.json:: must be an object'],
  ];
  for (const [doc, want] of bad) {
    t.throws(() => parseBusConfig(JSON.stringify(doc), 'b.json'), { message: new RegExp(`^${want.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) },
      want);
  }
  t.throws(() => parseBusConfig('{ "buses": [', 'b.json'), { message: /^b\.json: not JSON: / }, 'not JSON');
});

t.test('a mount with --buses', async (t) => {
  needRootAndFuse();
  t.setTimeout(60_000);
  const tmp = mkdtempSync(join(tmpdir(), 'kdbusfs-buses-'));
  chmodSync(tmp, 0o755); // uid 65534 peers reach the mount inside
  const mnt = join(tmp, 'mnt');
  mkdirSync(mnt);
  t.teardown(() => { if (!mountType(mnt)) rmSync(tmp, { recursive: true, force: true }); });
  const client = await compileClient('kdbus-peer.c', join(tmp, 'kdbus-peer'), ['-pthread']);
  const conf = join(tmp, 'buses.json');

  writeFileSync(conf, JSON.stringify({ buses: [{ name: '0-system', access: 'mine' }] }));
  const refused = await sh(process.execPath, [cli, 'mount', mnt, '--buses', conf]).catch((e) => e);
  t.equal(refused.code, 1, 'a bad configuration: the mount fails');
  t.match(refused.stderr, `${conf}:buses[0].access: must be one of`, 'saying file:field and why');
  t.equal(mountType(mnt), null, 'and nothing is mounted');

  writeFileSync(conf, JSON.stringify({
    buses: [
      { name: '0-system', access: 'world', bloom: { size: 64, n_hash: 1 },
        policy: [{ name: 'org.example.Service', allow: [{ user: 65534, access: 'own' }, { world: true, access: 'talk' }] }] },
      { name: '65534-private', owner: 65534, group: 65534 },
    ],
  }));
  const server = await startServer(t, mnt, { args: ['--buses', conf] });
  if (!server) return;
  t.same(await statOf(join(mnt, '0-system')), { mode: 0o555, uid: 0, gid: 0, dir: true }, '0-system exists, world access');
  t.same(await statOf(join(mnt, '0-system/bus')), { mode: 0o666, uid: 0, gid: 0, dir: false }, 'its bus file: 0666');
  t.same(await statOf(join(mnt, '65534-private/bus')), { mode: 0o600, uid: 65534, gid: 65534, dir: false },
    '65534-private: owner access only, owned by 65534');

  const newPeer = peerSet(t, client);
  const bus = join(mnt, '0-system/bus');
  const nobody = await newPeer('nobody');
  ok(t, await nobody.cmd('setuid 65534 65534'), 'a peer drops to uid 65534');
  await connect(t, nobody, bus, '', 'uid 65534: HELLO on 0-system');
  ok(t, await nobody.cmd('acquire org.example.Service'), 'owns org.example.Service (policy: user 65534 own)');
  fails(t, await nobody.cmd('acquire org.example.Other'), 'EPERM', 'but no name without a policy entry');

  const other = await newPeer('other');
  ok(t, await other.cmd('setuid 65533 65533'), 'another peer drops to uid 65533');
  fails(t, await other.cmd(`open ${join(mnt, '65534-private/bus')}`), 'EACCES', 'uid 65533 cannot open 65534-private');

  await stopServer(t, server, mnt);
  t.notMatch(server.stderr, 'kdbusfs bug', 'the server tore every bus down (no leftovers reported)');
});
