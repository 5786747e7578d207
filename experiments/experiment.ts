/**
 * One experiment: a task, a partition into device shards, a base model, and the methods compared on them under the
 * same budget (one pass over every device's data per round). Writes results.json, results.md and accuracy.svg.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { histogramTable } from '../core/data/partition.ts';
import { familyOf, type Model } from '../core/model/family.ts';
import { writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import {
  breakEvenDevices,
  DEVICE_PROFILES,
  cumulativeSeconds,
  paretoSlowdowns,
  withSlowdowns,
  type BatchOrder,
  type DeviceProfile,
  type Schedule,
} from './device-time.ts';
import { simSpec, type ExperimentOptions } from './experiment-options.ts';
import { commitOf, provenance } from './provenance.ts';

export type { ExperimentOptions } from './experiment-options.ts';
import { accuracyPlot, resultsTable } from './report.ts';
import { runMethod, type MethodResult } from './sim/methods.ts';
import { setUpGenerationSimulation, setUpSimulation } from './sim/setup.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';

export async function runExperiment(o: ExperimentOptions): Promise<{ results: MethodResult[]; summary: Record<string, unknown> }> {
  const log = o.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const generation = !('labels' in o.task);
  // A new classification head for the task: a base model's own head (if any) was made for other labels.
  const params = new Map(o.model.params);
  params.delete('score.weight');
  const model = (generation ? { ...o.model, params } : { config: { ...o.model.config, numLabels: (o.task as TaskData).labels.length }, params }) as Model;
  if (generation && (!familyOf(model.config).generation || !o.tokenizer))
    throw new Error('a generation task runs on a model of a family that generates (Llama), with its tokenizer');
  const setup = {
    devices: o.devices,
    partition: o.partition,
    trainRows: o.trainRows,
    evalRows: o.evalRows,
    batchSize: o.batchSize,
    seqLen: o.seqLen,
    padTokenId: model.config.padTokenId,
    seed: o.seed,
  };
  const data = generation
    ? setUpGenerationSimulation(o.task as GenerationTaskData, o.tokenizer!, { ...setup, generate: GENERATED_PROMPTS })
    : setUpSimulation(o.task as TaskData, setup, o.tokenizer);
  const title = `${o.task.name} / ${data.partition} / ${o.devices} devices`;
  log(`== ${title}`);
  for (const note of o.task.notes) log(`   note: ${note}`);
  const histogram = histogramTable(
    data.devices.map((d) => d.histogram),
    generation ? ['rows'] : (o.task as TaskData).labels,
  );
  log(histogram);
  const spec = simSpec(o);
  const targets = spec.lora.targets;
  const results: MethodResult[] = [];
  for (const method of o.methods) {
    const r = await runMethod(
      method,
      model,
      data,
      { ...spec, lr: o.lrByMethod?.[method] ?? spec.lr },
      (round) =>
        log(
          `   ${method} round ${round.round + 1}/${o.rounds}: ${generation ? 'exact match' : 'accuracy'} ${(round.accuracy * 100).toFixed(1)}%, train loss ${round.trainLoss.toFixed(4)} (${(round.wallMs / 1000).toFixed(1)} s)`,
        ),
      o.tokenizer,
    );
    results.push(r);
  }
  const summary = {
    command: o.command,
    date: new Date().toISOString(),
    task: o.task.name,
    notes: o.task.notes,
    partition: data.partition,
    devices: o.devices,
    histogram: data.devices.map((d) => d.histogram),
    trainRows: data.devices.reduce((a, d) => a + d.rows, 0),
    evalRows: data.evalRows,
    majorityClass: generation ? undefined : majorityShare((o.task as TaskData).eval.slice(0, data.evalRows).map((e) => e.label)),
    accuracyIs: generation
      ? `exact match of the final number over the first ${data.prompts!.length} held-out problems, greedy, ${GENERATED_TOKENS_NOTE}`
      : 'classification accuracy',
    model: { name: o.modelName, nLayer: model.config.nLayer, nEmbd: model.config.nEmbd, nHead: model.config.nHead },
    spec,
    methods: results.map(({ final: _final, ...r }) => r),
    modelledTime: modelledTime(results),
    // compare keeps these results only while everything that made them is the same.
    ...(await provenance(o)),
    commit: commitOf(),
  };
  await mkdir(o.out, { recursive: true });
  await writeFileAtomic(join(o.out, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  const md = [
    `# ${title}`,
    '',
    `Command: \`${o.command}\``,
    '',
    ...o.task.notes.map((n) => `Note: ${n}`),
    '',
    `Base model: ${o.modelName} (${model.config.modelType}, ${model.config.nLayer} blocks, width ${model.config.nEmbd}); cut ${o.cut}; LoRA r=${o.rank} on ${targets.join(', ')}; ${o.rounds} rounds; ${summary.trainRows} training rows, ${data.evalRows} evaluation rows.`,
    '',
    generation ? 'Rows per device:' : 'Label histogram (rows per device and class):',
    '',
    histogram,
    '',
    ...(generation ? [`"Accuracy" here: ${summary.accuracyIs}; loss: the held-out completions' next-token loss.`, ''] : []),
    resultsTable(results),
    '![accuracy](accuracy.svg)',
    '',
  ].join('\n');
  const time = summary.modelledTime;
  const timeMd = time
    ? ['', timeTable(time), ...DEVICE_PROFILES.map((p) => `![time to accuracy on ${p.name}-class devices](time-${p.name}.svg)`), '']
    : ['', 'No modelled time: it needs the splitfrozen run (its measured server step).', ''];
  await writeFileAtomic(join(o.out, 'results.md'), md + timeMd.join('\n'));
  await writeFileAtomic(join(o.out, 'accuracy.svg'), accuracyPlot(title, results));
  for (const p of time ? DEVICE_PROFILES : []) {
    const fits = results.filter((r) => time!.byMethod[r.method]![p.name]);
    const axis = {
      label: `modelled training time on ${p.name}-class devices (s)`,
      at: (m: string, k: number) => time!.byMethod[m]![p.name]![k]!,
      tick: (v: number) => v.toPrecision(3),
    };
    await writeFileAtomic(join(o.out, `time-${p.name}.svg`), accuracyPlot(`${title}: ${p.name}`, fits, axis));
  }
  return { results, summary };
}

/** Held-out problems a generation experiment completes each round. */
const GENERATED_PROMPTS = 8;
const GENERATED_TOKENS_NOTE = 'at most 32 new tokens each';

