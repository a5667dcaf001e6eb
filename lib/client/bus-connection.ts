// A D-Bus connection over a kdbus connection, the way sd-bus of 2015 spoke
// D-Bus on kdbus: every message a KDBUS_PAYLOAD_DBUS kdbus message (header
// and body as PAYLOAD_VEC items, a body past MEMFD_MIN_SIZE in a sealed
// memfd), the serial as the kdbus cookie, signals broadcast with the sd-bus
// bloom filter, and the org.freedesktop.DBus calls answered here with kdbus
// commands (bus-control.c), since no bus daemon exists on kdbus.
import { EventEmitter } from 'node:events';
import { closeSync } from 'node:fs';
import {
  ATTACH, KDBUS_DST_ID_BROADCAST, KDBUS_DST_ID_NAME, MSG_NO_AUTO_START, MSG_SIGNAL, NAME_ACTIVATOR, PAYLOAD_DBUS,
} from '../abi/kdbus.js';
import { CodecError } from './codec-error.js';
import { Connection, DEFAULT_CALL_TIMEOUT_MS, type ConnectOptions, type SendOptions } from './connection.js';
import { DBusError, ErrorName } from './dbus-error.js';
import {
  errorReply, errorText, methodCall, methodReturn, MessageFlag, MessageType, signal, type DBusMessage,
} from './dbus-message.js';
import { isUniqueName, uniqueNameId } from './dbus-names.js';
import { KdbusClientError } from './errors.js';
import { DRIVER_NAME, fromKdbus, kdbusEnvelope } from './kdbus-envelope.js';
import { installMatch } from './match-install.js';
import { kdbusMatch, matchesMessage, parseMatchRule, type MatchRule } from './match-rule.js';
import { releaseName, requestName } from './name-requests.js';
import { readMemfd, sealedMemfd } from './memfd.js';
import type { Message, Notification } from './message.js';
import { ObjectTree, type InterfaceSpec, type ExportedObject } from './objects.js';
import { Proxy } from './proxy.js';
import type { DBusValue } from './variant.js';

/** sd-bus put a body part larger than this into a memfd (bus-kernel.h MEMFD_MIN_SIZE). */
export const MEMFD_MIN_SIZE = 512 * 1024;

const DRIVER_PATH = '/org/freedesktop/DBus';

export { RequestNameFlag, RequestNameReply, ReleaseNameReply } from './name-requests.js';

/** A received D-Bus message with the fds that came with it (the receiver closes them). */
export interface IncomingMessage extends DBusMessage {
  fds: number[];
  /** the well-known names the sender owned when it sent (kdbus's NAMES metadata), when attached */
  senderNames?: string[];
}

export interface CallOptions {
  destination: string;
  path: string;
  interface?: string;
  member: string;
  signature?: string;
  body?: DBusValue[];
  fds?: number[];
  /** the reply's deadline (default 25 s, sd-bus's) */
  timeoutMs?: number;
  noAutoStart?: boolean;
}

export interface SignalOptions {
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: DBusValue[];
  /** unicast to this name instead of a broadcast */
  destination?: string;
}

/** One AddMatch: its text, its kdbus match cookie, what it calls. */
export interface Subscription {
  readonly rule: string;
  readonly cookie: bigint;
  remove(): void;
}

interface LocalMatch {
  text: string;
  rule: MatchRule;
  cookie: bigint;
  handler?: (m: IncomingMessage) => void;
}

export interface Credentials {
  UnixUserID?: number;
  UnixGroupIDs?: number[];
  ProcessID?: number;
}

export type BusConnectOptions = Omit<ConnectOptions, 'receive' | 'autoReceive' | 'kind' | 'name' | 'grants'>;

/**
 * Events: 'signal' (IncomingMessage: every signal received), 'malformed'
 * (CodecError: a message that was dropped), 'hangup'. Method calls go to
 * the exported objects (ObjectTree), which answer every one.
 */
export class BusConnection extends EventEmitter {
  readonly uniqueName: string;
  private nextSerial = 1;
  private nextMatchCookie = 1n;
  private readonly matches: LocalMatch[] = [];
  readonly objects: ObjectTree;

  private constructor(readonly kdbus: Connection) {
    super();
    this.uniqueName = `:1.${kdbus.id}`;
    this.objects = new ObjectTree(this);
    kdbus.on('message', (m: Message) => this.onKdbusMessage(m));
    kdbus.on('notification', (n: Notification, m: Message) => this.onNotification(n, m));
    kdbus.on('hangup', (cause?: Error) => this.emit('hangup', cause));
  }

