// End to end: `kdbusfs bus make` run by uid 65534 (its uid prefixed, other
// processes use the bus, SIGTERM removes it), and `kdbusfs endpoint make`
// with a policy file: the endpoint shows and lets through only what its
// policy allows, and goes on SIGINT. And status/list with every metadata
// item the module parameter can let through.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { needRootAndFuse, until } from '../harness.js';
import { agents, mountFresh, NOBODY, stageClient } from '../client/kdbus-harness.js';
import { startEchoService } from '../client/echo-service-process.js';
import { kdbusfs, startHeld, type CliOptions } from './cli-harness.js';

t.setTimeout(180_000);
needRootAndFuse();

const E = ['org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example'];

t.test('bus make by another user: a bus others use, gone on SIGTERM', async (t) => {
  const { dir: staged, agent } = stageClient();
  const { dir } = await mountFresh(t, 'cli-make');
  const nobody: CliOptions = { root: dir, uid: NOBODY, staged };
  const made = await startHeld(t, nobody, 'bus', 'make', 'mine', '--world');
  t.equal(made.path, join(dir, `${NOBODY}-mine/bus`), 'the name gets the maker\'s uid');
  const user = await agents(t, agent)('user', NOBODY);
  const hello = await user.do('connect', { bus: made.path });
  t.ok(hello.id, 'another process connects to the bus');
  const listed = await kdbusfs({ root: dir }, 'list');
  t.match(listed.stdout, new RegExp(`^${NOBODY}-mine\\s+nobody\\s+1\\s+-$`, 'm'), 'list: the bus, its maker and the connection');
  const r = await made.stop('SIGTERM');
  t.same([r.code, r.signal], [0, null], 'bus make exits 0 on SIGTERM');
  t.ok(await until(() => !existsSync(join(dir, `${NOBODY}-mine`)), 10_000, 50), 'the bus is gone');
  const ev = await user.do('next', { kind: 'hangup', ms: 10_000 });
  t.ok(ev, 'its connection was hung up');
});

t.test('endpoint make: a custom endpoint with its own policy', async (t) => {
  const { dir: staged, agent } = stageClient();
  const { dir } = await mountFresh(t, 'cli-endpoint');
  const o: CliOptions = { root: dir };
  const nobody: CliOptions = { root: dir, uid: NOBODY, staged };
  // uid 65534 may talk to root's service: the bus's policy (a wildcard), and the endpoint's
  const busPolicy = join(staged, 'bus-policy');
  writeFileSync(busPolicy, 'org.kdbusfs.* talk world\n');
  const policy = join(staged, 'policy');
  writeFileSync(policy, 'org.kdbusfs.Example talk world\n');
  const made = await startHeld(t, o, 'bus', 'make', 'ep', '--world', '--policy', busPolicy);
  await startEchoService(t, made.path);
  const hider = await agents(t, agent)('hider');
  await hider.do('connect', { bus: made.path });
  await hider.do('acquire', { name: 'org.kdbusfs.Hidden' });
  const ep = await startHeld(t, o, 'endpoint', 'make', '0-ep', 'view', '--policy', policy, '--world');
  t.equal(ep.path, join(dir, '0-ep/0-view'), 'endpoint make prints the endpoint\'s path');
  const [onItsBus, viaEndpoint, listed, onBus] = await Promise.all([
    kdbusfs(nobody, 'call', '0-ep', ...E, 'Echo', 's', 'on the bus'),
    kdbusfs(nobody, 'call', ep.path, ...E, 'Echo', 's', 'through the endpoint'),
    kdbusfs(nobody, 'list', ep.path),
    kdbusfs(nobody, 'list', '0-ep'),
  ]);
  t.same([onItsBus.code, onItsBus.stdout], [0, 's "on the bus"\n'], `the bus's wildcard rule lets uid 65534 talk ${onItsBus.stderr}`);
  t.same([viaEndpoint.code, viaEndpoint.stdout], [0, 's "through the endpoint"\n'], `a call through the endpoint ${viaEndpoint.stderr}`);
  t.match(listed.stdout, /^org\.kdbusfs\.Example\s/m, 'list through the endpoint shows the name its policy allows');
  t.notMatch(listed.stdout, /org\.kdbusfs\.Hidden/, 'and not a name it does not');
  t.match(onBus.stdout, /^org\.kdbusfs\.Hidden\s/m, 'which the bus\'s own endpoint shows');
  const r = await ep.stop('SIGINT');
  t.same([r.code, r.signal], [0, null], 'endpoint make exits 0 on SIGINT');
  t.ok(await until(() => !existsSync(ep.path), 10_000, 50), 'the endpoint is gone');
  t.ok(existsSync(made.path), 'the bus stays');
  const wildcard = join(staged, 'wildcard-policy');
  writeFileSync(wildcard, 'org.kdbusfs.* see world\n');
  const refused = await kdbusfs(o, 'endpoint', 'make', '0-ep', 'wild', '--policy', wildcard);
  t.equal(refused.code, 2, 'a wildcard in an endpoint policy is refused');
  t.match(refused.stderr, /no wildcard names on endpoints/);
});

t.test('status and list with every metadata item let through (attach_flags_mask all)', async (t) => {
  const { dir } = await mountFresh(t, 'cli-meta', (1n << 14n) - 1n);
  const o: CliOptions = { root: dir };
  const made = await startHeld(t, o, 'bus', 'make', 'meta');
  const service = await startEchoService(t, made.path);
  const status = await kdbusfs(o, 'status', '0-meta', 'org.kdbusfs.Example');
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, new RegExp(`^Exe=${process.execPath.replace(/[.]/g, '\\.')}$`, 'm'), 'Exe: the service\'s executable');
  // kdbus v3 copied argv[0] only (strndup_user of the first string)
  t.match(status.stdout, new RegExp(`^CommandLine=${process.execPath.replace(/[.]/g, '\\.')}$`, 'm'), 'CommandLine');
  t.match(status.stdout, /^Comm=\S+$/m, 'Comm');
  t.match(status.stdout, /^CGroup=\//m, 'CGroup');
  t.match(status.stdout, /^EffectiveCapabilities=.*\bcap_sys_admin\b/m, 'the capability sets by name (root has cap_sys_admin)');
  const json = JSON.parse((await kdbusfs(o, 'status', '0-meta', 'org.kdbusfs.Example', '--json')).stdout);
  t.equal(json.metadata.exe, process.execPath, '--json: exe');
  t.ok(json.metadata.caps.effective.includes('cap_sys_admin'), '--json: capabilities by name');
  t.type(json.metadata.caps.effectiveMask, 'number', '--json: and as a number');
  const list = await kdbusfs(o, 'list', '0-meta');
  t.match(list.stdout, new RegExp(`^org\\.kdbusfs\\.Example\\s+${service.pid}\\s+node\\s+root\\s`, 'm'), 'list: the process name');
});
