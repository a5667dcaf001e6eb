// Exported objects: a connection's object paths with their interfaces
// (methods, properties, signals), and the standard interfaces answered for
// them: org.freedesktop.DBus.Properties (Get, Set, GetAll, PropertiesChanged),
// Introspectable (with child nodes, for `busctl tree`) and Peer.
import { closeSync, readFileSync } from 'node:fs';
import type { BusConnection, IncomingMessage } from './bus-connection.js';
import { DBusError, ErrorName } from './dbus-error.js';
import { isInterfaceName, isMemberName, isObjectPath, requireName } from './dbus-names.js';
import { introspectionXml, STANDARD_INTERFACES, type IntrospectedInterface } from './introspection.js';
import { parseSignature } from './signature.js';
import { Variant, type DBusValue } from './variant.js';

const PEER = 'org.freedesktop.DBus.Peer';
const INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable';
const PROPERTIES = 'org.freedesktop.DBus.Properties';

/**
 * What a method returns to send fds with its reply: its result (as
 * MethodSpec.call would return it) and the fds its 'h' values index.
 * Ownership of the fds passes to the object layer, which closes them once
 * the reply is sent (or could not be).
 */
export class ReplyWithFds {
  constructor(readonly result: unknown, readonly fds: number[]) {}
}

export interface MethodSpec {
  /** the arguments' signature (default none) */
  in?: string;
  /** the results' signature (default none) */
  out?: string;
  /**
   * Runs the method: returns the result (out is one complete type), an array
   * of the results (several), nothing (none), or any of those in a
   * ReplyWithFds to send fds along; throws DBusError to answer with
   * that error (any other throw answers org.freedesktop.DBus.Error.Failed).
   */
  call(args: DBusValue[], message: IncomingMessage): unknown;
}

export interface PropertySpec {
  /** the value's signature (one complete type) */
  type: string;
  get(): DBusValue;
  /** present: the property is writable (Set calls it, then PropertiesChanged is emitted) */
  set?(value: DBusValue): void;
}

export interface InterfaceSpec {
  methods?: Record<string, MethodSpec>;
  properties?: Record<string, PropertySpec>;
  /** signal name -> its signature */
  signals?: Record<string, string>;
}

export class ExportedObject {
  constructor(private readonly tree: ObjectTree, readonly path: string, readonly interfaces: Record<string, InterfaceSpec>) {}

  /** Emits one of the object's declared signals. */
  emit(iface: string, member: string, ...body: DBusValue[]): void {
    const signature = this.interfaces[iface]?.signals?.[member];
    if (signature === undefined) throw new Error(`${this.path} declares no signal ${iface}.${member}`);
    this.tree.bus.emitSignal({ path: this.path, interface: iface, member, signature, body });
  }

  /** Emits PropertiesChanged with the current values of `names` of `iface`. */
  propertiesChanged(iface: string, names: string[]): void {
    const props = this.interfaces[iface]?.properties ?? {};
    const changed: Record<string, Variant> = {};
    for (const n of names) {
      const p = props[n];
      if (!p) throw new Error(`${this.path} has no property ${iface}.${n}`);
      changed[n] = new Variant(p.type, p.get());
    }
    this.tree.bus.emitSignal({
      path: this.path, interface: PROPERTIES, member: 'PropertiesChanged', signature: 'sa{sv}as', body: [iface, changed, []],
    });
  }

  unexport(): void {
    this.tree.unexport(this.path);
  }
}

/** A method's answer: the reply's values and the fds going with it. */
interface Answer { signature: string; body: DBusValue[]; fds?: number[] }

let machineId: string | undefined;
function localMachineId(): string {
  machineId ??= readFileSync('/etc/machine-id', 'utf8').trim();
  return machineId;
}

/** The parts of `sig` as complete types. */
function arity(sig: string): number {
  return parseSignature(sig).length;
}

export class ObjectTree {
  private readonly objects = new Map<string, ExportedObject>();

  constructor(readonly bus: BusConnection) {}

  /** Exports `interfaces` at `path` (replacing nothing: a path is exported once). */
  export(path: string, interfaces: Record<string, InterfaceSpec>): ExportedObject {
    requireName(isObjectPath, path, 'object path');
    if (this.objects.has(path)) throw new Error(`an object is exported at ${path} already`);
    for (const [name, spec] of Object.entries(interfaces)) {
      requireName(isInterfaceName, name, 'interface name');
      for (const m of [...Object.keys(spec.methods ?? {}), ...Object.keys(spec.properties ?? {}), ...Object.keys(spec.signals ?? {})]) {
        requireName(isMemberName, m, 'member name');
      }
      for (const p of Object.values(spec.properties ?? {})) parseSignature(p.type);
    }
    const o = new ExportedObject(this, path, interfaces);
    this.objects.set(path, o);
    return o;
  }

  unexport(path: string): void {
    this.objects.delete(path);
  }

  /** The names of the nodes directly below `path` that lead to exported objects. */
  children(path: string): string[] {
    const prefix = path === '/' ? '/' : `${path}/`;
    const out = new Set<string>();
    for (const p of this.objects.keys()) {
      if (p !== path && p.startsWith(prefix)) out.add(p.slice(prefix.length).split('/')[0]!);
    }
    return [...out].sort();
  }

  /** Answers a method call: its reply or its error. Never throws. */
  async dispatch(m: IncomingMessage): Promise<void> {
    let answer: Answer;
    try {
      answer = await this.answer(m);
    } catch (e) {
      const err = e instanceof DBusError ? e : new DBusError(ErrorName.FAILED, e instanceof Error ? e.message : String(e));
      this.send(() => this.bus.replyError(m, err.errorName, err.text));
      return;
    }
    try {
      this.send(() => this.bus.reply(m, answer.signature, answer.body, answer.fds));
    } finally {
      for (const fd of answer.fds ?? []) closeSync(fd);
    }
  }

