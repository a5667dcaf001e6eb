// Where a V8 CPU profile's time goes: self time per function (name, file and
// line), the top 25, and the share of time by file. For bench/client-call.sh.
//   node cpuprofile-top.mjs FILE.cpuprofile
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const prof = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
// samples[i] was taken timeDeltas[i + 1] before the next one: charge the interval to it
for (let i = 0; i < prof.samples.length; i++) {
  const n = byId.get(prof.samples[i]);
  const dt = prof.timeDeltas[i + 1] ?? 0;
  n.self = (n.self ?? 0) + dt;
}
const total = prof.nodes.reduce((a, n) => a + (n.self ?? 0), 0);
const where = (f) => (f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : '');
for (const n of prof.nodes) {
  const f = n.callFrame;
  const key = `${f.functionName || '(anonymous)'} ${where(f)}`.trim();
  self.set(key, (self.get(key) ?? 0) + (n.self ?? 0));
}
const pct = (x) => `${((100 * x) / total).toFixed(1).padStart(5)}%`;
console.log(`profile: ${(total / 1e3).toFixed(0)} ms sampled; self time by function`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${pct(v)}  ${k}`);
const files = new Map();
for (const n of prof.nodes) {
  const url = n.callFrame.url;
  const file = url ? basename(url) : n.callFrame.functionName || '(native)';
  files.set(file, (files.get(file) ?? 0) + (n.self ?? 0));
}
console.log('self time by file');
for (const [k, v] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${pct(v)}  ${k}`);
