// systemd's readiness protocol (sd_notify(3)), without a systemd library: a
// service of Type=notify gets $NOTIFY_SOCKET, a unix datagram socket ('@' first:
// abstract), and sends it "READY=1" once it serves, "STOPPING=1" on its way
// down, "STATUS=..." for `systemctl status`. Outside such a service nothing is
// sent. A datagram that cannot go out at once is dropped: the server never
// waits for systemd.
import { log } from './log.js';

export type DatagramSend = (path: string, data: Buffer) => number;

export class Notifier {
  private readonly socket: string | null;

  constructor(private readonly send: DatagramSend, env: NodeJS.ProcessEnv = process.env) {
    const s = env.NOTIFY_SOCKET ?? '';
    this.socket = s.startsWith('/') || s.startsWith('@') ? s : null;
  }

  get active(): boolean {
    return this.socket !== null;
  }

  ready(status: string): void {
    this.notify(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`);
  }

  stopping(status: string): void {
    this.notify(`STOPPING=1\nSTATUS=${status}`);
  }

  status(status: string): void {
    this.notify(`STATUS=${status}`);
  }

  private notify(text: string): void {
    if (!this.socket) return;
    const r = this.send(this.socket, Buffer.from(text));
    if (r < 0) log('notify', `cannot notify systemd at ${this.socket} (errno ${-r})`);
  }
}
