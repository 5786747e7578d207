/**
 * The dashboard's script (with render.js and rounds.js): asks for the operator token once (kept in this tab's sessionStorage, never in the URL),
 * then polls the JSON API (once a second while the selected run has a round going) and redraws. Every text that comes
 * from the server goes in as a text node or attribute value, never as markup: device ids and errors come from
 * configuration and from remote devices.
 */
import { bytes, h, loss, percent, plots, seconds } from './render.js';
import { roundsOf, roundsTableView } from './rounds.js';
const TOKEN_KEY = 'splitfrozen.operatorToken';
const LIVE_MS = 1000;
const IDLE_MS = 2000;

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

async function api(path, method = 'GET') {
  const res = await fetch(path, { method, headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` }, cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) throw new Refused(body.error ?? `HTTP ${res.status}`);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}${body.error ? `: ${body.error}` : ''}`);
  return body;
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
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['run', 'created', 'status', 'rounds done', 'last accuracy', 'devices'].map((t) => h('th', {}, t)),
      ),
    ),
    h(
      'tbody',
      {},
      runs.map((r) =>
        h(
          'tr',
          { class: r.id === selected ? 'selected' : undefined, 'data-run': r.id },
          h('td', {}, h('button', { type: 'button', class: 'link', click: select(r.id) }, r.id)),
          h('td', {}, new Date(r.createdAt).toLocaleString()),
          h('td', {}, h('span', { class: `status ${r.status}` }, r.status)),
          h('td', { class: 'num' }, `${r.roundsDone} of ${r.rounds}`),
          h('td', { class: 'num accuracy' }, percent(r.accuracy)),
          h('td', { class: 'num' }, r.devices),
        ),
      ),
    ),
  ];
}

function runView(run) {
  return [summary(run), controls(run), liveRound(run), plots(run), roundsTableView(run, plans)];
}

// What the last button press answered, until another run is shown.
let said = { run: undefined, text: '', error: false };

/** Start the next round, or cancel the running one: the API's own calls, with the operator's token. */
function controls(run) {
  const next = run.metrics.length;
  const done = next >= run.spec.training.rounds && !run.running;
  const act = (method, path, ok) => async (e) => {
    e.currentTarget.disabled = true;
    try {
      const answer = await api(`/runs/${encodeURIComponent(run.id)}${path}`, method);
      said = { run: run.id, text: ok(answer), error: false };
    } catch (err) {
      if (err instanceof Refused) return signOut(err.message);
      said = { run: run.id, text: err.message, error: true };
    }
    refresh();
  };
  return h(
    'section',
    { id: 'controls' },
    h(
      'button',
      {
        type: 'button',
        id: 'trigger',
        disabled: run.running || done,
        title: done ? `all ${run.spec.training.rounds} planned rounds are done` : undefined,
        click: act('POST', '/rounds', (a) => `round ${a.round} started`),
      },
      done
        ? `All ${run.spec.training.rounds} rounds done`
        : run.progress && !run.running && ['failed', 'cancelled'].includes(run.progress.phase)
          ? `Resume round ${run.progress.round}`
          : `Start round ${next}`,
    ),
    h(
      'button',
      {
        type: 'button',
        id: 'cancel',
        disabled: !run.running,
        click: act('POST', '/cancel', (a) => `round ${a.progress.round} ${a.progress.phase === 'cancelled' ? 'cancelled' : 'stopping'}`),
      },
      'Cancel round',
    ),
    said.run === run.id && said.text ? h('span', { id: 'said', class: said.error ? 'error' : 'muted' }, said.text) : '',
  );
}

function summary(run) {
  const { spec } = run;
  const total = (key) => run.metrics.reduce((a, m) => a + m[key], 0);
  const facts = [
    ['model', run.modelName === spec.model ? spec.model : `${run.modelName} (${spec.model})`],
    ['task', spec.task.kind === 'classification' ? `classification: ${spec.task.labels.join(', ')}` : 'generation'],
    ['client order', spec.ordering.kind],
    [
      'LoRA',
      `rank ${spec.lora.rank}, alpha ${spec.lora.alpha}${spec.lora.targets ? ` on ${spec.lora.targets.join(', ')}` : ''}; adapters on blocks from ${run.deepestCut}`,
    ],
    [
      'batches',
      `${spec.training.batchSize} rows of up to ${spec.training.seqLen} tokens; activations uploaded as ${spec.training.dtype === 'fp16' ? 'fp16 (half the bytes)' : 'fp32'}`,
    ],
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
          const why = `${c.planned ? `planner: ~${c.memoryMB} MB, ~${c.batchSeconds} s a batch` : 'the run spec'}${c.unchecked ? `; not checked against the owner's approvals (${c.unchecked})` : ''}`;
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
      ` ${p.batchesTrained}/${p.batchesTotal} batches trained, ${Object.values(p.devices).reduce((a, d) => a + (d.uploaded ?? 0), 0)} uploaded`,
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
          ['device', 'cut', 'activations', 'state', 'uploaded by the device', 'trained by the server', 'bytes', 'device forward', 'error'].map((t) =>
            h('th', {}, t),
          ),
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
              { class: 'uploaded' },
              d.state === 'skipped' ? '-' : [h('progress', { max: d.batches || 1, value: d.uploaded ?? 0 }), ` ${d.uploaded ?? 0}/${d.batches}`],
            ),
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
