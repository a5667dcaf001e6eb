// Counts a `tap --reporter=tap` stream honestly and prints, as its last line,
// "N passed, M failed, K skipped". Every test point is counted once: a point
// with subtests counts through its subtests (leaves), and a failed point whose
// subtests show no failure (a timeout, a crash, a wrong plan) counts as one
// failure itself. TODO and SKIP count as skipped, also for everything below
// them. A non-zero exit of tap with no failure seen counts as one failure.
// Usage: node test/tap-count.mjs TAP-FILE TAP-EXIT-CODE
import { readFileSync } from 'node:fs';

const [file, tapExit = '0'] = process.argv.slice(2);
const lines = readFileSync(file, 'utf8').split('\n');

const POINT = /^(not )?ok\b\s*(?:\d+)?\s*(?:- )?(.*)$/;
// A directive starts at an unescaped '#': "# TODO reason", "# SKIP reason".
const DIRECTIVE = /(?:^|[^\\])#\s*(todo|skip)\S*\b\s*(.*)$/i;

/** Points by nesting level, waiting for the point that closes their subtest. */
const open = [[]];
for (let i = 0; i < lines.length; i++) {
  const line = lines[i].replace(/\r$/, '');
  const indent = line.length - line.trimStart().length;
  const text = line.trimStart();
  if (text === '---') {
    // YAML diagnostics of the point above: skip to its end marker at the same indent.
    while (i + 1 < lines.length && lines[i + 1].replace(/\r$/, '') !== `${' '.repeat(indent)}...`) i++;
    i++;
    continue;
  }
  const m = POINT.exec(text);
  if (!m) continue;
  const level = Math.floor(indent / 4);
  while (open.length <= level + 1) open.push([]);
  const d = DIRECTIVE.exec(m[2]);
  const point = {
    ok: !m[1],
    name: m[2].replace(/\s+#\s*time=.*$/, ''),
    directive: d ? d[1].toLowerCase() : null,
    // Everything deeper that is still open belongs to this point (also orphans of a crash).
    children: open.splice(level + 1).flat(),
  };
  open[level].push(point);
}

const counts = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

function count(point, path, excused) {
  const here = [...path, point.name];
  const skip = excused || point.directive !== null;
  if (point.children.length === 0) {
    if (skip) counts.skipped++;
    else if (point.ok) counts.passed++;
    else { counts.failed++; failures.push(here.join(' > ')); }
    return;
  }
  const before = counts.failed;
  for (const child of point.children) count(child, here, skip);
  if (!point.ok && !skip && counts.failed === before) {
    counts.failed++;
    failures.push(here.join(' > '));
  }
}

for (const point of open.flat()) count(point, [], false);
if (Number(tapExit) !== 0 && counts.failed === 0) {
  counts.failed++;
  failures.push(`tap exited with ${tapExit}`);
}
for (const f of failures) console.log(`FAILED: ${f}`);
console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
process.exitCode = counts.failed > 0 ? 1 : 0;
