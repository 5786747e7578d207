/** The dashboard's table of finished rounds: metrics, each round's plan (order, cuts, cache) and where its time went. */
import { bytes, h, loss, percent, s, seconds } from './render.js';

/** `plans`: each round's plan, by `${run id}/${round}`. */
export function roundsTableView(run, plans) {
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

export function planCell(plan, round) {
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
export function timeBar(m) {
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

/** Rounds with metrics, and the round in progress once it is planned. */
export function roundsOf(run) {
  const rounds = run.metrics.map((m) => m.round);
  if (run.progress && run.progress.phase !== 'planning' && !rounds.includes(run.progress.round)) rounds.push(run.progress.round);
  return rounds;
}
