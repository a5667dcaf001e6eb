// A proxy for one interface of a remote object: its methods called, its
// properties read and written through org.freedesktop.DBus.Properties, its
// signals subscribed to with a match rule.
import type { BusConnection, IncomingMessage, Subscription } from './bus-connection.js';
import { formatMatchRule } from './match-rule.js';
import { MessageType } from './dbus-message.js';
import { Variant, type DBusValue } from './variant.js';

const PROPERTIES = 'org.freedesktop.DBus.Properties';

export class Proxy {
  constructor(readonly bus: BusConnection, readonly destination: string, readonly path: string, readonly iface: string) {}

  /** Calls `member` with arguments of `signature`; resolves with the reply's values. */
  async call(member: string, signature = '', ...body: DBusValue[]): Promise<DBusValue[]> {
    const r = await this.bus.call({
      destination: this.destination, path: this.path, interface: this.iface, member, signature, body,
    });
    return r.body;
  }

  async get(property: string): Promise<DBusValue> {
    const r = await this.bus.call({
      destination: this.destination, path: this.path, interface: PROPERTIES, member: 'Get',
      signature: 'ss', body: [this.iface, property],
    });
    return (r.body[0] as Variant).value;
  }

  /** Sets `property` to `value` of type `signature`. */
  async set(property: string, signature: string, value: DBusValue): Promise<void> {
    await this.bus.call({
      destination: this.destination, path: this.path, interface: PROPERTIES, member: 'Set',
      signature: 'ssv', body: [this.iface, property, new Variant(signature, value)],
    });
  }

  /** Every property's value, by name. */
  async getAll(): Promise<Record<string, DBusValue>> {
    const r = await this.bus.call({
      destination: this.destination, path: this.path, interface: PROPERTIES, member: 'GetAll',
      signature: 's', body: [this.iface],
    });
    const out: Record<string, DBusValue> = {};
    for (const [k, v] of r.body[0] as Map<string, Variant>) out[k] = v.value;
    return out;
  }

  /** Subscribes to signal `member` of this object and interface from the destination. */
  on(member: string, handler: (args: DBusValue[], m: IncomingMessage) => void): Subscription {
    return this.bus.addMatch(this.rule(this.iface, member), m => handler(m.body, m));
  }

  /** Subscribes to this interface's PropertiesChanged: the changed values and the invalidated names. */
  onPropertiesChanged(handler: (changed: Record<string, DBusValue>, invalidated: string[]) => void): Subscription {
    const rule = `${this.rule(PROPERTIES, 'PropertiesChanged')},arg0='${this.iface}'`;
    return this.bus.addMatch(rule, m => {
      const changed: Record<string, DBusValue> = {};
      for (const [k, v] of m.body[1] as Map<string, Variant>) changed[k] = v.value;
      handler(changed, m.body[2] as string[]);
    });
  }

  private rule(iface: string, member: string): string {
    return formatMatchRule({
      type: MessageType.SIGNAL, sender: this.destination, path: this.path, interface: iface, member,
      args: new Map(), argPaths: new Map(), argNamespaces: new Map(),
    });
  }
}
