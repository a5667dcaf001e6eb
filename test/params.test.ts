// /sys/module/kdbus/parameters/attach_flags_mask as lib/params.ts serves it:
// kstrtoull parsing, and the live file read and written by other processes
// (never by this one: it serves the FUSE session on its own event loop).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { moduleParams, DEFAULT_ATTACH_FLAGS_MASK } from '../lib/core/module.js';
import { ParamsSession, parseUllong } from '../lib/params.js';

const sh = promisify(execFile);

t.test('parseUllong behaves like kstrtoull(s, 0)', async (t) => {
  const cases: [string, bigint | number][] = [
    ['10271', 10271n], ['10271\n', 10271n], ['+5', 5n], ['0x281f', 0x281fn], ['0X281F\n', 0x281fn],
    ['017', 15n], ['0', 0n], ['0\n', 0n], ['18446744073709551615', (1n << 64n) - 1n],
    ['18446744073709551616', -34], ['0x', -22], ['08', -22], ['', -22], ['\n', -22],
    ['12\n\n', -22], [' 12', -22], ['12 ', -22], ['-1', -22], ['1x', -22], ['7\0junk', 7n],
  ];
  for (const [input, want] of cases) t.equal(parseUllong(input), want, JSON.stringify(input));
});

t.test('the live file', async (t) => {
  const params = ParamsSession.start();
  t.teardown(() => {
    params.stop();
    moduleParams.attachFlagsMask = DEFAULT_ATTACH_FLAGS_MASK;
  });
  t.equal((await sh('stat', ['-c', '%a %u %g', params.file])).stdout, '644 0 0\n', 'mode 0644, owned by root');

  t.equal((await sh('cat', [params.file])).stdout, `${DEFAULT_ATTACH_FLAGS_MASK}\n`, 'reads the mask as %llu\\n');
  await sh('sh', ['-c', 'printf %s 0x3fff > "$1"', 'sh', params.file]);
  t.equal(moduleParams.attachFlagsMask, 0x3fffn, 'a write sets the mask live');
  t.equal((await sh('cat', [params.file])).stdout, '16383\n', 'and reads back in decimal');
  await sh('sh', ['-c', 'echo 0 > "$1"', 'sh', params.file]);
  t.equal(moduleParams.attachFlagsMask, 0n, 'a trailing newline is fine');
  // dd, not the shell: dash reports every failed write as "I/O error".
  const bad = await sh('sh', ['-c', 'echo nope | dd of="$1" conv=notrunc status=none', 'sh', params.file])
    .then(() => null, (e: { stderr: string }) => e.stderr);
  t.match(bad, /Invalid argument/, 'garbage is EINVAL');
  t.equal(moduleParams.attachFlagsMask, 0n, 'and leaves the mask alone');
});
