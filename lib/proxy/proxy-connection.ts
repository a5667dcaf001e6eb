// One classic D-Bus client of the proxy: its unix socket (SASL, then dbus1
// messages with SCM_RIGHTS fds) and its own kdbus connection, opened with
// the client's credentials so that receivers, CONN_INFO and kdbus policy
// see the client, not the proxy. Messages cross translated (translate.ts);
// calls to org.freedesktop.DBus are the driver's (driver.ts).
//
// Limits keep one client from hurting others: a message larger than
// maxMessageBytes or with more than maxMessageFds fds, garbage, or an
// authentication that does not finish in time closes the connection; a
// client that stops reading is not read for on the bus side (its kdbus queue
// fills and kdbus's quotas refuse senders) and is cut off when what waits for
// it passes maxOutgoingBytes.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { ATTACH, KDBUS_DST_ID_BROADCAST } from '../abi/kdbus.js';
import { CodecError } from '../client/codec-error.js';
import { Connection } from '../client/connection.js';
import { DBusError, ErrorName } from '../client/dbus-error.js';
import { MESSAGE_TYPE_NAMES, MessageFlag, MessageType, type DBusMessage } from '../client/dbus-message.js';
import { KdbusClientError } from '../client/errors.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';
import type { Message, Notification } from '../client/message.js';
import type { Creds, Pids } from '../client/metadata.js';
import { clientNative, POLL_DISCONNECT, POLL_READABLE, type PollHandle } from '../client/native.js';
import { ClientMatches, OWN_MATCH_COOKIE } from './client-matches.js';
import { decodeDbus1, encodeDbus1, dbus1MessageSize, FIXED_SIZE } from './dbus1-marshal.js';
import { DBusErrorName, Driver, DRIVER_PATH, errorForErrno } from './driver.js';
import { EAGAIN, unixPeer } from './native.js';
import { SaslServer } from './sasl.js';
import { closeQuietly, fromKdbusMessage, toKdbus } from './translate.js';
import type { XmlPolicy } from './xml-policy.js';

export interface ProxyLimits {
  /** dbus-daemon's max_message_size (system bus: 32 MiB) */
  maxMessageBytes: number;
  /** dbus-daemon's max_message_unix_fds (system bus: 16) */
  maxMessageFds: number;
  /** what may wait to be written to a client before it is cut off (dbus-daemon's max_outgoing_bytes) */
  maxOutgoingBytes: number;
  /** dbus-daemon's auth_timeout */
  authTimeoutMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxMessageBytes: 32 << 20,
  maxMessageFds: 16,
  maxOutgoingBytes: 64 << 20,
  authTimeoutMs: 30_000,
};

export interface PeerCred {
  pid: number; uid: number; gid: number;
  /** the client's security label (SO_PEERSEC), absent without an LSM */
  label?: string;
}

export interface ProxyConnectionOptions {
  /** the kdbus bus endpoint (a path, or a bus name under root) */
  bus: string;
  root?: string;
  guid: string;
  limits: ProxyLimits;
  policy: XmlPolicy | null;
  /** the uid that owns the bus: the one the policy lets connect before its user/group rules (BusProxy) */
  busOwner: number;
  /** pool size of each client's kdbus connection */
  poolSize?: number;
}

/** Messages read from the socket per readiness event, before others get their turn. */
const READ_BATCH = 32;
/** Stop taking bus messages for a client while this much waits to be written to it. */
const OUT_HIGH_WATER = 4 << 20;
const READ_CHUNK = 256 * 1024;
const WRITE_RETRY_MS = 2;

interface Outgoing { buf: Buffer; fds: number[] }

