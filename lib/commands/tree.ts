// kdbusfs tree BUS [DEST...]: the object paths of services, found by
// introspecting from / down, drawn as busctl tree draws them.
import type { BusConnection } from '../client/index.js';
import { colours } from './colour.js';
import { dbusErrorMessage, DBUS_OPTIONS_HELP, dbusCommand, type DBusContext } from './dbus-command.js';
import { introspectObject } from './introspect.js';
import { printJson } from './json-output.js';
import { DBusError } from '../client/dbus-error.js';

const HELP = `Usage: kdbusfs tree BUS [DEST...] [options]

Shows the object tree of each DEST (every well-known name on BUS when none
is given), found by introspecting / and every child node it names, as
busctl tree does. An object that cannot be introspected is reported and the
command exits 1 after showing the rest.

Options:
${DBUS_OPTIONS_HELP}
`;

function childPath(parent: string, name: string): string {
  if (name.startsWith('/')) return name;
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** The object paths below / of destination that answer Introspect, sorted; the failures as messages. */
async function objectPaths(bus: BusConnection, destination: string, c: DBusContext): Promise<{ paths: string[]; failures: string[] }> {
  const todo = ['/'];
  const done = new Set<string>();
  const failed = new Set<string>();
  const failures: string[] = [];
  while (todo.length) {
    const path = todo.shift()!;
    if (done.has(path) || failed.has(path)) continue;
    try {
      const node = await introspectObject(bus, destination, path, c);
      done.add(path);
      for (const child of node.children) todo.push(childPath(path, child));
    } catch (e) {
      failed.add(path);
      failures.push(`Failed to introspect object ${path} of service ${destination}: ${e instanceof DBusError ? dbusErrorMessage(e) : (e as Error).message}`);
    }
  }
  return { paths: [...done].sort(), failures };
}

/** Whether path is below (or is) prefix, as path_startswith. */
function under(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || path.startsWith(`${prefix}/`);
}

const BRANCH = '├─';
const RIGHT = '└─';
const VERTICAL = '│ ';
const SPACE = '  ';

function drawSubtree(prefix: string, path: string, list: string[], at: number, out: string[]): void {
  let i = at;
  while (i < list.length && list[i] === path) i++;
  while (i < list.length && under(list[i]!, path)) {
    let n = i + 1;
    let more = false;
    for (; n < list.length && under(list[n]!, path); n++) {
      if (!under(list[n]!, list[i]!)) {
        more = true;
        break;
      }
    }
    out.push(`${prefix}${more ? BRANCH : RIGHT}${list[i]}`);
    drawSubtree(prefix + (more ? VERTICAL : SPACE), list[i]!, list, i, out);
    i = n;
  }
}

export function drawTree(paths: string[]): string[] {
  if (!paths.length) return ['No objects discovered.'];
  if (paths.length === 1 && paths[0] === '/') return ['Only root object discovered.'];
  const out: string[] = [];
  drawSubtree('', '/', paths, 0, out);
  return out;
}

async function tree(c: DBusContext): Promise<number> {
  let services = c.positionals;
  const headers = services.length !== 1;
  if (!services.length) services = c.bus.listNames().filter((n) => !n.startsWith(':') && n !== 'org.freedesktop.DBus').sort();
  const col = colours();
  const result: Record<string, string[]> = {};
  let failed = false;
  const blocks: string[] = [];
  for (const s of services) {
    const { paths, failures } = await objectPaths(c.bus, s, c);
    result[s] = paths;
    if (failures.length) failed = true;
    const lines = [...failures, ...drawTree(paths)];
    blocks.push((headers ? `Service ${col.highlight(s)}:\n` : '') + lines.map((l) => `${l}\n`).join(''));
  }
  if (c.json) printJson(result);
  else process.stdout.write(blocks.join('\n'));
  return failed ? 1 : 0;
}

export const treeCommand = dbusCommand({
  name: 'tree', synopsis: 'tree BUS [DEST...]',
  summary: 'the object tree of services', help: HELP, min: 1, plan: () => tree,
});
