// Colour as busctl had it: escape codes on a terminal only. The commands
// run under a pseudo-terminal (util-linux `script`), piped, and on the
// terminal with NO_COLOR set or TERM=dumb: `kdbusfs status BUS` (the values
// highlighted) and `kdbusfs monitor BUS` (the message type highlighted).
import { spawn, spawnSync } from 'node:child_process';
import t from 'tap';
import { cli, needRootAndFuse, until } from '../harness.js';
import { agents, mountFresh, stageClient } from '../client/kdbus-harness.js';
import { kdbusfs } from './cli-harness.js';

t.setTimeout(120_000);
needRootAndFuse();

const SCRIPT = spawnSync('script', ['--version']).status === 0;
const HIGHLIGHT = '\x1b[1;39m';
const OFF = '\x1b[0m';
// eslint-disable-next-line no-control-regex
const ESCAPE = /\x1b\[/;

const sh = (args: string[]): string => args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');

/** `kdbusfs ARGS` on a pseudo-terminal (script -q, output of the terminal), with env added. */
function onTerminal(args: string[], env: NodeJS.ProcessEnv): { child: ReturnType<typeof spawn>; out: () => string; ended: Promise<number | null> } {
  const child = spawn('script', ['-qec', sh([process.execPath, cli, ...args]), '/dev/null'],
    // tap runs tests with NO_COLOR=1: the terminal's commands start without it
    { env: { ...process.env, NO_COLOR: undefined, TERM: 'xterm', KDBUSFS_QUIET: '1', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, ended };
}

async function runOnTerminal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  const r = onTerminal(args, env);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), 30_000);
  const code = await r.ended;
  clearTimeout(timer);
  return { code, out: r.out() };
}

t.test('escape codes on a terminal only', { skip: SCRIPT ? false : 'no util-linux script to make a pseudo-terminal' }, async (t) => {
  const { agent } = stageClient();
  const { dir } = await mountFresh(t, 'colour');
  const newAgent = agents(t, agent);
  const maker = await newAgent('maker');
  const bus = await maker.do('makeBus', { name: '0-colour', opts: { root: dir } });
  const env = { KDBUSFS_ROOT: dir };

  const tty = await runOnTerminal(['status', '0-colour'], env);
  t.equal(tty.code, 0, 'status on a terminal: exit 0');
  t.match(tty.out, new RegExp(`^BusName=${HIGHLIGHT.replace('[', '\\[')}0-colour${OFF.replace('[', '\\[')}\\r?$`, 'm'),
    'status on a terminal: the values highlighted as busctl did (ESC[1;39m ... ESC[0m)');
  const piped = await kdbusfs({ root: dir, env: { NO_COLOR: undefined } }, 'status', '0-colour');
  t.equal(piped.code, 0, 'status piped: exit 0');
  t.match(piped.stdout, /^BusName=0-colour$/m, 'status piped: the same line');
  t.notMatch(piped.stdout, ESCAPE, 'status piped: no escape code');
  const empty = await runOnTerminal(['status', '0-colour'], { ...env, NO_COLOR: '' });
  t.match(empty.out, ESCAPE, 'status on a terminal with NO_COLOR empty: colour (no-color.org: set to something)');
  for (const [what, extra] of [['NO_COLOR=1', { NO_COLOR: '1' }], ['TERM=dumb', { TERM: 'dumb' }]] as const) {
    const plain = await runOnTerminal(['status', '0-colour'], { ...env, ...extra });
    t.equal(plain.code, 0, `status on a terminal with ${what}: exit 0`);
    t.match(plain.out, /^BusName=0-colour\r?$/m, `status on a terminal with ${what}: the line`);
    t.notMatch(plain.out, ESCAPE, `status on a terminal with ${what}: no escape code`);
  }

  // monitor: a connection coming is a NameOwnerChanged signal, its type highlighted
  const watch = async (extra: NodeJS.ProcessEnv): Promise<string> => {
    const m = onTerminal(['monitor', bus.path], { ...env, ...extra });
    t.teardown(() => { m.child.kill('SIGKILL'); });
    t.ok(await until(() => m.out().includes('Monitoring bus message stream'), 20_000, 50), 'the monitor is up');
    const peer = await newAgent('peer');
    await peer.do('connect', { bus: bus.path });
    t.ok(await until(() => m.out().includes('NameOwnerChanged'), 20_000, 50), 'the monitor shows the new connection');
    m.child.stdin!.write('\x03'); // ^C on the terminal: SIGINT
    await Promise.race([m.ended, new Promise((r) => setTimeout(r, 10_000))]);
    m.child.kill('SIGKILL');
    await peer.do('close');
    return m.out();
  };
  const coloured = await watch({});
  t.ok(coloured.includes(`Type=${HIGHLIGHT}signal${OFF}`), 'monitor on a terminal: the type highlighted');
  t.ok(coloured.includes(`Member=${HIGHLIGHT}NameOwnerChanged${OFF}`), 'monitor on a terminal: the addresses highlighted');
  const plain = await watch({ NO_COLOR: '1' });
  t.ok(plain.includes('Type=signal'), 'monitor on a terminal with NO_COLOR: the type');
  t.notMatch(plain, ESCAPE, 'monitor on a terminal with NO_COLOR: no escape code');
});
