/** The privacy frontier as an SVG: accuracy against the strongest attack's recovery, one curve per defence. */
import { COLORS, escape } from './report.ts';
import type { DeviceSetting, SuiteResult } from './privacy.ts';

/** One defence setting's point of the frontier: what the attacks recovered and what the model kept. */
export interface SweepPoint {
  setting: DeviceSetting;
  name: string;
  privacy: SuiteResult;
  /** Final-round accuracy per seed, and their mean (classification). */
  accuracies: number[];
  accuracy: number;
  /** Final-round held-out loss per seed, and their mean (for generation: the completions' next-token loss). */
  losses: number[];
  loss: number;
}

/** The curve a setting belongs to, and the label of its point. */
function family(p: SweepPoint): { curve: string; label: string } {
  if (p.setting.kind === 'sanitise') return { curve: 'token sanitisation (SanText)', label: `ε${p.setting.epsilon}` };
  if (p.setting.kind === 'groups') return { curve: `groups of ${p.setting.minSize}+ tokens (RR)`, label: `ε${p.setting.epsilon}` };
  const d = p.setting.defence;
  if (d.mechanism === 'none') return { curve: 'none', label: 'none' };
  return { curve: d.mechanism === 'gaussian' ? 'clipped Gaussian (DP-Forward)' : 'metric DP (multivariate Laplace)', label: `ε${d.epsilon}` };
}

export function frontierPlot(title: string, points: readonly SweepPoint[], baseline: number): string {
  const [W, H] = [760, 420];
  const pad = { left: 60, right: 260, top: 40, bottom: 50 };
  const legend = W - pad.right + 55;
  const x = (recovery: number) => pad.left + (W - pad.left - pad.right) * recovery;
  const y = (accuracy: number) => H - pad.bottom - (H - pad.top - pad.bottom) * accuracy;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${(W - pad.right + pad.left) / 2}" y="22" text-anchor="middle" font-size="14">${escape(title)}</text>`,
    // The goal: at most 10% recovered, at most 3 points of accuracy lost.
    `<rect x="${x(0)}" y="${y(1)}" width="${x(0.1) - x(0)}" height="${y(baseline - 0.03) - y(1)}" fill="#2ca02c" fill-opacity="0.12"/>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    parts.push(
      `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(t / 10)}" y2="${y(t / 10)}" stroke="#ddd"/>`,
      `<text x="${pad.left - 8}" y="${y(t / 10) + 4}" text-anchor="end">${t * 10}%</text>`,
    );
    parts.push(`<text x="${x(t / 10)}" y="${H - pad.bottom + 18}" text-anchor="middle">${t * 10}%</text>`);
  }
  parts.push(`<text x="${(pad.left + W - pad.right) / 2}" y="${H - 12}" text-anchor="middle">tokens recovered by the strongest attack</text>`);
  parts.push(`<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">evaluation accuracy</text>`);
  const curves = new Map<string, SweepPoint[]>();
  for (const p of points) curves.set(family(p).curve, [...(curves.get(family(p).curve) ?? []), p]);
  [...curves].forEach(([curve, ps], i) => {
    const color = COLORS[i % COLORS.length];
    const at = ps.map((p) => `${x(p.privacy.strongest.recovery).toFixed(1)},${y(p.accuracy).toFixed(1)}`);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${at.join(' ')}"/>`);
    ps.forEach((p, k) => {
      const [cx, cy] = at[k].split(',');
      parts.push(
        `<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`,
        `<text x="${Number(cx) + 5}" y="${Number(cy) - 5}" font-size="10" fill="${color}">${escape(family(p).label)}</text>`,
      );
    });
    parts.push(`<line x1="${legend}" x2="${legend + 20}" y1="${pad.top + 20 * i}" y2="${pad.top + 20 * i}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${legend + 25}" y="${pad.top + 20 * i + 4}">${escape(curve)}</text>`);
  });
  parts.push(`<text x="${legend}" y="${pad.top + 20 * curves.size + 10}" font-size="11">shaded: the goal (≤ 10% recovered,</text>`);
  parts.push(`<text x="${legend}" y="${pad.top + 20 * curves.size + 24}" font-size="11">≤ 3 points below no defence)</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
