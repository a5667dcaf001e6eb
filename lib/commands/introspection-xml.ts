// Reading the org.freedesktop.DBus.Introspectable XML a service answers:
// its interfaces (methods with in/out signatures, signals, properties with
// access), the annotations busctl shows as flags, and the child nodes.
// A tag-level reader is enough: the format is flat and has no text content.

export interface IntrospectedMember {
  kind: 'method' | 'signal' | 'property';
  name: string;
  /** method: the in arguments; signal: its arguments; property: its type */
  signature: string;
  /** method: the out arguments */
  result?: string;
  writable?: boolean;
  readable?: boolean;
  flags: string[];
}

export interface IntrospectedInterfaceXml { name: string; flags: string[]; members: IntrospectedMember[] }

export interface IntrospectedNode { interfaces: IntrospectedInterfaceXml[]; children: string[] }

interface Tag { name: string; attrs: Record<string, string>; open: boolean; close: boolean }

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (_m, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (named[e.toLowerCase()]) return named[e.toLowerCase()]!;
    return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

function* tags(xml: string): Generator<Tag> {
  const body = xml.replace(/<!--[\s\S]*?-->/g, '').replace(/<![^>]*>/g, '').replace(/<\?[\s\S]*?\?>/g, '');
  const re = /<\s*(\/)?\s*([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/)?\s*>/g;
  for (let m; (m = re.exec(body));) {
    const attrs: Record<string, string> = {};
    for (const a of m[3]!.matchAll(/([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs[a[1]!] = unescapeXml(a[2] ?? a[3] ?? '');
    yield { name: m[2]!, attrs, open: !m[1], close: !!m[1] || !!m[4] };
  }
}

/** Applies an annotation to flags as sd-bus's introspection reader did. */
function annotate(flags: string[], name: string | undefined, value: string | undefined): void {
  const drop = (...f: string[]): void => { for (const x of f) { const i = flags.indexOf(x); if (i >= 0) flags.splice(i, 1); } };
  if (name === 'org.freedesktop.DBus.Deprecated' && value === 'true') flags.push('deprecated');
  else if (name === 'org.freedesktop.DBus.Method.NoReply' && value === 'true') flags.push('no-reply');
  else if (name === 'org.freedesktop.DBus.Property.EmitsChangedSignal') {
    drop('const', 'emits-change', 'emits-invalidation');
    if (value === 'const') flags.push('const');
    else if (value === 'invalidates') flags.push('emits-invalidation');
    else if (value === 'true') flags.push('emits-change');
  }
}

/** The interfaces and child nodes of one object's introspection XML; throws on XML it cannot follow. */
export function parseIntrospection(xml: string): IntrospectedNode {
  const node: IntrospectedNode = { interfaces: [], children: [] };
  let depth = 0;
  let iface: IntrospectedInterfaceXml | null = null;
  let member: IntrospectedMember | null = null;
  let sawNode = false;
  for (const t of tags(xml)) {
    if (t.name === 'node') {
      if (t.open) {
        if (depth === 0) sawNode = true;
        else if (depth === 1 && t.attrs.name) node.children.push(t.attrs.name);
        if (!t.close) depth++;
      } else if (t.close) depth--;
      continue;
    }
    if (depth !== 1) continue;
    if (t.name === 'interface') {
      if (t.open) {
        iface = { name: t.attrs.name ?? '', flags: [], members: [] };
        node.interfaces.push(iface);
      }
      if (t.close) iface = null;
      continue;
    }
    if (!iface) continue;
    if (t.name === 'method' || t.name === 'signal' || t.name === 'property') {
      if (t.open) {
        member = { kind: t.name, name: t.attrs.name ?? '', signature: '', flags: [] };
        if (t.name === 'method') member.result = '';
        if (t.name === 'property') {
          member.signature = t.attrs.type ?? '';
          member.writable = t.attrs.access === 'write' || t.attrs.access === 'readwrite';
          member.readable = t.attrs.access !== 'write';
          member.flags.push('emits-change');
        }
        iface.members.push(member);
      }
      if (t.close) member = null;
    } else if (t.name === 'arg' && t.open && member) {
      const out = member.kind === 'method' && t.attrs.direction === 'out';
      if (out) member.result += t.attrs.type ?? '';
      else member.signature += t.attrs.type ?? '';
    } else if (t.name === 'annotation' && t.open) {
      annotate(member ? member.flags : iface.flags, t.attrs.name, t.attrs.value);
    }
  }
  if (!sawNode) throw new Error('the introspection data has no <node>');
  return node;
}
