// org.freedesktop.DBus for one proxied client, answered from kdbus the way
// sd-bus and systemd-bus-proxyd did: names with NAME_ACQUIRE/RELEASE/LIST,
// owners and credentials with CONN_INFO, match rules with MATCH_ADD/REMOVE,
// activation by a message to the activator. The client's kdbus connection
// acts for it, so kdbus's own checks (and policy) apply to the client.
import { readFileSync } from 'node:fs';
import { ATTACH, HELLO_ACTIVATOR, NAME_ACTIVATOR } from '../abi/kdbus.js';
import { releaseName, requestName } from '../client/name-requests.js';
import type { Connection } from '../client/connection.js';
import { DBusError, ErrorName } from '../client/dbus-error.js';
import { MessageFlag, MessageType, type DBusMessage } from '../client/dbus-message.js';
import { isUniqueName, isWellKnownName, uniqueNameId } from '../client/dbus-names.js';
import { KdbusClientError } from '../client/errors.js';
import type { Info } from '../client/info.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';
import { Variant, type DBusValue } from '../client/variant.js';
import type { ClientMatches } from './client-matches.js';

export const DRIVER_PATH = '/org/freedesktop/DBus';
export const DBusErrorName = {
  ...ErrorName,
  ACCESS_DENIED: 'org.freedesktop.DBus.Error.AccessDenied',
  LIMITS_EXCEEDED: 'org.freedesktop.DBus.Error.LimitsExceeded',
  NOT_SUPPORTED: 'org.freedesktop.DBus.Error.NotSupported',
  ADT_UNKNOWN: 'org.freedesktop.DBus.Error.AdtAuditDataUnknown',
  SELINUX_UNKNOWN: 'org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown',
  UNIX_PROCESS_ID_UNKNOWN: 'org.freedesktop.DBus.Error.UnixProcessIdUnknown',
} as const;

/** What the driver needs of the client's proxy connection. */
export interface DriverHost {
  readonly kdbus: Connection;
  readonly uniqueName: string;
  readonly matches: ClientMatches;
  /** the client's uid (SO_PEERCRED) */
  readonly uid: number;
  /** a message from the driver to the client (numbered there) */
  sendFromDriver(m: DBusMessage): void;
  /** BecomeMonitor: the client's connection turns into a monitor of the bus with these rules */
  becomeMonitor(rules: string[]): void;
  /** a message to the activator holding `name`, which wakes whoever serves it */
  wakeActivator(name: string): void;
  /** the policy's word on owning a name (null: allowed) */
  ownDenied(name: string): string | null;
}

const INTROSPECTION = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.freedesktop.DBus">
    <method name="Hello"><arg direction="out" type="s"/></method>
    <method name="RequestName"><arg direction="in" type="s"/><arg direction="in" type="u"/><arg direction="out" type="u"/></method>
    <method name="ReleaseName"><arg direction="in" type="s"/><arg direction="out" type="u"/></method>
    <method name="StartServiceByName"><arg direction="in" type="s"/><arg direction="in" type="u"/><arg direction="out" type="u"/></method>
    <method name="UpdateActivationEnvironment"><arg direction="in" type="a{ss}"/></method>
    <method name="NameHasOwner"><arg direction="in" type="s"/><arg direction="out" type="b"/></method>
    <method name="ListNames"><arg direction="out" type="as"/></method>
    <method name="ListActivatableNames"><arg direction="out" type="as"/></method>
    <method name="AddMatch"><arg direction="in" type="s"/></method>
    <method name="RemoveMatch"><arg direction="in" type="s"/></method>
    <method name="GetNameOwner"><arg direction="in" type="s"/><arg direction="out" type="s"/></method>
    <method name="ListQueuedOwners"><arg direction="in" type="s"/><arg direction="out" type="as"/></method>
    <method name="GetConnectionUnixUser"><arg direction="in" type="s"/><arg direction="out" type="u"/></method>
    <method name="GetConnectionUnixProcessID"><arg direction="in" type="s"/><arg direction="out" type="u"/></method>
    <method name="GetAdtAuditSessionData"><arg direction="in" type="s"/><arg direction="out" type="ay"/></method>
    <method name="GetConnectionSELinuxSecurityContext"><arg direction="in" type="s"/><arg direction="out" type="ay"/></method>
    <method name="GetConnectionCredentials"><arg direction="in" type="s"/><arg direction="out" type="a{sv}"/></method>
    <method name="ReloadConfig"/>
    <method name="GetId"><arg direction="out" type="s"/></method>
    <signal name="NameOwnerChanged"><arg type="s"/><arg type="s"/><arg type="s"/></signal>
    <signal name="NameLost"><arg type="s"/></signal>
    <signal name="NameAcquired"><arg type="s"/></signal>
    <property name="Features" type="as" access="read"/>
    <property name="Interfaces" type="as" access="read"/>
  </interface>
  <interface name="org.freedesktop.DBus.Monitoring">
    <method name="BecomeMonitor"><arg direction="in" type="as"/><arg direction="in" type="u"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg direction="out" type="s"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg direction="out" type="s"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get"><arg direction="in" type="s"/><arg direction="in" type="s"/><arg direction="out" type="v"/></method>
    <method name="GetAll"><arg direction="in" type="s"/><arg direction="out" type="a{sv}"/></method>
    <method name="Set"><arg direction="in" type="s"/><arg direction="in" type="s"/><arg direction="in" type="v"/></method>
  </interface>
