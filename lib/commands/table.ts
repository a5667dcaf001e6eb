// Plain text tables as busctl prints them: columns left-aligned (numbers
// right-aligned) to their widest cell, a header line unless --no-legend.
export interface Column { title: string; right?: boolean }

export function formatTable(columns: Column[], rows: string[][], legend = true): string {
  const width = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells
    .map((cell, i) => (columns[i]!.right ? cell.padStart(width[i]!) : cell.padEnd(width[i]!)))
    .join(' ').trimEnd();
  return [...(legend ? [line(columns.map((c) => c.title))] : []), ...rows.map(line)].map((l) => `${l}\n`).join('');
}