/** The share of the most frequent label: what always answering that label scores. */
export function majorityShare(labels: number[]): number {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  return Math.max(...counts.values()) / labels.length;
}

type Timed = Pick<MethodResult, 'method' | 'rounds' | 'work' | 'serverFlops' | 'trainMs'>;

/**
 * Each method's training time, round by round (cumulative seconds), on each device profile, from the device-time
 * model and the server's speed: by default as measured in this experiment's SplitFrozen steps (FLOP/s of this
 * process), or `server` as measured elsewhere (bench:train). Null where the method does not fit the device.
 * SplitFrozen's stop-and-wait ablation and its interleaved batch order beside it.
 */
/** Device speeds in the stragglers' rows: Pareto slowdowns of this shape (one device in ten over 4.6 times slower). */
const STRAGGLER_ALPHA = 1.5;

export function modelledTime(results: readonly Timed[], server?: { gflops: number; source: string }) {
  const sf = results.find((r) => r.method === 'splitfrozen');
  if (!sf || sf.trainMs === 0) return undefined;
  const serverFlops = server ? server.gflops * 1e9 : sf.serverFlops / (sf.trainMs / 1000);
  const cumulative = (method: string, r: Timed, p: DeviceProfile, schedule?: Schedule, batchOrder?: BatchOrder) =>
    cumulativeSeconds(method, r.work, p, serverFlops, r.rounds.length, schedule, batchOrder)?.map((t) => Number(t.toPrecision(4))) ?? null;
  const byProfile = (method: string, r: Timed, schedule?: Schedule, batchOrder?: BatchOrder) =>
    Object.fromEntries(DEVICE_PROFILES.map((p) => [p.name, cumulative(method, r, p, schedule, batchOrder)]));
  return {
    serverGflops: Number((serverFlops / 1e9).toFixed(2)),
    serverSource: server?.source ?? "as measured in SplitFrozen's steps here",
    profiles: DEVICE_PROFILES,
    byMethod: Object.fromEntries(results.map((r) => [r.method, byProfile(r.method, r)])),
    splitfrozenStopAndWait: byProfile('splitfrozen', sf, 'stop-and-wait'),
    // The same work with its batches interleaved: only when the server starts training differs.
    splitfrozenInterleaved: byProfile('splitfrozen', sf, 'pipelined', 'interleaved'),
    // The same rounds with heavy-tailed device speeds (Pareto, shape STRAGGLER_ALPHA; the same draws for every method).
    stragglerAlpha: STRAGGLER_ALPHA,
    withStragglers: Object.fromEntries(
      results.map((r) => [r.method, byProfile(r.method, { ...r, work: withSlowdowns(r.work, paretoSlowdowns(r.work.devices.length, STRAGGLER_ALPHA, 0)) })]),
    ),
    // Where SplitFrozen's server-bound rounds stop paying: devices (alike) at which it takes as long as another method.
    breakEven: Object.fromEntries(
      DEVICE_PROFILES.map((p) => [
        p.name,
        Object.fromEntries(
          results
            .filter((r) => r.method === 'fedlora' || r.method === 'splitlora')
            .map((r) => [r.method, breakEvenDevices(sf.work, r, p, serverFlops, sf.rounds.length) ?? null]),
        ),
      ]),
    ),
  };
}

