/** The dashboard's DOM helpers (elements built from text, never from markup), number formats and SVG plots. */
const SVG = 'http://www.w3.org/2000/svg';

export function build(make, tag, attrs, children) {
  const e = make(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (typeof v === 'function') e.addEventListener(k, v);
    else if (v !== undefined && v !== false) e.setAttribute(k, String(v));
  }
  e.append(
    ...children
      .flat(Infinity)
      .filter((c) => c !== undefined && c !== null && c !== false)
      .map((c) => (c instanceof Node ? c : String(c))),
  );
  return e;
}
export const h = (tag, attrs, ...children) => build((t) => document.createElement(t), tag, attrs, children);
export const s = (tag, attrs, ...children) => build((t) => document.createElementNS(SVG, t), tag, attrs, children);

export const seconds = (ms) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
export const percent = (x) => (x === undefined || x === null ? '-' : `${(x * 100).toFixed(1)}%`);
export const loss = (x) => (x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(4));
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function plots(run) {
  const p = run.progress;
  // Rounds are the unit of training: each finished round's metrics at its round number.
  const ends = run.metrics.map((m) => [m.round, m]);
  return h(
    'section',
    { id: 'plots' },
    h(
      'figure',
      { id: 'loss-live' },
      h('figcaption', {}, p ? `Training loss in round ${p.round}, by batch` : 'Training loss'),
      plot([{ name: 'batch loss', cls: 'train', points: (p?.losses ?? []).map((l, i) => [i + 1, l.loss]) }], 'batch trained', loss),
    ),
    h(
      'figure',
      { id: 'loss-rounds' },
      h('figcaption', {}, 'Loss after each round', h('span', { class: 'key train' }, 'train'), h('span', { class: 'key eval' }, 'eval')),
      plot(
        [
          { name: 'train', cls: 'train', points: ends.map(([t, m]) => [t, m.trainLoss]), labels: ends.map(([, m]) => `r${m.round}`) },
          { name: 'eval', cls: 'eval', points: ends.map(([t, m]) => [t, m.evalLoss]) },
        ],
        'round',
        loss,
      ),
    ),
    h(
      'figure',
      { id: 'accuracy-rounds' },
      h('figcaption', {}, run.spec.task.kind === 'generation' ? 'Exact match after each round' : 'Eval accuracy after each round'),
      plot(
        [{ name: 'accuracy', cls: 'accuracy', points: ends.map(([t, m]) => [t, m.evalAccuracy]), labels: ends.map(([, m]) => `r${m.round}`) }],
        'round',
        percent,
        [0, 1],
      ),
    ),
  );
}

/** Round numbers, about `n` of them, covering [lo, hi]. */
export function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((x) => x >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A line plot as inline SVG; points with a non-finite coordinate are left out. Counted x axes tick whole numbers. */
export function plot(series, xLabel, yFormat, yRange, xCounted = true) {
  const W = 440;
  const H = 220;
  const [L, R, T, B] = [56, 12, 12, 36];
  const kept = series.map((sr) => ({
    ...sr,
    points: sr.points.map((pt, i) => [...pt, sr.labels?.[i]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
  }));
  const all = kept.flatMap((sr) => sr.points);
  if (all.length === 0) return h('p', { class: 'muted empty' }, 'no points yet');
  const span = (values, range) => {
    let [lo, hi] = range ?? [Math.min(...values), Math.max(...values)];
    if (hi - lo < 1e-9) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.05, hi + (Math.abs(hi) || 1) * 0.05];
    return [lo, hi];
  };
  const [x0, x1] = span(
    all.map(([x]) => x),
    all.length === 1 ? undefined : [Math.min(0, ...all.map(([x]) => x)), Math.max(...all.map(([x]) => x))],
  );
  const [y0, y1] = span(
    all.map(([, y]) => y),
    yRange,
  );
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const fixed = (v) => v.toFixed(1);
  return s(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': series.map((sr) => sr.name).join(', ') },
    ticks(y0, y1, 4).map((v) => [
      s('line', { class: 'grid', x1: L, x2: W - R, y1: fixed(Y(v)), y2: fixed(Y(v)) }),
      s('text', { class: 'tick', x: L - 6, y: fixed(Y(v) + 4), 'text-anchor': 'end' }, yFormat(v)),
    ]),
    ticks(x0, x1, 5)
      .filter((v) => !xCounted || Number.isInteger(v))
      .map((v) => s('text', { class: 'tick', x: fixed(X(v)), y: H - B + 16, 'text-anchor': 'middle' }, Number(v.toPrecision(4)))),
    s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    s('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }),
    s('text', { class: 'label', x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, xLabel),
    kept.map((sr) => [
      s('path', {
        class: `line ${sr.cls}`,
        d: sr.points.map(([x, y], i) => `${i ? 'L' : 'M'}${fixed(X(x))},${fixed(Y(y))}`).join(''),
        'data-points': sr.points.length,
      }),
      // Dots where there are few enough to tell apart; always for a single point, which a path alone does not show.
      sr.points.length <= 60
        ? sr.points.map(([x, y, label]) =>
            s('circle', { class: `dot ${sr.cls}`, cx: fixed(X(x)), cy: fixed(Y(y)), r: 3 }, s('title', {}, `${label ? `${label}: ` : ''}${yFormat(y)}`)),
          )
        : [],
    ]),
  );
}
