/** Experiment outputs: a markdown table and SVG plots of accuracy against round, or against modelled time, per method. */
import type { MethodResult } from './sim/methods.ts';

export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

/** Where each round's point goes on the x axis: its index (the default), or e.g. the modelled time at its end. */
export interface XAxis {
  label: string;
  at: (method: string, round: number) => number;
  tick: (value: number) => string;
}

export function accuracyPlot(title: string, results: ReadonlyArray<{ method: string; rounds: ReadonlyArray<{ accuracy: number }> }>, axis?: XAxis): string {
  const W = 640;
  const H = 400;
  const pad = { left: 60, right: 170, top: 40, bottom: 50 };
  const rounds = Math.max(...results.map((r) => r.rounds.length));
  const xMax = axis ? Math.max(...results.flatMap((r) => r.rounds.map((_, k) => axis.at(r.method, k)))) : rounds - 1;
  const at = (method: string, round: number) => (axis ? axis.at(method, round) : round);
  const x = (v: number) => pad.left + ((W - pad.left - pad.right) * v) / Math.max(xMax, 1e-12);
  const y = (acc: number) => H - pad.bottom - (H - pad.top - pad.bottom) * acc;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - pad.right / 2}" y="22" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    const yy = y(t / 10);
    parts.push(
      `<line x1="${pad.left}" x2="${W - pad.right}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`,
      `<text x="${pad.left - 8}" y="${yy + 4}" text-anchor="end">${t * 10}%</text>`,
    );
  }
  const ticks = axis
    ? [0, 0.25, 0.5, 0.75, 1].map((f) => [f * xMax, axis.tick(f * xMax)] as const)
    : Array.from({ length: rounds }, (_, r) => [r, String(r + 1)] as const);
  for (const [v, label] of ticks) parts.push(`<text x="${x(v)}" y="${H - pad.bottom + 18}" text-anchor="middle">${escape(label)}</text>`);
  parts.push(`<text x="${(pad.left + W - pad.right) / 2}" y="${H - 12}" text-anchor="middle">${escape(axis?.label ?? 'round')}</text>`);
  parts.push(`<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">evaluation accuracy</text>`);
  results.forEach((res, i) => {
    const color = COLORS[i % COLORS.length];
    const points = res.rounds.map((r, k) => `${x(at(res.method, k)).toFixed(1)},${y(r.accuracy).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`);
    for (const p of points.split(' ')) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${color}"/>`);
    parts.push(
      `<line x1="${W - pad.right + 15}" x2="${W - pad.right + 35}" y1="${pad.top + 20 * i}" y2="${pad.top + 20 * i}" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${W - pad.right + 40}" y="${pad.top + 20 * i + 4}">${escape(res.method)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const giga = (x: number) => (x / 1e9).toFixed(2);
const mega = (x: number) => (x / 2 ** 20).toFixed(2);

export function resultsTable(results: readonly MethodResult[]): string {
  const lines = [
    '| method | final accuracy | best accuracy | device forward GFLOP | device backward GFLOP | device peak memory (MB, est.) | up MB / device | down MB / device | server GFLOP | wall (s) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const accs = r.rounds.map((x) => x.accuracy);
    lines.push(
      `| ${r.method} | ${pct(accs.at(-1)!)} | ${pct(Math.max(...accs))} | ${giga(r.deviceForwardFlops)} | ${giga(r.deviceBackwardFlops)} | ${r.devicePeakMemoryMB} | ${mega(r.bytesUpPerDevice)} | ${mega(r.bytesDownPerDevice)} | ${giga(r.serverFlops)} | ${(r.wallMs / 1000).toFixed(1)} |`,
    );
  }
  lines.push('', `| round | ${results.map((r) => r.method).join(' | ')} |`, `|---|${results.map(() => '---|').join('')}`);
  for (let k = 0; k < Math.max(...results.map((r) => r.rounds.length)); k++)
    lines.push(`| ${k + 1} | ${results.map((r) => (r.rounds[k] ? pct(r.rounds[k].accuracy) : '-')).join(' | ')} |`);
  return lines.join('\n') + '\n';
}
