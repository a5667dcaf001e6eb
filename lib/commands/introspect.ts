// kdbusfs introspect BUS DEST PATH [IFACE]: an object's interfaces, methods,
// signals and properties (with their current values) as busctl's table.
import type { BusConnection } from '../client/index.js';
import type { Variant } from '../client/variant.js';
import { colours } from './colour.js';
import { DBUS_OPTIONS_HELP, dbusCommand, type DBusContext } from './dbus-command.js';
import { formatValues, jsonValue } from './dbus-values.js';
import { parseIntrospection, type IntrospectedNode } from './introspection-xml.js';
import { printJson } from './json-output.js';

const HELP = `Usage: kdbusfs introspect BUS DEST PATH [INTERFACE] [options]

Shows the interfaces of object PATH of DEST, each with its methods (in and
out signatures), signals and properties (type and current value, read with
GetAll), as busctl introspect does: NAME, TYPE, SIGNATURE, RESULT/VALUE and
FLAGS (deprecated, no-reply, const, emits-change, emits-invalidation,
writable). With INTERFACE, that interface's members only.

Options:
${DBUS_OPTIONS_HELP}
  --no-legend           no header line
`;

const PROPERTIES = 'org.freedesktop.DBus.Properties';
const RESULT_WIDTH_MAX = 40;

/** The object's introspection XML, parsed. */
export async function introspectObject(bus: BusConnection, destination: string, path: string,
                                       c: Pick<DBusContext, 'timeoutMs' | 'noAutoStart'>): Promise<IntrospectedNode> {
  const reply = await bus.call({
    destination, path, interface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect',
    timeoutMs: c.timeoutMs, noAutoStart: c.noAutoStart,
  });
  if (reply.signature !== 's') throw new Error(`Introspect of ${path} answered '${reply.signature}', not a string`);
  try {
    return parseIntrospection(reply.body[0] as string);
  } catch (e) {
    throw new Error(`cannot read the introspection data of ${path}: ${(e as Error).message}`);
  }
}

interface Row { interface: string; type: string; name?: string; signature?: string; result?: string; value?: Variant; flags: string[]; writable?: boolean }

function ellipsize(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, width - 1)}…`;
}

function compare(a: Row, b: Row): number {
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.interface, b.interface) || cmp(a.type, b.type) || cmp(a.name ?? '', b.name ?? '');
}

async function introspect(c: DBusContext): Promise<number> {
  const [destination, path, only] = c.positionals as [string, string, string?];
  const node = await introspectObject(c.bus, destination, path, c);
  const rows: Row[] = [];
  for (const i of node.interfaces) {
    if (only !== undefined && i.name !== only) continue;
    rows.push({ interface: i.name, type: 'interface', flags: i.flags });
    let values: Map<string, Variant> | undefined;
    if (i.members.some((m) => m.kind === 'property')) {
      const r = await c.bus.call({
        destination, path, interface: PROPERTIES, member: 'GetAll', signature: 's', body: [i.name],
        timeoutMs: c.timeoutMs, noAutoStart: c.noAutoStart,
      });
      values = r.body[0] as Map<string, Variant>;
    }
    for (const m of i.members) {
      rows.push({
        interface: i.name, type: m.kind, name: m.name, signature: m.signature, flags: m.flags,
        ...(m.result !== undefined && { result: m.result }),
        ...(m.kind === 'property' && { writable: !!m.writable, value: values?.get(m.name) }),
      });
    }
  }
  rows.sort(compare);
  if (c.json) {
    printJson(rows.map((r) => ({
      interface: r.interface, type: r.type, name: r.name, signature: r.signature, result: r.result,
      value: r.value && jsonValue(r.value), flags: [...r.flags, ...(r.writable ? ['writable'] : [])],
    })));
    return 0;
  }
  // as busctl: the widths count the interface's own line, shown or not
  const shown = rows.filter((r) => only === undefined || r.type !== 'interface');
  const text = (r: Row): string | undefined => (r.value ? formatValues(r.value.signature, [r.value.value]) : r.result || undefined);
  const nameWidth = Math.max(4, ...rows.map((r) => (r.type === 'interface' ? r.interface.length : r.name!.length + 1)));
  const typeWidth = Math.max(4, ...rows.map((r) => r.type.length));
  const sigWidth = Math.max(9, ...rows.map((r) => (r.signature ?? '').length));
  const resultWidth = Math.min(RESULT_WIDTH_MAX, Math.max(12, ...rows.map((r) => (text(r) ?? '').length)));
  const col = colours();
  let out = c.legend ? `${'NAME'.padEnd(nameWidth)} ${'TYPE'.padEnd(typeWidth)} ${'SIGNATURE'.padEnd(sigWidth)} ${'RESULT/VALUE'.padEnd(resultWidth)} FLAGS\n` : '';
  for (const r of shown) {
    const isInterface = r.type === 'interface';
    const name = isInterface ? col.highlight(r.interface.padEnd(nameWidth)) : `.${r.name!.padEnd(nameWidth - 1)}`;
    const flags = r.flags.includes('deprecated') ? ' deprecated' : r.flags.length || r.writable ? '' : ' -';
    const rest = ['no-reply', 'const', 'emits-change', 'emits-invalidation'].filter((f) => r.flags.includes(f)).map((f) => ` ${f}`).join('');
    out += `${name} ${r.type.padEnd(typeWidth)} ${(r.signature || '-').padEnd(sigWidth)} ${ellipsize(text(r) ?? '-', resultWidth).padEnd(resultWidth)}${flags}${rest}${r.writable ? ' writable' : ''}\n`;
  }
  process.stdout.write(out);
  return 0;
}

export const introspectCommand = dbusCommand({
  name: 'introspect', synopsis: 'introspect BUS DEST PATH [IFACE]',
  summary: 'an object\'s interfaces, methods, signals and properties', help: HELP, min: 3, max: 4, plan: () => introspect,
});
