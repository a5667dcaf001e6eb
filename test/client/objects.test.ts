// In process: the object tree's child nodes (what `busctl tree` walks) and
// the introspection XML of an exported object.
import t from 'tap';
import type { BusConnection } from '../../lib/client/bus-connection.js';
import { introspectionXml, STANDARD_INTERFACES } from '../../lib/client/introspection.js';
import { ObjectTree } from '../../lib/client/objects.js';

t.test('child nodes of every prefix of the exported paths', async (t) => {
  const tree = new ObjectTree({} as BusConnection);
  tree.export('/org/kdbusfs/Example', {});
  tree.export('/org/kdbusfs/Other/Deep', {});
  tree.export('/com/x', {});
  t.same(tree.children('/'), ['com', 'org'], 'the root: the first segments');
  t.same(tree.children('/org'), ['kdbusfs']);
  t.same(tree.children('/org/kdbusfs'), ['Example', 'Other'], 'an object and a path that only leads to one');
  t.same(tree.children('/org/kdbusfs/Example'), [], 'a leaf has none');
  t.same(tree.children('/org/kd'), [], 'a string prefix is not a path prefix');
  t.throws(() => tree.export('/com/x', {}), /exported at \/com\/x already/, 'a path is exported once');
  t.throws(() => tree.export('no/slash', {}), 'an invalid path is refused');
  t.throws(() => tree.export('/a', { 'not an interface': {} }), 'an invalid interface name is refused');
});

t.test('introspection XML', async (t) => {
  const xml = introspectionXml({
    ...STANDARD_INTERFACES,
    'org.example.I': {
      methods: { M: { in: 'sa{sv}', out: '(ii)' } },
      properties: { P: { type: 'as', access: 'readwrite' } },
      signals: { S: 'o' },
    },
  }, ['child&']);
  t.match(xml, /^<!DOCTYPE node PUBLIC "-\/\/freedesktop\/\/DTD D-BUS Object Introspection 1\.0\/\/EN"\n/);
  t.ok(xml.includes('<method name="M">\n   <arg type="s" direction="in"/>\n   <arg type="a{sv}" direction="in"/>\n'
    + '   <arg type="(ii)" direction="out"/>\n  </method>'), 'one arg per complete type, in then out');
  t.ok(xml.includes('<property name="P" type="as" access="readwrite"/>'));
  t.ok(xml.includes('<signal name="S">\n   <arg type="o"/>\n  </signal>'));
  t.ok(xml.includes('<node name="child&amp;"/>'), 'names are escaped');
  t.ok(xml.endsWith('</node>\n'));
});
