// Package users get TypeScript declarations for kdbusfs/client: the packed
// tarball (npm pack, as published) installed under node_modules/kdbusfs of a
// tiny consumer, which type-checks against the export's `types` with the
// consumer's own strict NodeNext settings, and fails to where it misuses
// the API (so the declarations are real types, not any).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { root } from '../harness.js';

const run = promisify(execFile);
const tsc = join(root, 'node_modules/typescript/bin/tsc');

const consumer = `
import { BusConnection, Connection, DBusError, Variant, connect, type Message, type Notification } from 'kdbusfs/client';

export async function use(path: string): Promise<string> {
  const bus: BusConnection = await BusConnection.connect(path, { description: 'consumer' });
  const echo = bus.proxy('org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example');
  const [text] = await echo.call('Echo', 's', 'hi');
  bus.export('/x', { 'org.x.Y': { methods: { M: { in: 's', out: 'v', call: ([s]) => new Variant('s', s!) } } } });
  const k: Connection = await connect(path, { receive: 'view' });
  k.on('message', (m: Message) => m.free());
  k.on('notification', (n: Notification) => n.type);
  if (!(text instanceof DBusError)) return String(text);
  return '';
}
`;
const misuse = `
import { BusConnection } from 'kdbusfs/client';
export async function misuse(): Promise<void> {
  const bus = await BusConnection.connect(42);
}
`;

t.test('npm pack, then a consumer type-checks against kdbusfs/client', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kdbusfs-types-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // the checkout's dist is what gets packed (the build ran before the tests)
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: root, timeout: 60_000 });
  const tarball = readdirSync(dir).find(f => f.endsWith('.tgz'));
  t.ok(tarball, `npm pack made ${tarball}`);
  const pkg = join(dir, 'app/node_modules/kdbusfs');
  mkdirSync(pkg, { recursive: true });
  await run('tar', ['-xzf', join(dir, tarball!), '-C', pkg, '--strip-components=1']);
  const app = join(dir, 'app');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module' }));
  const check = async (file: string, source: string): Promise<{ code: number; out: string }> => {
    writeFileSync(join(app, file), source);
    return run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--skipLibCheck', '--typeRoots', join(root, 'node_modules/@types'), '--types', 'node', join(app, file)],
    { cwd: app, timeout: 60_000 }).then(r => ({ code: 0, out: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }));
  };
  const good = await check('consumer.ts', consumer);
  t.equal(good.code, 0, `the consumer type-checks against the packed declarations ${good.out}`);
  const bad = await check('misuse.ts', misuse);
  t.not(bad.code, 0, 'a wrong argument type is an error');
  t.match(bad.out, /misuse\.ts\(4,\d+\): error TS2345: Argument of type 'number' is not assignable to parameter of type 'string'/,
    'the declared parameter type is what refuses it');
});
