// One readable line per event on stderr: "2025-11-25T14:22:01.123Z kdbusfs[mount] message".
// Info lines can be silenced (tests, KDBUSFS_QUIET=1); errors never are.

let quiet = process.env.KDBUSFS_QUIET === '1';

function emit(level: string, component: string, msg: string): void {
  process.stderr.write(`${new Date().toISOString()} kdbusfs[${component}]${level} ${msg}\n`);
}

/** For callers that would spend time building a message nobody sees. */
export function logging(): boolean {
  return !quiet;
}

export function log(component: string, msg: string): void {
  if (!quiet) emit('', component, msg);
}

export function logError(component: string, msg: string): void {
  emit(' error:', component, msg);
}