  /** A reply whose caller is gone (or whose value does not encode) is dropped, with an error reply where one can go. */
  private send(reply: () => void): void {
    try {
      reply();
    } catch (e) {
      this.bus.emit('reply-failed', e);
    }
  }

  private async answer(m: IncomingMessage): Promise<Answer> {
    const path = m.path!;
    const member = m.member!;
    if (m.interface === PEER || (m.interface === undefined && (member === 'Ping' || member === 'GetMachineId'))) {
      if (member === 'Ping') return { signature: '', body: [] };
      if (member === 'GetMachineId') return { signature: 's', body: [localMachineId()] };
      throw new DBusError(ErrorName.UNKNOWN_METHOD, `unknown method ${member} of ${PEER}`);
    }
    const obj = this.objects.get(path);
    const children = this.children(path);
    if (m.interface === INTROSPECTABLE || (m.interface === undefined && member === 'Introspect')) {
      if (member !== 'Introspect') throw new DBusError(ErrorName.UNKNOWN_METHOD, `unknown method ${member} of ${INTROSPECTABLE}`);
      if (!obj && !children.length) throw new DBusError(ErrorName.UNKNOWN_OBJECT, `unknown object ${path}`);
      return { signature: 's', body: [introspectionXml(this.introspected(obj), children)] };
    }
    if (!obj) throw new DBusError(ErrorName.UNKNOWN_OBJECT, `unknown object ${path}`);
    if (m.interface === PROPERTIES) return this.properties(obj, m);
    const found = m.interface !== undefined
      ? [m.interface, obj.interfaces[m.interface]] as const
      : Object.entries(obj.interfaces).find(([, spec]) => spec.methods?.[member]);
    if (!found || !found[1]) throw new DBusError(ErrorName.UNKNOWN_INTERFACE, `unknown interface ${m.interface} at ${path}`);
    const method = found[1].methods?.[member];
    if (!method) throw new DBusError(ErrorName.UNKNOWN_METHOD, `unknown method ${member} of ${found[0]}`);
    const expected = method.in ?? '';
    if (m.signature !== expected) {
      throw new DBusError(ErrorName.INVALID_ARGS, `${member} takes '${expected}', not '${m.signature}'`);
    }
    const out = method.out ?? '';
    const returned = await method.call(m.body, m);
    const withFds = returned instanceof ReplyWithFds ? returned : undefined;
    const result = withFds ? withFds.result : returned;
    const n = arity(out);
    return {
      signature: out, body: n === 0 ? [] : n === 1 ? [result as DBusValue] : result as DBusValue[],
      ...(withFds && { fds: withFds.fds }),
    };
  }

  private properties(obj: ExportedObject, m: IncomingMessage): { signature: string; body: DBusValue[] } {
    const need = (sig: string): void => {
      if (m.signature !== sig) throw new DBusError(ErrorName.INVALID_ARGS, `${m.member} takes '${sig}', not '${m.signature}'`);
    };
    const iface = (name: string): InterfaceSpec => {
      const spec = obj.interfaces[name] ?? (Object.hasOwn(STANDARD_INTERFACES, name) ? {} : undefined);
      if (!spec) throw new DBusError(ErrorName.UNKNOWN_INTERFACE, `unknown interface ${name} at ${obj.path}`);
      return spec;
    };
    const property = (i: string, p: string): PropertySpec => {
      const spec = iface(i).properties?.[p];
      if (!spec) throw new DBusError(ErrorName.UNKNOWN_PROPERTY, `unknown property ${i}.${p}`);
      return spec;
    };
    switch (m.member) {
      case 'Get': {
        need('ss');
        const p = property(m.body[0] as string, m.body[1] as string);
        return { signature: 'v', body: [new Variant(p.type, p.get())] };
      }
      case 'GetAll': {
        need('s');
        const all: Record<string, Variant> = {};
        for (const [name, p] of Object.entries(iface(m.body[0] as string).properties ?? {})) all[name] = new Variant(p.type, p.get());
        return { signature: 'a{sv}', body: [all] };
      }
      case 'Set': {
        need('ssv');
        const [i, name, value] = m.body as [string, string, Variant];
        const p = property(i, name);
        if (!p.set) throw new DBusError(ErrorName.PROPERTY_READ_ONLY, `property ${i}.${name} is read-only`);
        if (value.signature !== p.type) {
          throw new DBusError(ErrorName.INVALID_ARGS, `property ${i}.${name} is '${p.type}', not '${value.signature}'`);
        }
        p.set(value.value);
        obj.propertiesChanged(i, [name]);
        return { signature: '', body: [] };
      }
      default:
        throw new DBusError(ErrorName.UNKNOWN_METHOD, `unknown method ${m.member} of ${PROPERTIES}`);
    }
  }

  /** The object's interfaces for introspection: the standard ones, then its own. */
  private introspected(obj: ExportedObject | undefined): Record<string, IntrospectedInterface> {
    const out: Record<string, IntrospectedInterface> = { ...STANDARD_INTERFACES };
    for (const [name, spec] of Object.entries(obj?.interfaces ?? {})) {
      out[name] = {
        methods: Object.fromEntries(Object.entries(spec.methods ?? {}).map(([k, v]) => [k, { in: v.in ?? '', out: v.out ?? '' }])),
        properties: Object.fromEntries(Object.entries(spec.properties ?? {})
          .map(([k, v]) => [k, { type: v.type, access: v.set ? 'readwrite' as const : 'read' as const }])),
        signals: spec.signals ?? {},
      };
    }
    return out;
  }
}
