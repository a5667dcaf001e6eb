// D-Bus values as busctl prints them: the one-line form (`s "text"`, arrays
// as their count then their elements, variants as their signature then their
// value; the same form the command line takes) and busctl's JSON form
// ({"type": SIGNATURE, "data": ...}: structs and arrays as arrays, dicts as
// objects, variants as {"type", "data"}, 64-bit integers as exact numbers).
import { parseSignature, type DBusType } from '../client/signature.js';
import { Variant, type DBusValue } from '../client/variant.js';

/** busctl's quoting of a string: C escapes inside double quotes. */
export function cescape(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += `\\${c.toString(8).padStart(3, '0')}`;
    else out += ch;
  }
  return out;
}

/** %g of C's printf: 6 significant digits, trailing zeros dropped. */
function formatDouble(d: number): string {
  if (Number.isNaN(d)) return 'nan';
  if (!Number.isFinite(d)) return d > 0 ? 'inf' : '-inf';
  if (d === 0) return Object.is(d, -0) ? '-0' : '0';
  const exp = Math.floor(Math.log10(Math.abs(d)));
  if (exp < -4 || exp >= 6) {
    const [m, e] = d.toExponential(5).split('e');
    const mant = m!.includes('.') ? m!.replace(/0+$/, '').replace(/\.$/, '') : m!;
    const n = Number(e);
    return `${mant}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  const s = d.toFixed(Math.max(0, 5 - exp));
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function entries(v: DBusValue): DBusValue[][] {
  if (v instanceof Map) return [...v.entries()];
  if (Array.isArray(v)) return v as DBusValue[][];
  return Object.entries(v as Record<string, DBusValue>);
}

function words(t: DBusType, v: DBusValue, out: string[]): void {
  switch (t.kind) {
    case 'basic':
      switch (t.code) {
        case 'b': out.push(v ? 'true' : 'false'); return;
        case 'd': out.push(formatDouble(v as number)); return;
        case 's': case 'o': case 'g': out.push(`"${cescape(v as string)}"`); return;
        default: out.push(String(v));
      }
      return;
    case 'array': {
      if (t.element.kind === 'dict-entry') {
        const es = entries(v);
        out.push(String(es.length));
        for (const [k, x] of es) { words(t.element.key, k!, out); words(t.element.value, x!, out); }
        return;
      }
      const items = v instanceof Uint8Array ? [...v] : v as DBusValue[];
      out.push(String(items.length));
      for (const x of items) words(t.element, x, out);
      return;
    }
    case 'dict-entry': {
      const [k, x] = v as DBusValue[];
      words(t.key, k!, out);
      words(t.value, x!, out);
      return;
    }
    case 'struct':
      (v as DBusValue[]).forEach((x, i) => words(t.fields[i]!, x, out));
      return;
    case 'variant': {
      const variant = v as Variant;
      out.push(variant.signature);
      words(variant.type, variant.value, out);
    }
  }
}

/** Values of `signature` as busctl's format_cmdline writes them (without the signature). */
export function formatValues(signature: string, values: readonly DBusValue[]): string {
  const out: string[] = [];
  parseSignature(signature).forEach((t, i) => words(t, values[i]!, out));
  return out.join(' ');
}

/** busctl's line for a reply or a property: the signature, a space, the values. */
export function formatLine(signature: string, values: readonly DBusValue[]): string {
  return `${signature} ${formatValues(signature, values)}`;
}

/** One value in busctl's JSON data form. */
export function jsonData(t: DBusType, v: DBusValue): unknown {
  switch (t.kind) {
    case 'basic':
      return t.code === 'd' && !Number.isFinite(v as number) ? null : v;
    case 'array': {
      if (t.element.kind === 'dict-entry') {
        const obj: Record<string, unknown> = {};
        for (const [k, x] of entries(v)) obj[String(k)] = jsonData(t.element.value, x!);
        return obj;
      }
      const items = v instanceof Uint8Array ? [...v] : v as DBusValue[];
      return items.map((x) => jsonData(t.element, x));
    }
    case 'dict-entry': {
      const [k, x] = v as DBusValue[];
      return [jsonData(t.key, k!), jsonData(t.value, x!)];
    }
    case 'struct':
      return (v as DBusValue[]).map((x, i) => jsonData(t.fields[i]!, x));
    case 'variant': {
      const variant = v as Variant;
      return { type: variant.signature, data: jsonData(variant.type, variant.value) };
    }
  }
}

/** A message body as busctl --json prints it: {"type": signature, "data": [values...]}. */
export function jsonBody(signature: string, values: readonly DBusValue[]): { type: string; data: unknown[] } {
  return { type: signature, data: parseSignature(signature).map((t, i) => jsonData(t, values[i]!)) };
}

/** One value (a property) as busctl --json prints it: {"type": signature, "data": value}. */
export function jsonValue(variant: Variant): { type: string; data: unknown } {
  return { type: variant.signature, data: jsonData(variant.type, variant.value) };
}
