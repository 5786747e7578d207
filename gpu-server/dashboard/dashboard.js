/**
 * The dashboard's one script: asks for the operator token once (kept in this tab's sessionStorage, never in the URL),
 * then polls the JSON API (once a second while the selected run has a round going) and redraws. Every text that comes
 * from the server goes in as a text node or attribute value, never as markup: device ids and errors come from
 * configuration and from remote devices.
 */
const TOKEN_KEY = 'splitfrozen.operatorToken';
const LIVE_MS = 1000;
const IDLE_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
// The hash holds the selected run's id, so a reload or a shared link opens the same run (never the token).
function fromHash() {
  try {
    return decodeURIComponent(location.hash.slice(1)) || undefined;
  } catch {
    return undefined; // a malformed %-escape: show the newest run
  }
}
let selected = fromHash();
// A round's plan is written once and never changes: fetched once per run and round.
const plans = new Map();
let timer;
let busy = false;
let again = false;

class Refused extends Error {}

async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` }, cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) throw new Refused(body.error ?? `HTTP ${res.status}`);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}${body.error ? `: ${body.error}` : ''}`);
  return body;
}

function build(make, tag, attrs, children) {
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
const h = (tag, attrs, ...children) => build((t) => document.createElement(t), tag, attrs, children);
const s = (tag, attrs, ...children) => build((t) => document.createElementNS(SVG, t), tag, attrs, children);

const seconds = (ms) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
const percent = (x) => (x === undefined || x === null ? '-' : `${(x * 100).toFixed(1)}%`);
const loss = (x) => (x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(4));
function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

function signOut(reason) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  // Nothing seen under the old token stays on the page.
  plans.clear();
  $('runs').replaceChildren();
  $('run').replaceChildren();
  $('main').hidden = true;
  $('signout').hidden = true;
  $('status').textContent = '';
  $('login-reason').textContent = reason ? `The server refused the token: ${reason}` : '';
  $('login-reason').hidden = !reason;
  $('login').hidden = false;
  $('token').focus();
}

async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  clearTimeout(timer);
  let live = false;
  try {
    const { runs } = await api('/runs');
    runs.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    if (!runs.some((r) => r.id === selected)) selected = runs[0]?.id;
    const run = selected === undefined ? undefined : await api(`/runs/${encodeURIComponent(selected)}`);
    if (run) await fetchPlans(run);
    live = Boolean(run?.running);
    $('login').hidden = true;
    $('main').hidden = false;
    $('signout').hidden = false;
    $('runs').replaceChildren(...runsTable(runs));
    $('run').replaceChildren(...(run ? runView(run) : [h('p', { class: 'muted' }, 'No runs yet: create one with POST /runs (npm run cli -- create).')]));
    $('status').textContent = `${live ? 'live' : 'idle'} · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof Refused) {
      busy = again = false;
      return signOut(e.message);
    }
    $('status').textContent = `cannot reach the server (${e.message}); retrying`;
  }
  busy = false;
  if (again) {
    again = false;
    return refresh();
  }
  timer = setTimeout(refresh, live ? LIVE_MS : IDLE_MS);
}

/** Rounds with metrics, and the round in progress once it is planned. */
function roundsOf(run) {
  const rounds = run.metrics.map((m) => m.round);
  if (run.progress && run.progress.phase !== 'planning' && !rounds.includes(run.progress.round)) rounds.push(run.progress.round);
  return rounds;
}

async function fetchPlans(run) {
  const missing = roundsOf(run).filter((r) => !plans.has(`${run.id}/${r}`));
  await Promise.all(
    missing.map(async (r) => {
      // A round that failed before planning has no plan: shown without one.
      const { plan } = await api(`/runs/${encodeURIComponent(run.id)}/rounds/${r}`).catch((e) => (e instanceof Refused ? Promise.reject(e) : { plan: null }));
      if (plan) plans.set(`${run.id}/${r}`, plan);
    }),
  );
}

function runsTable(runs) {
  const select = (id) => () => {
    selected = id;
    history.replaceState(null, '', `#${encodeURIComponent(id)}`);
    refresh();
  };
  return [
    h('thead', {}, h('tr', {}, h('th', {}, 'run'), h('th', {}, 'created'), h('th', {}, 'devices'), h('th', {}, 'rounds planned'))),
    h(
      'tbody',
      {},
      runs.map((r) =>
        h(
          'tr',
          { class: r.id === selected ? 'selected' : undefined, 'data-run': r.id },
          h('td', {}, h('button', { type: 'button', class: 'link', click: select(r.id) }, r.id)),
          h('td', {}, new Date(r.createdAt).toLocaleString()),
          h('td', { class: 'num' }, r.devices),
          h('td', { class: 'num' }, r.rounds),
        ),
      ),
    ),
  ];
}