  /** Connects to the bus at `bus` (a bus file's path or a bus name under opts.root). */
  static async connect(bus: string, opts: BusConnectOptions = {}): Promise<BusConnection> {
    // what GetConnectionCredentials and the handlers need to know of a sender
    const attachRecv = opts.attachRecv ?? (ATTACH.CREDS | ATTACH.PIDS | ATTACH.NAMES);
    return new BusConnection(Connection.open(bus, { ...opts, attachRecv, receive: 'copy', autoReceive: true }));
  }

  close(): void {
    this.kdbus.close();
  }

  // ---- sending ----

  private serial(): number {
    const s = this.nextSerial;
    this.nextSerial = s >= 0xffff_ffff ? 1 : s + 1;
    return s;
  }

  /** Numbers `m` and puts it on kdbus as bus_message_setup_kmsg did; returns its serial. */
  private sendMessage(m: DBusMessage, fds: number[] = [], timeoutMs?: number): Promise<Message> | number {
    m.cookie = this.serial();
    if (fds.length) m.unixFds = fds.length;
    const env = kdbusEnvelope(m, this.kdbus.bloom);
    const unicast = env.dstId !== KDBUS_DST_ID_BROADCAST;
    const memfd = unicast && env.body.length > MEMFD_MIN_SIZE ? sealedMemfd(env.body) : -1;
    const o: SendOptions = {
      ...(env.dstId === KDBUS_DST_ID_NAME ? { name: env.dstName! } : unicast ? { dst: env.dstId } : { broadcast: true }),
      payload: memfd >= 0 ? [env.header] : [env.header, env.body],
      ...(memfd >= 0 && { memfds: [{ fd: memfd, size: env.body.length }] }),
      ...(fds.length && { fds }),
      ...(env.bloomFilter && { bloom: env.bloomFilter }),
      cookie: env.cookie,
      cookieReply: env.cookieReply,
      noAutoStart: (env.flags & MSG_NO_AUTO_START) !== 0n,
      signal: (env.flags & MSG_SIGNAL) !== 0n,
    };
    try {
      if ((m.flags & MessageFlag.NO_REPLY_EXPECTED) === 0) {
        return this.kdbus.call({ ...o, timeoutMs: timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS });
      }
      this.kdbus.send(o);
      return m.cookie;
    } finally {
      if (memfd >= 0) closeSync(memfd);
    }
  }

  /** Calls a method; resolves with the reply, rejects with DBusError (an ERROR reply, no owner, timeout). */
  async call(o: CallOptions): Promise<IncomingMessage> {
    const m = methodCall({
      destination: o.destination, path: o.path, member: o.member,
      ...(o.interface !== undefined && { interface: o.interface }),
      flags: o.noAutoStart ? MessageFlag.NO_AUTO_START : 0,
      signature: o.signature ?? '', body: o.body ?? [],
    });
    let reply: Message;
    try {
      reply = await (this.sendMessage(m, o.fds, o.timeoutMs) as Promise<Message>);
    } catch (e) {
      throw asDBusError(e, o.destination);
    }
    const r = this.decode(reply);
    if (!r) throw new DBusError(ErrorName.FAILED, 'the reply was malformed');
    if (r.type === MessageType.ERROR) {
      for (const fd of r.fds) closeSync(fd);
      throw new DBusError(r.errorName!, errorText(r) ?? '');
    }
    return r;
  }

  /** Emits a signal (a broadcast with its bloom filter, or unicast to `destination`). */
  emitSignal(o: SignalOptions): void {
    this.sendMessage(signal({
      path: o.path, interface: o.interface, member: o.member,
      ...(o.destination !== undefined && { destination: o.destination }),
      signature: o.signature ?? '', body: o.body ?? [],
    }));
  }

  /** Answers a method call (nothing is sent when the caller expects no reply). */
  reply(call: IncomingMessage, signature = '', body: DBusValue[] = [], fds: number[] = []): void {
    if (call.flags & MessageFlag.NO_REPLY_EXPECTED) return;
    this.sendMessage(methodReturn(call, { signature, body }), fds);
  }

  replyError(call: IncomingMessage, errorName: string, text?: string): void {
    if (call.flags & MessageFlag.NO_REPLY_EXPECTED) return;
    this.sendMessage(errorReply(call, errorName, text));
  }

  // ---- receiving ----