</node>
`;

type Reply = { signature: string; body: DBusValue[] };
type Method = (args: DBusValue[], call: DBusMessage) => Reply | Promise<Reply>;

const none: Reply = { signature: '', body: [] };

/** kdbus errnos as the D-Bus errors dbus-daemon gives for the same refusals. */
export function errorForErrno(e: unknown, what: string): DBusError {
  if (e instanceof DBusError) return e;
  if (!(e instanceof KdbusClientError)) return new DBusError(ErrorName.FAILED, `${what}: ${(e as Error).message}`);
  switch (e.code) {
    case 'EPERM': case 'EACCES':
      return new DBusError(DBusErrorName.ACCESS_DENIED, `${what}: refused by the bus's policy`);
    case 'ESRCH': case 'ENXIO': case 'EADDRNOTAVAIL':
      return new DBusError(ErrorName.SERVICE_UNKNOWN, `${what}: the name is not provided by any service`);
    case 'ENOBUFS': case 'EXFULL': case 'EMFILE': case 'EMSGSIZE': case 'EMLINK': case 'E2BIG':
      return new DBusError(DBusErrorName.LIMITS_EXCEEDED, `${what}: ${e.message}`);
    case 'EINVAL':
      return new DBusError(ErrorName.INVALID_ARGS, `${what}: ${e.message}`);
    default:
      return new DBusError(ErrorName.FAILED, `${what}: ${e.message}`);
  }
}

export class Driver {
  private helloDone = false;
  private readonly methods: Record<string, Record<string, [string, Method]>>;

