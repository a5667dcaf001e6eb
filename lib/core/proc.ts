// The one place that reads /proc: status fields, namespace identities, id
// maps, links and small procfs files of a task. Callers ask for exactly what
// a decision or an export needs; nothing here reads ahead or caches a task's
// state (credentials and namespaces change under a live task).
import { closeSync, openSync, readSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';

/** A task as /proc names it: a thread id in the server's pid namespace, or the server itself. */
export type ProcTask = number | 'self';

const scratch = Buffer.allocUnsafe(64 * 1024);

function errnoOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).code;
  return (code && (constants.errno as Record<string, number>)[code]) || constants.errno.EIO;
}

/**
 * One procfs file with open/read/close, no fstat: a short read is the end of
 * a procfs file (seq_file and the simple readers fill the buffer until they
 * run out), so small files cost one read. Returns a view of a shared scratch
 * buffer, valid until the next read here, or a negative errno. A file longer
 * than the scratch buffer is -EFBIG unless `partialOk` (then its start).
 */
export function procFile(path: string, partialOk = false): Buffer | number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    return -errnoOf(e);
  }
  try {
    const n = readSync(fd, scratch, 0, scratch.length, null);
    return n < scratch.length || partialOk ? scratch.subarray(0, n) : -constants.errno.EFBIG;
  } catch (e) {
    return -errnoOf(e);
  } finally {
    closeSync(fd);
  }
}

/** A procfs file as text (one char per byte), or null if unreadable. */
export function procText(path: string): string | null {
  const b = procFile(path);
  return typeof b === 'number' ? null : b.toString('latin1');
}

/** The bytes of a procfs file up to the first NUL, copied; a trailing newline dropped unless `keepNewline`. */
export function cString(bytes: Buffer, keepNewline = false): Buffer {
  let end = bytes.indexOf(0);
  if (end < 0) end = bytes.length;
  if (!keepNewline && end > 0 && bytes[end - 1] === 0x0a) end--;
  return Buffer.from(bytes.subarray(0, end));
}

/** A procfs file as a C string (see cString), or null if unreadable. */
export function procCString(path: string): Buffer | null {
  const b = procFile(path);
  return typeof b === 'number' ? null : cString(b);
}

/** The target of a /proc symlink as bytes, or null. */
export function procLink(path: string): Buffer | null {
  try {
    return readlinkSync(path, { encoding: 'buffer' });
  } catch {
    return null;
  }
}

/** Namespace identity: the target of /proc/<task>/ns/<kind>, e.g. "user:[4026531837]", or null. */
export function nsId(task: ProcTask, kind: 'user' | 'pid' | 'mnt'): string | null {
  try {
    return readlinkSync(`/proc/${task}/ns/${kind}`);
  } catch {
    return null;
  }
}

/** A /proc/<tid>/status text, its fields parsed only when asked for. */
export class ProcStatus {
  constructor(private readonly text: string) {}

  /** The field after "\n<name>:", trimmed, or null if there is none. */
  field(name: string): string | null {
    const key = `\n${name}:`;
    const at = this.text.indexOf(key);
    if (at < 0) return null;
    const end = this.text.indexOf('\n', at + key.length);
    return this.text.slice(at + key.length, end < 0 ? undefined : end).trim();
  }

  /** A field of whitespace-separated decimals (Uid, Groups, NSpid...); [] when empty, null when absent. */
  numbers(name: string): number[] | null {
    const f = this.field(name);
    if (f === null) return null;
    return f === '' ? [] : f.split(/\s+/).map(Number);
  }

  /** A decimal field (Tgid, PPid...), 0 when absent. */
  number(name: string): number {
    return Number(this.field(name) ?? 0);
  }

  /** A hex mask field (CapEff, SigPnd...), 0 when absent. */
  mask(name: string): bigint {
    const f = this.field(name);
    return f ? BigInt('0x' + f) : 0n;
  }
}

/** /proc/<task>/status (or the status file at `path`, for a thread under /proc/<pid>/task), or null if gone. */
export function procStatus(task: ProcTask | { path: string }): ProcStatus | null {
  const t = procText(typeof task === 'object' ? task.path : `/proc/${task}/status`);
  return t === null ? null : new ProcStatus(t);
}

/** An id map as /proc/<tid>/uid_map shows it to the server: [inside, outside (kuid), count] lines. */
export type IdMap = Array<[number, number, number]>;

/** /proc/<tid>/uid_map or gid_map, or null if unreadable. */
export function procIdMap(tid: number, kind: 'uid_map' | 'gid_map'): IdMap | null {
  const t = procText(`/proc/${tid}/${kind}`);
  if (t === null) return null;
  const map: IdMap = [];
  for (const line of t.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length === 3 && f.every(Number.isFinite)) map.push([f[0], f[1], f[2]]);
  }
  return map;
}

/** A number in a procfs file (a sysctl, loginuid...), or `dflt` if unreadable. */
export function procNumber(path: string, dflt: number): number {
  const t = procText(path);
  const v = t === null ? NaN : Number(t.trim());
  return Number.isFinite(v) ? v : dflt;
}