  /** The D-Bus message in a kdbus message (bus_kernel_make_message), or null when it is none or malformed. */
  private decode(k: Message): IncomingMessage | null {
    if (k.payloadType !== PAYLOAD_DBUS) {
      for (const fd of k.fds) if (fd >= 0) closeSync(fd);
      for (const mf of k.memfds) closeSync(mf.fd);
      return null;
    }
    try {
      const parts = [...k.payload];
      for (const mf of k.memfds) parts.push(readMemfd(mf.fd, mf.start, mf.size));
      const m = fromKdbus(Buffer.concat(parts), {
        flags: k.flags, srcId: k.srcId, dstId: k.dstId, cookie: k.cookie, cookieReply: k.cookieReply,
        fdCount: k.fds.length, ...(k.dstName !== undefined && { dstName: k.dstName }),
      }, this.uniqueName);
      const names = k.metadata.ownedNames?.map(n => n.name);
      return Object.assign(m, { fds: k.fds }, names && { senderNames: names });
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      for (const fd of k.fds) if (fd >= 0) closeSync(fd);
      this.emit('malformed', e);
      return null;
    } finally {
      for (const mf of k.memfds) closeSync(mf.fd);
    }
  }

  private onKdbusMessage(k: Message): void {
    const m = this.decode(k);
    if (!m) return;
    switch (m.type) {
      case MessageType.METHOD_CALL:
        void this.objects.dispatch(m);
        break;
      case MessageType.SIGNAL:
        this.deliverSignal(m);
        break;
      default:
        // a late reply to a call that timed out: nobody waits for it
        for (const fd of m.fds) closeSync(fd);
    }
  }

  private deliverSignal(m: IncomingMessage): void {
    for (const match of [...this.matches]) {
      if (match.handler && localMatch(match.rule, m)) match.handler(m);
    }
    this.emit('signal', m);
  }

  /** The kernel's name and id notifications, as the NameOwnerChanged signal sd-bus made of them. */
  private onNotification(n: Notification, k: Message): void {
    const unique = (id: bigint): string => (id ? `:1.${id}` : '');
    let args: string[];
    if ('name' in n) args = [n.name, unique(n.oldId), unique(n.newId)];
    else if ('id' in n) args = [unique(n.id), n.type === 'id-add' ? '' : unique(n.id), n.type === 'id-add' ? unique(n.id) : ''];
    else return; // reply timeouts and deaths are the calls' business
    this.deliverSignal({
      type: MessageType.SIGNAL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: Number(k.cookie & 0xffff_ffffn),
      sender: DRIVER_NAME, path: DRIVER_PATH, interface: DRIVER_NAME, member: 'NameOwnerChanged',
      signature: 'sss', body: args, fds: [],
    });
  }

  // ---- objects ----

  /** Exports an object at `path` with its interfaces (see ObjectTree.export). */
  export(path: string, interfaces: Record<string, InterfaceSpec>): ExportedObject {
    return this.objects.export(path, interfaces);
  }

  /** A proxy for a remote object's interface. */
  proxy(destination: string, path: string, iface: string): Proxy {
    return new Proxy(this, destination, path, iface);
  }

  // ---- org.freedesktop.DBus, answered with kdbus commands ----

  /** Hello: this connection's unique name. */
  hello(): string {
    return this.uniqueName;
  }

  /** GetId: the bus's 128-bit id in hex. */
  getId(): string {
    return this.kdbus.busId.toString('hex');
  }

  /** ListNames: org.freedesktop.DBus, every unique name and every owned well-known name. */
  listNames(): string[] {
    return this.nameList({ unique: true, names: true });
  }

  /** ListActivatableNames: org.freedesktop.DBus and the names activators hold. */
  listActivatableNames(): string[] {
    return this.nameList({ activators: true });
  }

  private nameList(f: { unique?: boolean; names?: boolean; activators?: boolean }): string[] {
    const out = new Set<string>([DRIVER_NAME]);
    for (const e of this.kdbus.listNames(f)) {
      if (e.name !== undefined) {
        if (!f.activators || (e.nameFlags ?? 0n) & NAME_ACTIVATOR) out.add(e.name);
      } else if (f.unique) out.add(`:1.${e.ownerId}`);
    }
    return [...out];
  }