function runView(run) {
  return [summary(run), liveRound(run), plots(run), roundsTableView(run)];
}

function summary(run) {
  const { spec } = run;
  const total = (key) => run.metrics.reduce((a, m) => a + m[key], 0);
  const facts = [
    ['model', `${run.modelName} (${spec.model})`],
    ['task', spec.task.kind === 'classification' ? `classification: ${spec.task.labels.join(', ')}` : 'generation'],
    ['client order', spec.ordering.kind],
    [
      'LoRA',
      `rank ${spec.lora.rank}, alpha ${spec.lora.alpha}${spec.lora.targets ? ` on ${spec.lora.targets.join(', ')}` : ''}; adapters on blocks from ${run.deepestCut}`,
    ],
    ['batches', `${spec.training.batchSize} x ${spec.training.seqLen} tokens, ${spec.training.dtype}`],
    ['rounds', `${run.metrics.length} of ${spec.training.rounds} done${run.running ? `, round ${run.progress?.round} running` : ''}`],
    ['server', `train ${seconds(total('serverTrainMs'))}, idle ${seconds(total('serverIdleMs'))}`],
    ['moved', bytes(total('bytesMoved'))],
  ];
  return h(
    'section',
    { id: 'summary' },
    h('h2', {}, `Run ${run.id}`),
    h(
      'dl',
      {},
      facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    ),
    h(
      'table',
      { id: 'devices' },
      h('thead', {}, h('tr', {}, h('th', {}, 'device'), h('th', {}, 'cut'), h('th', {}, 'chosen by'), h('th', {}, 'capacity'))),
      h(
        'tbody',
        {},
        spec.devices.map((d) => {
          const c = run.cuts[d.id] ?? {};
          const why = c.planned ? `planner: ~${c.memoryMB} MB, ~${c.batchSeconds} s a batch` : 'the run spec';
          return h(
            'tr',
            { 'data-device': d.id },
            h('td', {}, d.id),
            h('td', { class: 'num' }, c.cut),
            h('td', {}, why),
            h('td', {}, `${d.profile.memoryMB} MB, ${d.profile.gflops} GFLOP/s, ${d.profile.maxBatchSeconds} s a batch, ${d.profile.weights}`),
          );
        }),
      ),
    ),
  );
}

function liveRound(run) {
  const p = run.progress;
  if (!p) return h('section', { id: 'live' }, h('h2', {}, 'Round'), h('p', { class: 'muted' }, 'No round since the server started.'));
  const rows = [...p.order, ...Object.keys(p.devices).filter((id) => !p.order.includes(id))];
  const plan = plans.get(`${run.id}/${p.round}`);
  return h(
    'section',
    { id: 'live' },
    h('h2', {}, `${run.running ? 'Live round' : 'Last round'} ${p.round} `, h('span', { class: `phase ${p.phase}` }, p.phase)),
    h(
      'p',
      {},
      h('progress', { max: p.batchesTotal || 1, value: p.batchesTrained }),
      ` ${p.batchesTrained}/${p.batchesTotal} batches trained`,
      p.lastLoss === undefined ? '' : `, last loss ${loss(p.lastLoss)}`,
      p.rejected.length ? `, ${p.rejected.length} objects refused` : '',
    ),
    p.error ? h('p', { class: 'error' }, p.error) : '',
    h(
      'table',
      { id: 'progress' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['device', 'cut', 'activations', 'state', 'trained', 'bytes', 'forward', 'error'].map((t) => h('th', {}, t)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((id) => {
          const d = p.devices[id];
          const source = plan?.devices[id]?.sourceRound;
          const activations = d.state === 'skipped' ? '-' : d.reused ? `cached from round ${source ?? '?'}` : 'computed now';
          return h(
            'tr',
            { 'data-device': id },
            h('td', {}, id),
            h('td', { class: 'num' }, d.cut),
            h('td', {}, activations),
            h('td', {}, h('span', { class: `state ${d.state}` }, d.state)),
            h(
              'td',
              { class: 'batches' },
              h('progress', { max: d.batches || 1, value: d.trained }),
              ` ${d.trained}/${d.batches}${d.refused ? `, ${d.refused} refused` : ''}`,
            ),
            h('td', { class: 'num' }, bytes(d.bytes)),
            h('td', { class: 'num' }, seconds(d.forwardMs)),
            h('td', { class: 'error' }, d.error ?? ''),
          );
        }),
      ),
    ),
  );
}

function plots(run) {
  const p = run.progress;
  let wall = 0;
  // Each finished round at the time it ended, counted in rounds' wall time since the first round began.
  const ends = run.metrics.map((m) => [(wall += m.wallMs) / 1000, m]);
  return h(
    'section',
    { id: 'plots' },
    h(
      'figure',
      { id: 'loss-live' },
      h('figcaption', {}, p ? `Training loss in round ${p.round}, by batch` : 'Training loss'),
      plot([{ name: 'batch loss', cls: 'train', points: (p?.losses ?? []).map((l) => [l.ms / 1000, l.loss]) }], 'seconds into the round', loss),
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
        'seconds of rounds',
        loss,
      ),
    ),
    h(
      'figure',
      { id: 'accuracy-rounds' },
      h('figcaption', {}, run.spec.task.kind === 'generation' ? 'Exact match after each round' : 'Eval accuracy after each round'),
      plot(
        [{ name: 'accuracy', cls: 'accuracy', points: ends.map(([t, m]) => [t, m.evalAccuracy]), labels: ends.map(([, m]) => `r${m.round}`) }],
        'seconds of rounds',
        percent,
        [0, 1],
      ),
    ),
  );
}

