// The server side of D-Bus authentication (D-Bus specification, "Authentication
// Protocol"): a NUL byte, then CRLF-terminated lines. EXTERNAL is the one
// mechanism: the identity is the peer's uid from SO_PEERCRED, and a client
// that names an identity must name exactly that uid. ANONYMOUS and every
// other mechanism are REJECTED. NEGOTIATE_UNIX_FD is agreed after OK;
// BEGIN ends the exchange and whatever follows it is the message stream.
import { randomBytes } from 'node:crypto';

/** The longest line a client may send while authenticating (dbus-daemon: 16 KiB for the whole exchange). */
export const MAX_AUTH_BYTES = 16 * 1024;

export type SaslState = 'nul' | 'auth' | 'data' | 'ok' | 'done' | 'failed';

export interface SaslStep {
  /** lines to write to the client, each with its CRLF */
  reply: string;
  /** BEGIN came: the bytes after it start the message stream */
  begin?: { rest: Buffer };
  /** the exchange failed for good (garbage or too long): close the connection */
  fail?: string;
}

/** The bus's id as the server GUID in OK: 32 hex digits. */
export function serverGuid(busId?: Buffer): string {
  return (busId && busId.length === 16 ? busId : randomBytes(16)).toString('hex');
}

export class SaslServer {
  state: SaslState = 'nul';
  unixFd = false;
  private pending: Buffer = Buffer.alloc(0);
  private total = 0;
  private rejects = 0;

  constructor(private readonly peerUid: number, private readonly guid: string, private readonly fdsAllowed = true) {}

  /** Takes bytes from the client; answers what to send back and whether BEGIN came. */
  feed(data: Buffer): SaslStep {
    this.total += data.length;
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    let reply = '';
    if (this.state === 'nul') {
      if (!this.pending.length) return { reply };
      if (this.pending[0] !== 0) return this.failWith(reply, 'the first byte is not NUL');
      this.pending = this.pending.subarray(1);
      this.state = 'auth';
    }
    for (;;) {
      const nl = this.pending.indexOf('\r\n');
      if (nl < 0) {
        if (this.total > MAX_AUTH_BYTES) return this.failWith(reply, 'authentication longer than 16 KiB');
        return { reply };
      }
      const line = this.pending.toString('latin1', 0, nl);
      this.pending = this.pending.subarray(nl + 2);
      const r = this.line(line);
      reply += r.reply;
      if (r.fail) return this.failWith(reply, r.fail);
      if (r.begin) return { reply, begin: { rest: this.pending } };
    }
  }

  private failWith(reply: string, why: string): SaslStep {
    this.state = 'failed';
    return { reply, fail: why };
  }

  private reject(): { reply: string; fail?: string } {
    // dbus-daemon's max_auth_failures-like bound: a client may not try forever
    if (++this.rejects > 8) return { reply: '', fail: 'too many rejected attempts' };
    this.state = 'auth';
    return { reply: 'REJECTED EXTERNAL\r\n' };
  }

  private line(line: string): { reply: string; begin?: true; fail?: string } {
    const sp = line.indexOf(' ');
    const cmd = sp < 0 ? line : line.slice(0, sp);
    const arg = sp < 0 ? undefined : line.slice(sp + 1);
    switch (this.state) {
      case 'auth':
        if (cmd === 'AUTH') {
          if (arg === undefined) return { reply: 'REJECTED EXTERNAL\r\n' };
          const [mech, initial] = arg.split(' ');
          if (mech !== 'EXTERNAL') return this.reject();
          if (initial === undefined) {
            this.state = 'data';
            return { reply: 'DATA\r\n' };
          }
          return this.external(initial);
        }
        if (cmd === 'BEGIN') return { reply: '', fail: 'BEGIN before authentication' };
        if (cmd === 'ERROR' || cmd === 'CANCEL') return this.reject();
        return { reply: 'ERROR "unknown command"\r\n' };
      case 'data':
        if (cmd === 'DATA') return this.external(arg ?? '');
        if (cmd === 'CANCEL' || cmd === 'ERROR') return this.reject();
        if (cmd === 'BEGIN') return { reply: '', fail: 'BEGIN before authentication' };
        return this.reject();
      case 'ok':
        if (cmd === 'BEGIN') {
          this.state = 'done';
          return { reply: '', begin: true };
        }
        if (cmd === 'NEGOTIATE_UNIX_FD') {
          if (!this.fdsAllowed) return { reply: 'ERROR "fd passing is off"\r\n' };
          this.unixFd = true;
          return { reply: 'AGREE_UNIX_FD\r\n' };
        }
        if (cmd === 'CANCEL' || cmd === 'ERROR') return this.reject();
        return { reply: 'ERROR "unknown command"\r\n' };
      default:
        return { reply: '', fail: `line in state ${this.state}` };
    }
  }

  /** EXTERNAL: an empty identity means "whoever I am"; a given one must be the peer's uid (hex of its decimal text). */
  private external(hex: string): { reply: string } {
    if (hex !== '') {
      const claimed = /^([0-9a-fA-F]{2})+$/.test(hex) ? Buffer.from(hex, 'hex').toString('latin1') : '';
      if (!/^[0-9]+$/.test(claimed) || Number(claimed) !== this.peerUid) return this.reject();
    }
    this.state = 'ok';
    return { reply: `OK ${this.guid}\r\n` };
  }
}