  constructor(private readonly host: DriverHost) {
    const k = (): Connection => host.kdbus;
    this.methods = {
      [DRIVER_NAME]: {
        Hello: ['', () => this.hello()],
        RequestName: ['su', ([name, flags]) => ({ signature: 'u', body: [this.requestName(name as string, flags as number)] })],
        ReleaseName: ['s', ([name]) => ({ signature: 'u', body: [this.releaseName(name as string)] })],
        ListNames: ['', () => ({ signature: 'as', body: [this.listNames(false)] })],
        ListActivatableNames: ['', () => ({ signature: 'as', body: [this.listNames(true)] })],
        NameHasOwner: ['s', ([name]) => ({ signature: 'b', body: [this.owner(name as string) !== null] })],
        GetNameOwner: ['s', ([name]) => {
          const o = this.owner(name as string);
          if (o === null) throw new DBusError(ErrorName.NAME_HAS_NO_OWNER, `Could not get owner of name '${name}': no such name`);
          return { signature: 's', body: [o] };
        }],
        ListQueuedOwners: ['s', ([name]) => ({ signature: 'as', body: [this.queuedOwners(name as string)] })],
        AddMatch: ['s', ([rule]) => { host.matches.add(rule as string); return none; }],
        RemoveMatch: ['s', ([rule]) => { host.matches.remove(rule as string); return none; }],
        GetConnectionUnixUser: ['s', ([name]) => {
          const c = this.info(name as string, ATTACH.CREDS).metadata.creds;
          if (!c) throw new DBusError(ErrorName.FAILED, `no credentials known for ${name}`);
          return { signature: 'u', body: [c.uid] };
        }],
        GetConnectionUnixProcessID: ['s', ([name]) => {
          const p = this.info(name as string, ATTACH.PIDS).metadata.pids;
          if (!p) throw new DBusError(DBusErrorName.UNIX_PROCESS_ID_UNKNOWN, `no process known for ${name}`);
          return { signature: 'u', body: [p.pid] };
        }],
        GetConnectionCredentials: ['s', ([name]) => ({ signature: 'a{sv}', body: [this.credentials(name as string)] })],
        GetAdtAuditSessionData: ['s', ([name]) => {
          this.info(name as string, 0n);
          throw new DBusError(DBusErrorName.ADT_UNKNOWN, 'kdbus has no Solaris ADT audit data');
        }],
        GetConnectionSELinuxSecurityContext: ['s', ([name]) => {
          const label = this.info(name as string, ATTACH.SECLABEL).metadata.seclabel;
          if (label === undefined) throw new DBusError(DBusErrorName.SELINUX_UNKNOWN, `no security context known for ${name}`);
          return { signature: 'ay', body: [Buffer.from(label + '\0')] };
        }],
        GetId: ['', () => ({ signature: 's', body: [k().busId.toString('hex')] })],
        StartServiceByName: ['su', ([name]) => this.startService(name as string)],
        UpdateActivationEnvironment: ['a{ss}', () => {
          throw new DBusError(DBusErrorName.NOT_SUPPORTED, 'kdbus activators take no environment from the bus');
        }],
        ReloadConfig: ['', () => none],
      },
      'org.freedesktop.DBus.Monitoring': {
        BecomeMonitor: ['asu', ([rules]) => {
          if (host.uid !== 0 && host.uid !== process.getuid!()) {
            throw new DBusError(DBusErrorName.ACCESS_DENIED, 'only root or the bus owner may monitor the bus');
          }
          host.becomeMonitor(rules as string[]);
          return none;
        }],
      },
      'org.freedesktop.DBus.Introspectable': {
        Introspect: ['', () => ({ signature: 's', body: [INTROSPECTION] })],
      },
      'org.freedesktop.DBus.Peer': {
        Ping: ['', () => none],
        GetMachineId: ['', () => ({ signature: 's', body: [machineId()] })],
      },
      'org.freedesktop.DBus.Properties': {
        Get: ['ss', ([iface, prop]) => {
          const all = this.properties(iface as string);
          const v = all.get(prop as string);
          if (!v) throw new DBusError(ErrorName.UNKNOWN_PROPERTY, `no property ${prop} on ${iface}`);
          return { signature: 'v', body: [v] };
        }],
        GetAll: ['s', ([iface]) => ({ signature: 'a{sv}', body: [this.properties(iface as string)] })],
        Set: ['ssv', () => { throw new DBusError(ErrorName.PROPERTY_READ_ONLY, 'the bus driver\'s properties are read-only'); }],
      },
    };
  }

  get helloReceived(): boolean {
    return this.helloDone;
  }

  /** Answers a call addressed to org.freedesktop.DBus (nothing for one that expects no reply). */
  async handle(call: DBusMessage): Promise<void> {
    let reply: Reply;
    try {
      if (call.type !== MessageType.METHOD_CALL) return;
      const found = this.find(call);
      if (!found) {
        throw new DBusError(ErrorName.UNKNOWN_METHOD,
          `org.freedesktop.DBus does not understand message ${call.interface ?? ''}.${call.member}`);
      }
      const [signature, method] = found;
      if (call.signature !== signature) {
        throw new DBusError(ErrorName.INVALID_ARGS, `${call.member} takes '${signature}', not '${call.signature}'`);
      }
      reply = await method(call.body, call);
    } catch (e) {
      if ((call.flags & MessageFlag.NO_REPLY_EXPECTED) === 0) {
        const err = errorForErrno(e, call.member ?? 'call');
        this.host.sendFromDriver({
          type: MessageType.ERROR, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0, replyCookie: call.cookie,
          errorName: err.errorName, signature: 's', body: [err.text], destination: this.host.uniqueName, sender: DRIVER_NAME,
        });
      }
      return;
    }
    if ((call.flags & MessageFlag.NO_REPLY_EXPECTED) === 0) {
      this.host.sendFromDriver({
        type: MessageType.METHOD_RETURN, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0, replyCookie: call.cookie,
        signature: reply.signature, body: reply.body, destination: this.host.uniqueName, sender: DRIVER_NAME,
      });
    }
    if (call.member === 'Hello' && this.helloDone) this.signalTo('NameAcquired', this.host.uniqueName);
  }

