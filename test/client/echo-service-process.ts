// The example service (dist/examples/echo-service.js) as a process of a
// test: started on a bus, ready once it says it owns org.kdbusfs.Example,
// SIGKILLed when the test ends if still running. Not a test itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { root, until, type Exit, type Tap } from '../harness.js';

export const ECHO_SERVICE = join(root, 'dist/examples/echo-service.js');

export interface EchoService {
  child: ChildProcess;
  pid: number;
  /** its unique name, as it reported it */
  unique: string;
  ended: Promise<Exit>;
  stderr(): string;
}

/** Starts `node echo-service.js --bus busPath` (extra: spawn options, e.g. a wrapper command). */
export async function startEchoService(t: Tap, busPath: string, wrap: string[] = []): Promise<EchoService> {
  const argv = [...wrap, process.execPath, ECHO_SERVICE, '--bus', busPath];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ended = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let exited = false;
  void ended.then(() => { exited = true; });
  t.teardown(() => { if (!exited) child.kill('SIGKILL'); });
  const owns = /(:1\.\d+) owns org\.kdbusfs\.Example/;
  if (!await until(() => exited || owns.test(err), 30_000, 50) || exited) {
    throw new Error(`the echo service did not come up: ${err}`);
  }
  return { child, pid: child.pid!, unique: owns.exec(err)![1]!, ended, stderr: () => err };
}