  nameHasOwner(name: string): boolean {
    if (name === DRIVER_NAME) return true;
    try {
      this.kdbus.connInfo(target(name), 0n);
      return true;
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) return false;
      throw e;
    }
  }

  /** GetNameOwner: the unique name owning `name`; NameHasNoOwner when nobody does. */
  getNameOwner(name: string): string {
    if (name === DRIVER_NAME) return DRIVER_NAME;
    return `:1.${this.info(name, 0n).id}`;
  }

  getConnectionUnixUser(name: string): number {
    const uid = this.info(name, ATTACH.CREDS).metadata.creds?.uid;
    if (uid === undefined) throw new DBusError(ErrorName.FAILED, `no credentials known for ${name}`);
    return uid;
  }

  getConnectionUnixProcessID(name: string): number {
    const pid = this.info(name, ATTACH.PIDS).metadata.pids?.pid;
    if (pid === undefined) throw new DBusError(ErrorName.FAILED, `no process known for ${name}`);
    return pid;
  }

  /** GetConnectionCredentials: what the kernel tells of the owner (its a{sv} as an object). */
  getConnectionCredentials(name: string): Credentials {
    const md = this.info(name, ATTACH.CREDS | ATTACH.PIDS | ATTACH.AUXGROUPS).metadata;
    return {
      ...(md.creds && { UnixUserID: md.creds.uid }),
      ...(md.auxGroups && { UnixGroupIDs: md.auxGroups }),
      ...(md.pids && { ProcessID: md.pids.pid }),
    };
  }

  private info(name: string, attach: bigint) {
    try {
      return this.kdbus.connInfo(target(name), attach);
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) {
        throw new DBusError(ErrorName.NAME_HAS_NO_OWNER, `could not get the owner of name '${name}': no such name`);
      }
      throw e;
    }
  }

  /** RequestName with the D-Bus flags (RequestNameFlag); answers RequestNameReply as bus_request_name_kernel read kdbus. */
  requestName(name: string, flags = 0): number {
    return requestName(this.kdbus, name, flags);
  }

  releaseName(name: string): number {
    return releaseName(this.kdbus, name, () => this.nameHasOwner(name));
  }

  /**
   * AddMatch: the rule's kdbus matches (bloom mask, sender; name and id
   * notifications for NameOwnerChanged) under a cookie of their own; the
   * handler gets the signals the rule matches.
   */
  addMatch(text: string, handler?: (m: IncomingMessage) => void): Subscription {
    let rule: MatchRule;
    try {
      rule = parseMatchRule(text);
    } catch (e) {
      throw new DBusError(ErrorName.MATCH_RULE_INVALID, (e as Error).message);
    }
    const km = kdbusMatch(rule, this.kdbus.bloom);
    const cookie = this.nextMatchCookie++;
    installMatch(this.kdbus, cookie, km);
    const local: LocalMatch = { text, rule, cookie, ...(handler && { handler }) };
    this.matches.push(local);
    return { rule: text, cookie, remove: () => this.dropMatch(local) };
  }

  /** RemoveMatch: the first match added with exactly this text; MatchRuleNotFound when none. */
  removeMatch(text: string): void {
    const m = this.matches.find(x => x.text === text);
    if (!m) throw new DBusError(ErrorName.MATCH_RULE_NOT_FOUND, `no match rule '${text}'`);
    this.dropMatch(m);
  }

  private dropMatch(m: LocalMatch): void {
    const i = this.matches.indexOf(m);
    if (i < 0) return;
    this.matches.splice(i, 1);
    this.kdbus.removeMatch(m.cookie);
  }
}

/** CONN_INFO's target: the id of a unique name, the name itself otherwise. */
function target(name: string): bigint | string {
  return isUniqueName(name) ? uniqueNameId(name)! : name;
}

/**
 * The rule checked against a received signal. The message names its sender
 * by unique name only: a well-known sender is checked against the names
 * metadata, or left to the kernel (the NAME item of the kdbus match) when
 * the sender attached none.
 */
function localMatch(rule: MatchRule, m: IncomingMessage): boolean {
  if (rule.sender !== undefined && !isUniqueName(rule.sender) && rule.sender !== DRIVER_NAME) {
    if (m.senderNames && !m.senderNames.includes(rule.sender)) return false;
    const { sender: _ignored, ...rest } = rule;
    return matchesMessage(rest as MatchRule, m);
  }
  return matchesMessage(rule, m);
}

/** A failed send or call as the D-Bus error sd-bus reported for it. */
function asDBusError(e: unknown, destination: string): unknown {
  if (!(e instanceof KdbusClientError)) return e;
  switch (e.code) {
    case 'ESRCH':
    case 'ENXIO':
    case 'EADDRNOTAVAIL':
      return new DBusError(ErrorName.SERVICE_UNKNOWN, `the name ${destination} was not provided by any service`);
    case 'ETIMEDOUT':
      return new DBusError(ErrorName.NO_REPLY, 'the method call timed out');
    case 'ECONNRESET':
      return new DBusError(ErrorName.NO_REPLY, 'the peer went away without replying');
    default:
      return new DBusError(ErrorName.FAILED, e.message);
  }
}