  private find(call: DBusMessage): [string, Method] | undefined {
    if (call.interface !== undefined) return this.methods[call.interface]?.[call.member!];
    for (const iface of Object.values(this.methods)) if (iface[call.member!]) return iface[call.member!];
    return undefined;
  }

  /** A driver signal to this client alone (NameAcquired, NameLost). */
  signalTo(member: string, arg: string): void {
    this.host.sendFromDriver({
      type: MessageType.SIGNAL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0, path: DRIVER_PATH, interface: DRIVER_NAME,
      member, signature: 's', body: [arg], destination: this.host.uniqueName, sender: DRIVER_NAME,
    });
  }

  private hello(): Reply {
    if (this.helloDone) throw new DBusError(ErrorName.FAILED, 'Already handled an Hello message');
    this.helloDone = true;
    return { signature: 's', body: [this.host.uniqueName] };
  }

  private properties(iface: string): Map<string, Variant> {
    if (iface !== DRIVER_NAME && iface !== '') throw new DBusError(ErrorName.UNKNOWN_INTERFACE, `no interface ${iface}`);
    return new Map([
      ['Features', new Variant('as', [])],
      ['Interfaces', new Variant('as', ['org.freedesktop.DBus.Monitoring'])],
    ]);
  }

  private requestName(name: string, flags: number): number {
    if (!isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `Cannot acquire a service named '${name}'`);
    if (name === DRIVER_NAME) {
      throw new DBusError(ErrorName.INVALID_ARGS, 'Connection is not allowed to own the service "org.freedesktop.DBus" because it is reserved for D-Bus\' use only');
    }
    const denied = this.host.ownDenied(name);
    if (denied) throw new DBusError(DBusErrorName.ACCESS_DENIED, denied);
    try {
      return requestName(this.host.kdbus, name, flags);
    } catch (e) {
      throw errorForErrno(e, `RequestName ${name}`);
    }
  }

  private releaseName(name: string): number {
    if (!isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `Cannot release a service named '${name}'`);
    try {
      return releaseName(this.host.kdbus, name, () => this.owner(name) !== null);
    } catch (e) {
      throw errorForErrno(e, `ReleaseName ${name}`);
    }
  }

  /** ListNames (unique names and owned names, activators' names left out) or ListActivatableNames. */
  private listNames(activatable: boolean): string[] {
    const out = new Set<string>([DRIVER_NAME]);
    const entries = this.host.kdbus.listNames(activatable ? { activators: true } : { unique: true, names: true });
    for (const e of entries) {
      const isActivator = ((e.nameFlags ?? 0n) & NAME_ACTIVATOR) !== 0n || (e.connFlags & HELLO_ACTIVATOR) !== 0n;
      if (activatable) {
        if (e.name !== undefined && isActivator) out.add(e.name);
      } else if ((e.connFlags & HELLO_ACTIVATOR) === 0n) {
        // a connection comes once per name it owns, or once by id when it owns none
        out.add(`:1.${e.ownerId}`);
        if (e.name !== undefined && !isActivator) out.add(e.name);
      }
    }
    return [...out];
  }

