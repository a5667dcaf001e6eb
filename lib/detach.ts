// Serving in the background, as FUSE file systems started by mount(8) do: the
// command starts the server as a child in a session of its own and waits; the
// child reports on a pipe (fd KDBUSFS_READY_FD) "ready" once its mount serves,
// or "error MESSAGE" if it cannot. The command then exits 0, or prints the
// message and exits 1, so `mount` fails with the reason and nothing left
// running. The server's stdin and stdout are /dev/null; its stderr is the
// command's stderr when that is the journal (a mount unit's), else the file
// of --log-file, else /dev/null.
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';

const READY_FD_ENV = 'KDBUSFS_READY_FD';
/** how long the command waits for its server to serve */
const READY_TIMEOUT_MS = 30_000;

/** The pipe a detached server reports on, taken from the environment (so its own children do not see it). */
function takeReadyFd(): number | null {
  const fd = Number(process.env[READY_FD_ENV]);
  delete process.env[READY_FD_ENV];
  return Number.isInteger(fd) && fd > 2 ? fd : null;
}

let readyFd = takeReadyFd();

/** Whether this process is a detached server whose command waits for it. */
export function detached(): boolean {
  return readyFd !== null;
}

function report(line: string): void {
  if (readyFd === null) return;
  try {
    writeSync(readyFd, `${line}\n`);
    closeSync(readyFd);
  } catch {
    // the command is gone (killed): nobody to tell
  }
  readyFd = null;
}

/** The mount serves: the waiting command may exit 0. */
export function reportReady(): void {
  report('ready');
}

/** The server cannot serve: the waiting command prints message and exits 1. */
export function reportFailure(message: string): void {
  report(`error ${message.replace(/\n/g, ' ')}`);
}

/**
 * Starts `execPath args` as a detached server and waits for its report.
 * Resolves to null once it serves, or to the reason it does not.
 */
export function startDetached(execPath: string, args: string[], stderr: 'inherit' | 'ignore' | number): Promise<string | null> {
  const stdio: StdioOptions = ['ignore', 'ignore', stderr, 'pipe'];
  const child = spawn(execPath, args, { detached: true, stdio, env: { ...process.env, [READY_FD_ENV]: '3' } });
  if (typeof stderr === 'number') closeSync(stderr);
  return new Promise((done) => {
    let said = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done(`the server did not serve within ${READY_TIMEOUT_MS / 1000} s`);
    }, READY_TIMEOUT_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.on('data', (d: Buffer) => { said += d.toString(); });
    child.on('error', (e) => {
      clearTimeout(timer);
      done(`cannot start the server: ${e.message}`);
    });
    pipe.on('close', () => {
      clearTimeout(timer);
      const line = said.trim();
      if (line === 'ready') {
        child.unref();
        done(null);
      } else if (line.startsWith('error ')) {
        done(line.slice('error '.length));
      } else {
        const ended = (code: number | null, signal: NodeJS.Signals | null): void =>
          done(`the server ended before it served (${signal ? `killed by ${signal}` : `exit code ${code}`})`);
        if (child.exitCode !== null || child.signalCode !== null) ended(child.exitCode, child.signalCode);
        else child.once('exit', ended);
      }
    });
  });
}
