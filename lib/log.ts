// The server's log: one line per event on stderr, at five levels (error,
// warning, notice, info, debug; info and above are shown by default,
// `--log-level`, `-q` = warning, `-v` = debug; KDBUSFS_QUIET=1 is -q).
//
//   2025-11-25T14:22:01.123Z kdbusfs[mount] message      (a terminal, pipe or file)
//   <6>kdbusfs[mount] message                            (stderr is the journal)
//
// When stderr is systemd's journal ($JOURNAL_STREAM names its device and
// inode) each line starts with its syslog priority, which journald takes as
// the entry's priority, and without a time stamp (journald adds one).
//
// Refusals (a client's ioctl answered with an errno) go through logRefusal:
// a few lines a second per uid, the rest summed up per uid, command and errno
// every 10 s (lib/refusal-limiter.ts). Lines are written without ever
// blocking; when stderr's reader falls behind they are dropped and counted
// (lib/log-writer.ts).
import { fstatSync } from 'node:fs';
import { constants } from 'node:os';
import { LineWriter, StderrWriter } from './log-writer.js';
import { RefusalLimiter, summaryText } from './refusal-limiter.js';

export const LOG_LEVELS = ['error', 'warning', 'notice', 'info', 'debug'] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** syslog priorities (LOG_ERR...LOG_DEBUG) */
const PRIORITY: Record<LogLevel, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };
/** what a line says of its level after the component (info and debug lines say nothing) */
const SHOWN: Record<LogLevel, string> = { error: ' error:', warning: ' warning:', notice: '', info: '', debug: '' };

export function parseLogLevel(s: string): LogLevel | null {
  return (LOG_LEVELS as readonly string[]).includes(s) ? s as LogLevel : null;
}

let threshold = PRIORITY[process.env.KDBUSFS_QUIET === '1' ? 'warning' : 'info'];

export function setLogLevel(level: LogLevel): void {
  threshold = PRIORITY[level];
}

export function logLevel(): LogLevel {
  return LOG_LEVELS.find((l) => PRIORITY[l] === threshold)!;
}

/** Whether stderr is the journal's stream: $JOURNAL_STREAM is "DEV:INO" of it. */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}

const journal = stderrIsJournal();
const stderr = new StderrWriter();
const lines = new LineWriter(stderr.write, (n) => format('warning', 'log', `${n} log lines dropped: stderr's reader did not keep up`));
const refusals = new RefusalLimiter();
/** summaries and dropped-line reports when no new line comes to carry them */
let ticker: NodeJS.Timeout | null = null;
const TICK_MS = 1000;

function format(level: LogLevel, component: string, msg: string): string {
  if (journal) return `<${PRIORITY[level]}>kdbusfs[${component}]${SHOWN[level]} ${msg}\n`;
  return `${new Date().toISOString()} kdbusfs[${component}]${SHOWN[level]} ${msg}\n`;
}

/** Gives the log a non-blocking send for a socket stderr (the journal's), from the native addon. */
export function useSocketSend(send: (fd: number, data: Buffer) => number): void {
  stderr.useSocketSend(send);
}

function emit(level: LogLevel, component: string, msg: string): void {
  if (PRIORITY[level] > threshold) return;
  lines.write(format(level, component, msg));
  if (lines.pendingDrops) tick();
}

/** Writes a line as it is (e.g. the census the operator asked for), whatever the level. */
export function logLine(line: string): void {
  lines.write(line);
}

/** For callers that would spend time building an info line nobody sees. */
export function logging(): boolean {
  return threshold >= PRIORITY.info;
}

export function log(component: string, msg: string): void {
  emit('info', component, msg);
}

export function logError(component: string, msg: string): void {
  emit('error', component, msg);
}

export function logWarning(component: string, msg: string): void {
  emit('warning', component, msg);
}

export function logNotice(component: string, msg: string): void {
  emit('notice', component, msg);
}

export function logDebug(component: string, msg: string): void {
  emit('debug', component, msg);
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/**
 * A client's request refused with errno: an info line, within uid's share of
 * lines (a few a second); beyond it only counted, and summed up by a notice
 * line per uid and period ("uid 1000: 48213 more refusals in the last 10 s
 * ...: BUS_MAKE EEXIST x48000, ..."). command names the request (the ioctl's
 * name), why is the core's reason.
 */
export function logRefusal(uid: number, command: string, errno: number, why: string): void {
  if (threshold < PRIORITY.info) return;
  const name = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
  if (refusals.admit(uid, `${command} ${name}`)) {
    emit('info', 'refused', `uid ${uid} ${command}: ${why} (${name})`);
    summarize(false);
  } else {
    tick();
  }
}

function summarize(force: boolean): void {
  for (const s of refusals.summaries(force)) emit('notice', 'refused', summaryText(s));
}

function tick(): void {
  if (ticker) return;
  ticker = setInterval(() => {
    summarize(false);
    lines.flush();
    if (!refusals.pending && !lines.pendingDrops && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }, TICK_MS);
  ticker.unref(); // the log never keeps the server alive
}

/** On the way out: what the limiter still holds, and the count of dropped lines. */
export function logFlush(): void {
  summarize(true);
  lines.flush();
}