export function timeTable(t: NonNullable<ReturnType<typeof modelledTime>>): string {
  const cell = (v: number[] | null) => (v ? `${v.at(-1)!.toPrecision(3)} s` : 'does not fit');
  return [
    `Modelled training time over all rounds (experiments/device-time.ts; server ${t.serverGflops} GFLOP/s, ${t.serverSource}; pipelined unless said):`,
    '',
    `| method | ${DEVICE_PROFILES.map((p) => `${p.name} (${p.forwardGflops}/${p.backwardGflops} GFLOP/s, ${p.uplinkMbps}/${p.downlinkMbps} Mbit/s, ${p.memoryMB} MB)`).join(' | ')} |`,
    `|---|${DEVICE_PROFILES.map(() => '---|').join('')}`,
    ...Object.entries(t.byMethod).map(([m, v]) => `| ${m} | ${DEVICE_PROFILES.map((p) => cell(v[p.name]!)).join(' | ')} |`),
    `| splitfrozen, stop-and-wait | ${DEVICE_PROFILES.map((p) => cell(t.splitfrozenStopAndWait[p.name]!)).join(' | ')} |`,
    `| splitfrozen, interleaved | ${DEVICE_PROFILES.map((p) => cell(t.splitfrozenInterleaved[p.name]!)).join(' | ')} |`,
    ...Object.entries(t.withStragglers).map(
      ([m, v]) => `| ${m}, stragglers (Pareto ${t.stragglerAlpha} slowdowns) | ${DEVICE_PROFILES.map((p) => cell(v[p.name]!)).join(' | ')} |`,
    ),
    '',
    ...DEVICE_PROFILES.map((p) => `- ${p.name}: ${p.source}`),
    '',
    `Break-even (devices alike, each with this run's average data; SplitFrozen's time grows with the devices, its server training them one after another): ${DEVICE_PROFILES.map(
      (p) =>
        `${p.name}: ${
          Object.entries(t.breakEven[p.name] ?? {})
            .map(([m, n]) =>
              n === null ? `${m} not reached within 100,000 devices (or a method does not fit)` : `as slow as ${m} from ${n} device${n === 1 ? '' : 's'}`,
            )
            .join(', ') || '-'
        }`,
    ).join('; ')}.`,
    '',
  ].join('\n');
}