  /** The unique name owning `name` (an activator does not count), null when none. */
  private owner(name: string): string | null {
    if (name === DRIVER_NAME) return DRIVER_NAME;
    if (!isUniqueName(name) && !isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `'${name}' is not a valid bus name`);
    try {
      const info = this.host.kdbus.connInfo(target(name), 0n);
      if ((info.flags & HELLO_ACTIVATOR) !== 0n) return null;
      return `:1.${info.id}`;
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) return null;
      throw errorForErrno(e, `owner of ${name}`);
    }
  }

  /**
   * ListQueuedOwners: the primary owner, then the connections waiting. kdbus's
   * NAME_LIST gives each waiter a record with the owner's flags, in
   * connection order, not queue order (so did sd-bus's answer).
   */
  private queuedOwners(name: string): string[] {
    if (name === DRIVER_NAME) return [DRIVER_NAME];
    if (!isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `'${name}' is not a valid well-known name`);
    const primary = this.owner(name);
    if (primary === null) throw new DBusError(ErrorName.NAME_HAS_NO_OWNER, `Could not get owners of name '${name}': no such name`);
    const out = new Set<string>([primary]);
    for (const e of this.host.kdbus.listNames({ names: true, queued: true })) {
      if (e.name === name && (e.connFlags & HELLO_ACTIVATOR) === 0n) out.add(`:1.${e.ownerId}`);
    }
    return [...out];
  }

  private info(name: string, attach: bigint): Info {
    // the driver is the proxy: its own uid and pid, as dbus-daemon answers with its own
    if (name === DRIVER_NAME) {
      const uid = process.getuid!();
      const gid = process.getgid!();
      return {
        id: 0n, flags: 0n, otherItems: [], metadata: {
          creds: { uid, euid: uid, suid: uid, fsuid: uid, gid, egid: gid, sgid: gid, fsgid: gid },
          pids: { pid: process.pid, tid: process.pid, ppid: process.ppid },
        },
      };
    }
    if (!isUniqueName(name) && !isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `'${name}' is not a valid bus name`);
    try {
      const info = this.host.kdbus.connInfo(target(name), attach);
      if ((info.flags & HELLO_ACTIVATOR) !== 0n) throw new KdbusClientError(6 /* ENXIO */, 'CONN_INFO', 'an activator');
      return info;
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) {
        throw new DBusError(ErrorName.NAME_HAS_NO_OWNER, `Could not get owner of name '${name}': no such name`);
      }
      throw errorForErrno(e, `credentials of ${name}`);
    }
  }

  private credentials(name: string): Map<string, Variant> {
    const md = this.info(name, ATTACH.CREDS | ATTACH.PIDS | ATTACH.AUXGROUPS | ATTACH.SECLABEL).metadata;
    const out = new Map<string, Variant>();
    if (md.creds) out.set('UnixUserID', new Variant('u', md.creds.uid));
    if (md.auxGroups) out.set('UnixGroupIDs', new Variant('au', md.auxGroups));
    if (md.pids) out.set('ProcessID', new Variant('u', md.pids.pid));
    if (md.seclabel !== undefined) out.set('LinuxSecurityLabel', new Variant('ay', Buffer.from(md.seclabel + '\0')));
    return out;
  }

  /**
   * StartServiceByName: 2 (already running) for an owned name; for a name an
   * activator holds, a Peer.Ping sent to it queues there and wakes whoever
   * serves the activator, 1 (started); ServiceUnknown otherwise.
   */
  private startService(name: string): Reply {
    if (!isWellKnownName(name)) throw new DBusError(ErrorName.INVALID_ARGS, `'${name}' is not a valid well-known name`);
    let info: Info;
    try {
      info = this.host.kdbus.connInfo(name, 0n);
    } catch (e) {
      if (e instanceof KdbusClientError && (e.code === 'ESRCH' || e.code === 'ENXIO')) {
        throw new DBusError(ErrorName.SERVICE_UNKNOWN, `The name ${name} was not provided by any .service files`);
      }
      throw errorForErrno(e, `StartServiceByName ${name}`);
    }
    if ((info.flags & HELLO_ACTIVATOR) === 0n) return { signature: 'u', body: [2] };
    this.host.wakeActivator(name);
    return { signature: 'u', body: [1] };
  }
}

/** CONN_INFO's target: a unique name's id, a well-known name itself. */
function target(name: string): bigint | string {
  return isUniqueName(name) ? uniqueNameId(name)! : name;
}

let cachedMachineId: string | undefined;
function machineId(): string {
  if (cachedMachineId === undefined) {
    try {
      cachedMachineId = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      cachedMachineId = '';
    }
  }
  if (!/^[0-9a-f]{32}$/.test(cachedMachineId)) throw new DBusError(ErrorName.FAILED, 'no machine id (/etc/machine-id)');
  return cachedMachineId;
}
