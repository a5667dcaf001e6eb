// The bus commands' usage errors (UsageError, saying why, with the usage)
// in process, every command's help; then, as processes, the exit codes
// (2 for usage, 1 for a refusal, 0 for --help) and refusals that need no
// bus. The root is an empty directory: nothing gets as far as a bus.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { callCommand } from '../../lib/commands/call.js';
import { busMakeCommand } from '../../lib/commands/bus-make.js';
import { emitCommand } from '../../lib/commands/emit.js';
import { endpointMakeCommand } from '../../lib/commands/endpoint-make.js';
import { getPropertyCommand } from '../../lib/commands/get-property.js';
import { introspectCommand } from '../../lib/commands/introspect.js';
import { listCommand } from '../../lib/commands/list.js';
import { setPropertyCommand } from '../../lib/commands/set-property.js';
import { statusCommand } from '../../lib/commands/status.js';
import { treeCommand } from '../../lib/commands/tree.js';
import { UsageError } from '../../lib/commands/usage-error.js';
import type { Command } from '../../lib/commands/command-table.js';
import { kdbusfs, type CliOptions } from './cli-harness.js';

t.setTimeout(60_000);
const root = mkdtempSync(join(tmpdir(), 'kdbusfs-cli-usage-'));
const o: CliOptions = { root };
const E = ['org.kdbusfs.Example', '/org/kdbusfs/Example', 'org.kdbusfs.Example'];
const COMMANDS = [listCommand, statusCommand, callCommand, emitCommand, getPropertyCommand, setPropertyCommand,
  introspectCommand, treeCommand, busMakeCommand, endpointMakeCommand];

t.test('usage errors say why and show the usage', async (t) => {
  const cases: [Command, string[], RegExp][] = [
    [callCommand, ['0-cli', 'a.b'], /expects at least 5 arguments/],
    [callCommand, ['0-cli', ...E, 'Echo', 'i', 'x'], /cannot parse 'x' as a signed 32-bit integer/],
    [callCommand, ['0-cli', ...E, 'Echo', 'ai', '2', '1'], /claims 2 entries/],
    [emitCommand, ['0-cli', '/p', 'a.b', 'S', 's', 'x', 'y'], /too many arguments/],
    [setPropertyCommand, ['0-cli', ...E, 'Greeting', 'ss', 'a', 'b'], /one complete type/],
    [callCommand, ['0-cli', ...E, 'Echo', '--timeout', 'soon'], /--timeout takes a duration/],
    [callCommand, ['0-cli', ...E, 'Echo', '--expect-reply=perhaps'], /--expect-reply takes yes or no/],
    [introspectCommand, ['0-cli', 'a.b', '/', 'x', 'y'], /at most 4 arguments/],
    [listCommand, ['--frobnicate'], /Unknown option '--frobnicate'/],
    [listCommand, ['a', 'b'], /at most one BUS/],
    [statusCommand, [], /status takes BUS/],
    [busMakeCommand, ['x', '--bloom', '7,1'], /multiple of 8/],
    [busMakeCommand, ['x', '--bloom', 'big'], /SIZE,HASHES/],
    [busMakeCommand, [`${(process.geteuid?.() ?? 0) + 1}-x`], /must start with its creator's uid: '\d+-x' starts with \d+-, this user is \d+/],
    [endpointMakeCommand, ['0-x', 'ep', '--policy', '/nonexistent/policy'], /cannot read the policy file/],
  ];
  for (const [command, args, why] of cases) {
    await t.rejects(Promise.resolve().then(() => command.run([...args, '--root', root])), { constructor: UsageError, message: why },
      `${command.name} ${args.join(' ')}`);
  }
});

t.test('every command has its help', async (t) => {
  for (const c of COMMANDS) t.match(c.help, new RegExp(`^Usage: kdbusfs ${c.name} `), `${c.name}`);
});

t.test('as processes: exit 2 for usage, 1 for refusals, 0 for --help', async (t) => {
  const [usage, twoWords, noPrefix, noBus, made, help, top] = await Promise.all([
    kdbusfs(o, 'call', '0-cli', ...E, 'Echo', 'i', 'x'),
    kdbusfs(o, 'bus'),
    kdbusfs(o, 'list', 'cli'),
    kdbusfs(o, 'status', '0-cli'),
    kdbusfs(o, 'bus', 'make', 'x'),
    kdbusfs(o, 'get-property', '--help'),
    kdbusfs(o, '--help'),
  ]);
  t.equal(usage.code, 2, 'a usage error exits 2');
  t.match(usage.stderr, /^kdbusfs: cannot parse 'x' as a signed 32-bit integer\n\nUsage: kdbusfs call /, 'saying why, then the usage');
  t.equal(twoWords.code, 2, '`bus` alone exits 2');
  t.match(twoWords.stderr, /'bus' needs one of: make/);
  t.equal(noPrefix.code, 1, 'a bus name without its uid prefix fails');
  t.match(noPrefix.stderr, /^kdbusfs list: no bus 'cli'.*bus names start with their creator's uid, e\.g\. \d+-cli$/m, 'and says what is wrong');
  t.equal(noBus.code, 1, 'a bus that is not there fails');
  t.match(noBus.stderr, `no bus '0-cli': ${root}/0-cli/bus does not exist`, 'naming the path it looked for');
  t.equal(made.code, 1, 'bus make where no kdbus is mounted fails');
  t.match(made.stderr, /no kdbus root at .*: is kdbusfs mounted there\?/);
  t.same([help.code, help.stdout.startsWith('Usage: kdbusfs get-property ')], [0, true], '--help exits 0 with the usage');
  for (const c of COMMANDS) t.match(top.stdout, new RegExp(`^  ${c.name} `, 'm'), `the top help lists ${c.name}`);
});