/** Round numbers, about `n` of them, covering [lo, hi]. */
function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((x) => x >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A line plot as inline SVG; points with a non-finite coordinate are left out. */
function plot(series, xLabel, yFormat, yRange) {
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
    ticks(x0, x1, 5).map((v) => s('text', { class: 'tick', x: fixed(X(v)), y: H - B + 16, 'text-anchor': 'middle' }, Number(v.toPrecision(4)))),
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

function roundsTableView(run) {
  const byRound = new Map(run.metrics.map((m) => [m.round, m]));
  const rounds = roundsOf(run).sort((a, b) => b - a);
  const head = ['round', 'plan: order, cuts, activations', 'train loss', 'eval loss', 'eval accuracy', 'server train / idle', 'moved', 'wall'];
  return h(
    'section',
    {},
    h('h2', {}, 'Rounds'),
    h(
      'table',
      { id: 'rounds' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          head.map((t) => h('th', {}, t)),
        ),
      ),
      h(
        'tbody',
        {},
        rounds.map((r) => {
          const m = byRound.get(r);
          const plan = plans.get(`${run.id}/${r}`);
          return h(
            'tr',
            { 'data-round': r },
            h('td', { class: 'num' }, r),
            h('td', {}, planCell(plan, r)),
            m
              ? [
                  h('td', { class: 'num' }, loss(m.trainLoss)),
                  h('td', { class: 'num' }, loss(m.evalLoss)),
                  h('td', { class: 'num accuracy' }, percent(m.evalAccuracy)),
                  h('td', {}, timeBar(m)),
                  h('td', { class: 'num' }, bytes(m.bytesMoved)),
                  h('td', { class: 'num' }, seconds(m.wallMs)),
                ]
              : h('td', { colspan: head.length - 2, class: 'muted' }, run.progress?.round === r ? run.progress.phase : 'no metrics'),
          );
        }),
      ),
    ),
  );
}

function planCell(plan, round) {
  if (!plan) return h('span', { class: 'muted' }, 'no plan');
  return h(
    'ol',
    { class: 'plan' },
    plan.order.map((id) => {
      const d = plan.devices[id];
      const cached = d.sourceRound !== round;
      return h(
        'li',
        { class: cached ? 'cached' : 'computed' },
        h('b', {}, id),
        ` cut ${d.cut}, ${d.batches} batches, `,
        cached ? `cached from round ${d.sourceRound}` : 'computed',
      );
    }),
    Object.entries(plan.skipped).map(([id, why]) => h('li', { class: 'skipped' }, h('b', {}, id), ` skipped: ${why}`)),
  );
}

/** The server's training time against its idle time (waiting on devices or storage) in the round, as one bar. */
function timeBar(m) {
  const total = m.serverTrainMs + m.serverIdleMs || 1;
  const train = (m.serverTrainMs / total) * 120;
  return h(
    'span',
    { class: 'timebar' },
    s(
      'svg',
      { viewBox: '0 0 120 10', width: 120, height: 10 },
      s('rect', { class: 'train', x: 0, y: 0, width: train.toFixed(1), height: 10 }),
      s('rect', { class: 'idle', x: train.toFixed(1), y: 0, width: (120 - train).toFixed(1), height: 10 }),
    ),
    ` ${seconds(m.serverTrainMs)} / ${seconds(m.serverIdleMs)}`,
  );
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value);
  $('token').value = '';
  $('login-reason').hidden = true;
  refresh();
});
$('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => {
  selected = fromHash();
  refresh();
});

if (sessionStorage.getItem(TOKEN_KEY)) refresh();
else signOut();
