// The Node side of bench/client-call.sh: a method call between two
// kdbusfs/client processes (BusConnection), the same call as
// sdbus2015-call.c makes between two sd-bus 2015 programs.
//
//   node client-call.mjs BUS_PATH SIZE SECONDS REPS
//       starts an Echo server process (Echo(ay) -> ay on /bench, interface
//       org.kdbusfs.Bench), then prints microseconds per call, one line per
//       rep (after a warm-up of a third of SECONDS). With CALLS_FILE set,
//       writes "CLIENT_PID SERVER_PID CALLS" there at the end (every call,
//       warm-up included; for client-call.sh COUNT=1).
//   node client-call.mjs serve BUS_PATH   the server (prints its unique name)
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ATTACH, BusConnection } from '../dist/lib/client/index.js';

const IFACE = 'org.kdbusfs.Bench';
// the metadata sd-bus 2015 asks for by default (sd_bus_new: NAMES), not BusConnection's CREDS, PIDS and NAMES
const attachRecv = ATTACH.NAMES;

if (process.argv[2] === 'serve') {
  const bus = await BusConnection.connect(process.argv[3], { description: 'bench-server', attachRecv });
  bus.export('/bench', { [IFACE]: { methods: { Echo: { in: 'ay', out: 'ay', call: ([data]) => data } } } });
  process.stdout.write(`${bus.uniqueName}\n`);
  process.on('SIGTERM', () => { bus.close(); process.exit(0); });
} else {
  const [busPath, size, seconds, reps] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
  // the server runs without this process's flags; KDBUSFS_BENCH_SERVER_PROF=DIR profiles it into DIR
  const prof = process.env.KDBUSFS_BENCH_SERVER_PROF;
  const server = spawn(process.execPath, [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), fileURLToPath(import.meta.url), 'serve', busPath],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const name = await new Promise((resolve, reject) => {
    server.stdout.once('data', (d) => resolve(d.toString().trim()));
    server.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  const bus = await BusConnection.connect(busPath, { description: 'bench-client', attachRecv });
  const data = Buffer.alloc(size, 0xa5);
  let calls = 0;
  const call = { destination: name, path: '/bench', interface: IFACE, member: 'Echo', signature: 'ay', body: [data] };
  for (let rep = -1; rep < reps; rep++) {
    const limit = (rep < 0 ? seconds / 3 : seconds) * 1e9;
    const t0 = process.hrtime.bigint();
    let n = 0;
    let t;
    do {
      const r = await bus.call(call);
      if (r.body[0].length !== size) throw new Error(`bad reply: ${r.body[0].length} bytes`);
      n++;
      calls++;
      t = process.hrtime.bigint();
    } while (Number(t - t0) < limit || n < 10);
    if (rep >= 0) process.stdout.write(`${(Number(t - t0) / 1e3 / n).toFixed(2)}\n`);
  }
  bus.close();
  if (process.env.CALLS_FILE) writeFileSync(process.env.CALLS_FILE, `${process.pid} ${server.pid} ${calls}\n`);
  server.kill('SIGTERM');
  await new Promise((resolve) => server.once('exit', resolve));
}
