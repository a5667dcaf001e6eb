// The kdbus module parameter file, /sys/module/kdbus/parameters/attach_flags_mask,
// served by a second, tiny FUSE session. The selftests read it with fscanf("%llu")
// and write it with fprintf("%llu") to change the mask live (test-attach-flags.c),
// so it must behave like a sysfs ullong module parameter.
import { mkdirSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getSystemErrorName } from 'node:util';
import { moduleParams } from './core/module.js';
import { native, OPEN_DIRECT_IO, type SessionHandlers } from './fuse/native.js';
import { log } from './log.js';

export const PARAM_FILE = 'attach_flags_mask';

const EINVAL = 22;
const ERANGE = 34;
const ENOTTY = 25;
const POLL_READY = 0x1 | 0x4 | 0x40 | 0x100; // POLLIN|POLLOUT|POLLRDNORM|POLLWRNORM
const U64_MAX = (1n << 64n) - 1n;

/**
 * The kernel's kstrtoull(s, 0): optional '+', then "0x"/"0X" + hex digits, "0" + octal
 * digits, or decimal; one trailing newline allowed; anything else is -EINVAL, a value
 * above 2^64-1 is -ERANGE. The string ends at the first NUL (sysfs hands the setter
 * a C string).
 */
export function parseUllong(text: string): bigint | number {
  let s = text.split('\0')[0]!;
  if (s.startsWith('+')) s = s.slice(1);
  let radix = 10;
  if (s[0] === '0') {
    if ((s[1] === 'x' || s[1] === 'X') && /^[0-9a-fA-F]$/.test(s[2] ?? '')) {
      radix = 16;
      s = s.slice(2);
    } else {
      radix = 8;
    }
  }
  const digits = { 8: /^[0-7]+/, 10: /^[0-9]+/, 16: /^[0-9a-fA-F]+/ }[radix]!.exec(s);
  if (!digits) return -EINVAL;
  const rest = s.slice(digits[0].length);
  if (rest !== '' && rest !== '\n') return -EINVAL;
  const prefix = { 8: '0o', 10: '', 16: '0x' }[radix]!;
  const value = BigInt(prefix + digits[0]);
  return value > U64_MAX ? -ERANGE : value;
}

/** Removes dir and its parents up to top (nothing when top is undefined: nothing was made). */
function removeUpTo(dir: string, top: string | undefined): void {
  if (top === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    rmdirSync(d);
    if (d === top || d === dirname(d)) return;
  }
}

/**
 * The session serving attach_flags_mask in a directory: one it is given (made if
 * missing, as the parent directories), or a private temp directory.
 */
export class ParamsSession {
  readonly dir: string;
  readonly file: string;
  private sid: number | null;

  private constructor(dir: string, sid: number, private readonly made: string | undefined) {
    this.dir = dir;
    this.file = join(dir, PARAM_FILE);
    this.sid = sid;
  }

  static start(at?: string): ParamsSession {
    // mkdirSync(recursive) answers the first directory it made: the one to remove at the end
    const made = at ? mkdirSync(at, { recursive: true, mode: 0o755 }) : undefined;
    const dir = at ?? mkdtempSync(join(tmpdir(), 'kdbusfs-params-'));
    // sysfs formats the value once per open at offset 0; later reads continue that text.
    const shown = new Map<number, Buffer>();
    const handlers: SessionHandlers = {
      open: (fh) => {
        shown.delete(fh);
        return OPEN_DIRECT_IO;
      },
      release: (fh) => {
        shown.delete(fh);
      },
      read: (fh, offset, size) => {
        let text = shown.get(fh);
        if (offset === 0 || !text) {
          text = Buffer.from(`${moduleParams.attachFlagsMask}\n`);
          shown.set(fh, text);
        }
        return text.subarray(offset, offset + size);
      },
      write: (_fh, _offset, data) => {
        const value = parseUllong(data.toString('latin1'));
        if (typeof value === 'number') return value;
        moduleParams.attachFlagsMask = value;
        log('params', `attach_flags_mask = 0x${value.toString(16)}`);
        return data.length;
      },
      ioctl: () => -ENOTTY,
      poll: () => POLL_READY,
      interrupt: () => {},
      destroyed: () => {},
    };
    const sid = native.sessionMount({
      mountpoint: dir, fsname: 'kdbusfs-params', subtype: 'kdbusfs-params',
      rootMode: 0o755, rootUid: 0, rootGid: 0,
      allowOther: true, defaultPermissions: true, passthrough: false,
    }, handlers);
    if (sid < 0) {
      removeUpTo(dir, at ? made : dir);
      throw new Error(`kdbusfs: cannot serve module parameters on ${dir}: ${native.lastMountError() || getSystemErrorName(sid)}`);
    }
    native.nodeAdd(sid, 1, PARAM_FILE, false, 0o644, 0, 0, 1);
    return new ParamsSession(dir, sid, at ? made : dir);
  }

  /** Unmounts and removes the directories it made. Idempotent. */
  stop(): void {
    if (this.sid === null) return;
    native.sessionUnmount(this.sid);
    this.sid = null;
    removeUpTo(this.dir, this.made);
  }
}