/** The client's uids and gids from /proc (SO_PEERCRED's ids where /proc tells nothing), and its label. */
export function clientIdentity(peer: PeerCred): { creds: Creds; pids: Pids; seclabel?: string } {
  const creds: Creds = {
    uid: peer.uid, euid: peer.uid, suid: peer.uid, fsuid: peer.uid, gid: peer.gid, egid: peer.gid, sgid: peer.gid, fsgid: peer.gid,
  };
  let ppid = 0;
  try {
    const status = readFileSync(`/proc/${peer.pid}/status`, 'utf8');
    const ids = (key: string): number[] | undefined => {
      const m = new RegExp(`^${key}:\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)`, 'm').exec(status);
      return m ? m.slice(1, 5).map(Number) : undefined;
    };
    const u = ids('Uid');
    const g = ids('Gid');
    // only when /proc agrees with the socket: the process may have changed ids since connecting
    if (u && u[1] === peer.uid) [creds.uid, creds.euid, creds.suid, creds.fsuid] = u as [number, number, number, number];
    if (g && g[1] === peer.gid) [creds.gid, creds.egid, creds.sgid, creds.fsgid] = g as [number, number, number, number];
    ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch { /* the process is gone: the socket's word stands */ }
  return { creds, pids: { pid: peer.pid, tid: peer.pid, ppid }, ...(peer.label !== undefined && { seclabel: peer.label }) };
}

/** Events: 'refused' (why: string) before the 'close' of a client the policy does not let connect; 'close' (why: string). */
export class ProxyConnection extends EventEmitter {
  private readonly sasl: SaslServer;
  private watch: PollHandle | null = null;
  private authTimer: NodeJS.Timeout | null;
  private closed = false;
  private kdbusConn: Connection | null = null;
  private driverInstance: Driver | null = null;
  private clientMatches: ClientMatches | null = null;
  private monitorRules: ClientMatches | null = null;
  private monitoring = false;
  // input: bytes not yet a whole message, fds not yet given to one
  private inChunks: Buffer[] = [];
  private inBytes = 0;
  private inFds: number[] = [];
  // output
  private readonly out: Outgoing[] = [];
  private outBytes = 0;
  private retry: NodeJS.Timeout | null = null;
  private pumpPaused = false;
  private driverSerial = 1;
  private readonly readBuf = Buffer.allocUnsafe(READ_CHUNK);
  uniqueName = '';

  constructor(readonly fd: number, readonly peer: PeerCred, private readonly opts: ProxyConnectionOptions) {
    super();
    this.sasl = new SaslServer(peer.uid, opts.guid);
    this.authTimer = setTimeout(() => this.close('authentication timed out'), opts.limits.authTimeoutMs);
    const w = clientNative.pollStart(fd, (status, events) => this.onSocket(status, events));
    if (typeof w === 'number') {
      this.close(`cannot watch the socket (errno ${-w})`);
      return;
    }
    this.watch = w;
  }

  get authenticated(): boolean {
    return this.sasl.state === 'done';
  }

  get kdbus(): Connection {
    return this.kdbusConn!;
  }

  get matches(): ClientMatches {
    return this.clientMatches!;
  }

  get uid(): number {
    return this.peer.uid;
  }

  // ---------------------------------------------------------------- socket in

  private onSocket(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) return this.close(`socket error ${status}`);
    if (events & POLL_READABLE) {
      for (let i = 0; i < READ_BATCH && !this.closed; i++) {
        const r = unixPeer.recv(this.fd, this.readBuf);
        if (typeof r === 'number') {
          if (r === -EAGAIN) break;
          return this.close(`read failed (errno ${-r})`);
        }
        const [n, ...fds] = r as [number, ...number[]];
        if (n === 0 && fds.length === 0) return this.close('the client closed the connection');
        this.inFds.push(...fds);
        if (this.inFds.length > this.opts.limits.maxMessageFds * 4 + 253) return this.close('too many fds sent');
        this.onBytes(Buffer.from(this.readBuf.subarray(0, n)));
        // a short read emptied the socket: no recvmsg that only says EAGAIN (poll tells when more comes)
        if (n < this.readBuf.length) break;
      }
    } else if (events & POLL_DISCONNECT) {
      this.close('the client hung up');
    }
  }

  private onBytes(data: Buffer): void {
    if (this.sasl.state !== 'done') {
      const step = this.sasl.feed(data);
      if (step.reply) this.write(Buffer.from(step.reply, 'latin1'), []);
      if (step.fail) return this.close(`authentication failed: ${step.fail}`);
      if (!step.begin) return;
      this.begin();
      data = step.begin.rest;
      if (this.closed || !data.length) return;
    }
    this.inChunks.push(data);
    this.inBytes += data.length;
    this.parseMessages();
  }

  private parseMessages(): void {
    while (!this.closed && this.inBytes >= FIXED_SIZE) {
      // the fixed header may span reads; the chunks are joined once the whole message is there
      if (this.inChunks[0]!.length < FIXED_SIZE) this.inChunks = [Buffer.concat(this.inChunks)];
      let size: number;
      try {
        size = dbus1MessageSize(this.inChunks[0]!);
      } catch (e) {
        return this.close(`garbage from the client: ${(e as Error).message}`);
      }
      if (size > this.opts.limits.maxMessageBytes) return this.close(`a message of ${size} bytes (limit ${this.opts.limits.maxMessageBytes})`);
      if (this.inBytes < size) return;
      if (this.inChunks.length > 1) this.inChunks = [Buffer.concat(this.inChunks)];
      const buf = this.inChunks[0]!;
      const raw = buf.subarray(0, size);
      this.inChunks = size < buf.length ? [buf.subarray(size)] : [];
      this.inBytes -= size;
      let m: DBusMessage;
      try {
        m = decodeDbus1(raw);
      } catch (e) {
        if (e instanceof CodecError) return this.close(`malformed message: ${e.message}`);
        throw e;
      }
      const n = m.unixFds ?? 0;
      if (n > this.opts.limits.maxMessageFds) return this.close(`a message with ${n} fds (limit ${this.opts.limits.maxMessageFds})`);
      if (n > this.inFds.length) return this.close(`a message declares ${n} fds, ${this.inFds.length} came`);
      const fds = this.inFds.splice(0, n);
      try {
        this.fromClient(m, fds);
      } finally {
        for (const fd of fds) closeQuietly(fd);
      }
    }
  }

  // ---------------------------------------------------------------- kdbus side

  /**
   * BEGIN: the client's kdbus connection, with the client's identity on it:
   * its creds, pids and security label (SO_PEERSEC) as HELLO's CREDS, PIDS
   * and SECLABEL, as systemd-bus-proxyd faked them. Without a label (no LSM)
   * the connection has none, and GetConnectionSELinuxSecurityContext answers
   * SELinuxSecurityContextUnknown, as dbus-daemon does.
   */
  private begin(): void {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
    // dbus-daemon decides whether the authenticated uid may connect once BEGIN came, and
    // hangs up on one it refuses (the client saw OK): no kdbus connection is made for it
    const refused = this.opts.policy?.connectDenied(this.peer.uid, this.opts.busOwner);
    if (refused) {
      this.emit('refused', refused);
      return this.close(`refused: ${refused}`);
    }
    const identity = clientIdentity(this.peer);
    const open = (who: Partial<typeof identity>): Connection => Connection.open(this.opts.bus, {
      ...(this.opts.root !== undefined && { root: this.opts.root }),
      ...(this.opts.poolSize !== undefined && { poolSize: this.opts.poolSize }),
      acceptFds: this.sasl.unixFd,
      attachRecv: ATTACH.NAMES,
      description: `proxy-pid-${this.peer.pid}`,
      impersonate: who,
      receive: 'copy',
      autoReceive: false,
    });
    try {
      try {
        this.kdbusConn = open(identity);
      } catch (e) {
        // PIDS naming a process that is gone is EINVAL (as the kernel's find_get_pid): a client
        // that sent its last message and exited still gets it delivered, under its uid
        if (!(e instanceof KdbusClientError && e.code === 'EINVAL')) throw e;
        this.kdbusConn = open({ creds: identity.creds, ...(identity.seclabel !== undefined && { seclabel: identity.seclabel }) });
      }
    } catch (e) {
      return this.close(`cannot connect to the bus: ${(e as Error).message}`);
    }
    const k = this.kdbusConn;
    this.uniqueName = `:1.${k.id}`;
    this.clientMatches = new ClientMatches(k);
    this.driverInstance = new Driver(this);
    // NameAcquired / NameLost: the kernel's name notifications about this connection
    try {
      k.addMatch(OWN_MATCH_COOKIE, { nameAdd: { newId: k.id } });
      k.addMatch(OWN_MATCH_COOKIE, { nameChange: { newId: k.id } });
      k.addMatch(OWN_MATCH_COOKIE, { nameChange: { oldId: k.id } });
      k.addMatch(OWN_MATCH_COOKIE, { nameRemove: { oldId: k.id } });
    } catch (e) {
      return this.close(`cannot add the name matches: ${(e as Error).message}`);
    }
    k.on('readable', () => this.pump());
    k.on('hangup', () => this.close('the bus connection hung up'));
    this.pump();
  }

  /**
   * Takes a bus message for the client while it keeps up (see
   * OUT_HIGH_WATER), then watches again: poll is level-triggered, so the next
   * 'readable' comes at once when more is queued, without a RECV that finds
   * the queue empty (each RECV is a round trip to the bus). Not receiving
   * (the client is behind) leaves the connection unwatched until flush()
   * pumps again: kdbus's quotas then answer the senders.
   */
  private pump(): void {
    const k = this.kdbusConn;
    if (!k || this.closed) return;
    if (this.outBytes > OUT_HIGH_WATER) {
      this.pumpPaused = true;
      return;
    }
    let msg: Message | null;
    try {
      msg = k.recv();
    } catch (e) {
      return this.close(`receiving from the bus failed: ${(e as Error).message}`);
    }
    if (!msg) return;
    try {
      this.fromBus(msg);
    } catch (e) {
      for (const fd of msg.fds) closeQuietly(fd);
      if (!(e instanceof CodecError)) throw e;
    }
    if (!this.closed && this.kdbusConn === k) k.resume();
  }

  private fromBus(k: Message): void {
    if (k.notification) return this.fromKernel(k.notification, k);
    const m = fromKdbusMessage(k, this.uniqueName);
    if (!m) {
      for (const fd of k.fds) closeQuietly(fd);
      return;
    }
    const names = k.metadata.ownedNames?.map(n => n.name);
    const wanted = this.monitoring
      ? this.monitorRules!.size === 0 || this.monitorRules!.wants(m, names)
      : k.dstId !== KDBUS_DST_ID_BROADCAST || this.clientMatches!.wants(m, names);
    const deniedBy = wanted && !this.monitoring ? this.opts.policy?.receiveDenied(this.peer, m, names ?? []) : null;
    if (!wanted || deniedBy || (k.fds.length && !this.sasl.unixFd)) {
      for (const fd of k.fds) closeQuietly(fd);
      return;
    }
    m.unixFds = k.fds.length;
    if (!m.unixFds) delete m.unixFds;
    this.write(encodeDbus1(m), k.fds);
  }

  /** The kernel's notifications as the driver's signals and errors. */
  private fromKernel(n: Notification, k: Message): void {
    const self = this.kdbusConn!.id;
    if (n.type === 'reply-timeout' || n.type === 'reply-dead') {
      this.errorToClient(Number(n.cookie), ErrorName.NO_REPLY, n.type === 'reply-timeout'
        ? 'Did not receive a reply: the reply timeout expired'
        : 'Message recipient disconnected from message bus without replying');
      return;
    }
    const unique = (id: bigint): string => (id ? `:1.${id}` : '');
    let args: [string, string, string];
    if ('name' in n) {
      if (n.newId === self && n.oldId !== self) this.driverInstance!.signalTo('NameAcquired', n.name);
      if (n.oldId === self && n.newId !== self) this.driverInstance!.signalTo('NameLost', n.name);
      args = [n.name, unique(n.oldId), unique(n.newId)];
    } else if ('id' in n) {
      args = n.type === 'id-add' ? [unique(n.id), '', unique(n.id)] : [unique(n.id), unique(n.id), ''];
    } else return;
    const sig: DBusMessage = {
      type: MessageType.SIGNAL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: Number(k.cookie & 0xffff_ffffn) || 1,
      sender: DRIVER_NAME, path: DRIVER_PATH, interface: DRIVER_NAME, member: 'NameOwnerChanged', signature: 'sss', body: args,
    };
    if (this.monitoring ? this.monitorRules!.size === 0 || this.monitorRules!.wants(sig) : this.clientMatches!.wants(sig)) {
      this.sendFromDriver(sig);
    }
  }

  // ---------------------------------------------------------------- client to bus

  private fromClient(m: DBusMessage, fds: number[]): void {
    const driver = this.driverInstance!;
    if (this.monitoring) return this.close('a monitor sent a message');
    if (!driver.helloReceived && !(m.destination === DRIVER_NAME && m.member === 'Hello' && m.type === MessageType.METHOD_CALL)) {
      return this.close(`the first message was not Hello: ${MESSAGE_TYPE_NAMES[m.type]} ${m.interface}.${m.member} to ${m.destination}`);
    }
    if (m.destination === DRIVER_NAME) {
      void driver.handle(m);
      return;
    }
    const expectsReply = m.type === MessageType.METHOD_CALL && (m.flags & MessageFlag.NO_REPLY_EXPECTED) === 0;
    const denied = this.opts.policy?.sendDenied(this.peer, m);
    if (denied) {
      if (expectsReply) this.errorToClient(m.cookie, DBusErrorName.ACCESS_DENIED, denied);
      return;
    }
    let memfd = -1;
    try {
      const out = toKdbus(m, fds, this.kdbusConn!.bloom);
      memfd = out.memfd;
      this.kdbusConn!.send(out.send);
    } catch (e) {
      if (e instanceof CodecError) {
        if (expectsReply) this.errorToClient(m.cookie, ErrorName.INVALID_ARGS, e.message);
        return;
      }
      if (!expectsReply) return;
      const err = e instanceof DBusError ? e : errorForErrno(e, `sending to ${m.destination ?? 'the bus'}`);
      this.errorToClient(m.cookie, err.errorName, err.message);
    } finally {
      closeQuietly(memfd);
    }
  }

  private errorToClient(replyCookie: number, errorName: string, text: string): void {
    this.sendFromDriver({
      type: MessageType.ERROR, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0, replyCookie, errorName,
      signature: 's', body: [text], sender: DRIVER_NAME, destination: this.uniqueName,
    });
  }

  // ---------------------------------------------------------------- DriverHost

  sendFromDriver(m: DBusMessage): void {
    if (this.closed) return;
    m.cookie = this.driverSerial;
    this.driverSerial = this.driverSerial >= 0xffff_ffff ? 1 : this.driverSerial + 1;
    this.write(encodeDbus1(m), []);
  }

  wakeActivator(name: string): void {
    const k = this.kdbusConn!;
    const out = toKdbus({
      type: MessageType.METHOD_CALL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0xffff_fff0, destination: name,
      path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping', signature: '', body: [],
    }, [], k.bloom);
    k.send(out.send);
  }

  ownDenied(name: string): string | null {
    return this.opts.policy?.ownDenied(this.peer, name) ?? null;
  }

  /**
   * BecomeMonitor: the client's connection leaves the bus (its names go) and
   * a kdbus monitor connection takes its place; every message on the bus is
   * passed to the client from then on, filtered by `rules` when given.
   */
  becomeMonitor(rules: string[]): void {
    const old = this.kdbusConn!;
    const mon = Connection.open(this.opts.bus, {
      ...(this.opts.root !== undefined && { root: this.opts.root }),
      kind: 'monitor', acceptFds: this.sasl.unixFd, attachRecv: ATTACH.NAMES, description: `proxy-monitor-pid-${this.peer.pid}`,
      receive: 'copy', autoReceive: false,
    });
    const matches = new ClientMatches(mon);
    for (const r of rules) matches.addLocal(r);
    // the reply to BecomeMonitor goes out first, then NameLost for the unique name (as dbus-daemon)
    setImmediate(() => {
      if (this.closed) return mon.close();
      this.driverInstance!.signalTo('NameLost', this.uniqueName);
      old.removeAllListeners();
      old.close();
      this.kdbusConn = mon;
      this.monitorRules = matches;
      this.monitoring = true;
      mon.on('readable', () => this.pump());
      mon.on('hangup', () => this.close('the monitor connection hung up'));
      this.pump();
    });
  }

  // ---------------------------------------------------------------- socket out

  private write(buf: Buffer, fds: number[]): void {
    if (this.closed) {
      for (const fd of fds) closeQuietly(fd);
      return;
    }
    this.out.push({ buf, fds });
    this.outBytes += buf.length;
    if (this.outBytes > this.opts.limits.maxOutgoingBytes) {
      return this.close(`the client does not read (${this.outBytes} bytes wait for it)`);
    }
    if (!this.retry) this.flush();
  }

  private flush(): void {
    this.retry = null;
    while (this.out.length && !this.closed) {
      const o = this.out[0]!;
      const n = unixPeer.send(this.fd, o.buf, o.fds);
      if (n === -EAGAIN) {
        this.retry = setTimeout(() => this.flush(), WRITE_RETRY_MS);
        return;
      }
      if (n < 0) return this.close(`write failed (errno ${-n})`);
      // the fds went with the first byte
      for (const fd of o.fds) closeQuietly(fd);
      o.fds = [];
      this.outBytes -= n;
      if (n < o.buf.length) o.buf = o.buf.subarray(n);
      else this.out.shift();
    }
    if (this.pumpPaused && this.outBytes <= OUT_HIGH_WATER / 2) {
      this.pumpPaused = false;
      this.pump();
    }
  }

  // ---------------------------------------------------------------- the end

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.authTimer) clearTimeout(this.authTimer);
    if (this.retry) clearTimeout(this.retry);
    if (this.watch) clientNative.pollStop(this.watch);
    this.watch = null;
    for (const o of this.out) for (const fd of o.fds) closeQuietly(fd);
    this.out.length = 0;
    for (const fd of this.inFds) closeQuietly(fd);
    this.inFds = [];
    if (this.kdbusConn) {
      this.kdbusConn.removeAllListeners();
      this.kdbusConn.close();
    }
    clientNative.close(this.fd);
    this.emit('close', why);
  }
}
