// org.freedesktop.DBus.Introspectable's answer: the introspection XML of an
// object (its interfaces, the standard ones included) and its child nodes,
// which is what `busctl tree` walks.
import { parseSignature } from './signature.js';

export const INTROSPECTION_DOCTYPE =
  '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
  + '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n';

export interface IntrospectedMethod { in: string; out: string }
export interface IntrospectedProperty { type: string; access: 'read' | 'write' | 'readwrite' }
export interface IntrospectedInterface {
  methods: Record<string, IntrospectedMethod>;
  properties: Record<string, IntrospectedProperty>;
  signals: Record<string, string>;
}

/** The interfaces every object answers (sd-bus added these to each object it exported). */
export const STANDARD_INTERFACES: Record<string, IntrospectedInterface> = {
  'org.freedesktop.DBus.Peer': {
    methods: { Ping: { in: '', out: '' }, GetMachineId: { in: '', out: 's' } }, properties: {}, signals: {},
  },
  'org.freedesktop.DBus.Introspectable': {
    methods: { Introspect: { in: '', out: 's' } }, properties: {}, signals: {},
  },
  'org.freedesktop.DBus.Properties': {
    methods: {
      Get: { in: 'ss', out: 'v' }, GetAll: { in: 's', out: 'a{sv}' }, Set: { in: 'ssv', out: '' },
    },
    properties: {},
    signals: { PropertiesChanged: 'sa{sv}as' },
  },
};

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function args(signature: string, direction?: 'in' | 'out'): string {
  return parseSignature(signature)
    .map(t => `   <arg type="${escape(t.signature)}"${direction ? ` direction="${direction}"` : ''}/>\n`).join('');
}

/** The XML for an object with `interfaces` (standard ones first) and the child node names `children`. */
export function introspectionXml(interfaces: Record<string, IntrospectedInterface>, children: string[]): string {
  let xml = `${INTROSPECTION_DOCTYPE}<node>\n`;
  for (const [name, i] of Object.entries(interfaces)) {
    xml += ` <interface name="${escape(name)}">\n`;
    for (const [m, spec] of Object.entries(i.methods)) {
      xml += `  <method name="${escape(m)}">\n${args(spec.in, 'in')}${args(spec.out, 'out')}  </method>\n`;
    }
    for (const [s, sig] of Object.entries(i.signals)) {
      xml += `  <signal name="${escape(s)}">\n${args(sig)}  </signal>\n`;
    }
    for (const [p, spec] of Object.entries(i.properties)) {
      xml += `  <property name="${escape(p)}" type="${escape(spec.type)}" access="${spec.access}"/>\n`;
    }
    xml += ' </interface>\n';
  }
  for (const c of children) xml += ` <node name="${escape(c)}"/>\n`;
  return `${xml}</node>\n`;
}
