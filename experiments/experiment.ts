/**
 * One experiment: a task, a partition into device shards, a base model, and the methods compared on them under the
 * same budget (one pass over every device's data per round). Writes results.json, results.md and accuracy.svg.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { histogramTable, type PartitionSpec } from '../core/data/partition.ts';
import type { GPT2Model } from '../core/model/weights.ts';
import { writeFileAtomic } from '../gpu-server/model/folder.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import { accuracyPlot, resultsTable } from './report.ts';
import type { MethodName } from './sim/accounting.ts';
import { runMethod, type MethodResult, type SimSpec } from './sim/methods.ts';
import { setUpSimulation } from './sim/setup.ts';
import type { TaskData } from './tasks.ts';

export interface ExperimentOptions {
  task: TaskData;
  model: GPT2Model;
  modelName: string;
  partition: PartitionSpec;
  methods: MethodName[];
  devices: number;
  rounds: number;
  trainRows: number;
  evalRows: number;
  batchSize: number;
  seqLen: number;
  cut: number;
  lr: number;
  rank: number;
  ordering: OrderingSpec;
  avgEvery: number;
  seed: number;
  out: string;
  command: string;
  log?: (m: string) => void;
}

export async function runExperiment(o: ExperimentOptions): Promise<{ results: MethodResult[]; summary: Record<string, unknown> }> {
  const log = o.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  // A new classification head for the task: a base model's own head (if any) was made for other labels.
  const params = new Map(o.model.params);
  params.delete('score.weight');
  const model = { config: { ...o.model.config, numLabels: o.task.labels.length }, params };
  const data = setUpSimulation(o.task, { devices: o.devices, partition: o.partition, trainRows: o.trainRows, evalRows: o.evalRows, batchSize: o.batchSize, seqLen: o.seqLen, padTokenId: model.config.padTokenId, seed: o.seed });
  const title = `${o.task.name} / ${data.partition} / ${o.devices} devices`;
  log(`== ${title}`);
  for (const note of o.task.notes) log(`   note: ${note}`);
  const histogram = histogramTable(data.devices.map((d) => d.histogram), o.task.labels);
  log(histogram);
  const spec: SimSpec = { cut: o.cut, rounds: o.rounds, lora: { rank: o.rank, alpha: 2 * o.rank, dropout: 0.05, targets: ['attn.c_attn'] }, lr: o.lr, seed: o.seed, ordering: o.ordering, avgEvery: o.avgEvery, wireBytes: 2 };
  const results: MethodResult[] = [];
  for (const method of o.methods) {
    const r = await runMethod(method, model, data, spec, (round) => log(`   ${method} round ${round.round + 1}/${o.rounds}: accuracy ${(round.accuracy * 100).toFixed(1)}%, train loss ${round.trainLoss.toFixed(4)} (${(round.wallMs / 1000).toFixed(1)} s)`));
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
    majorityClass: majorityShare(o.task.eval.slice(0, data.evalRows).map((e) => e.label)),
    model: { name: o.modelName, nLayer: model.config.nLayer, nEmbd: model.config.nEmbd, nHead: model.config.nHead },
    spec,
    methods: results.map(({ final: _final, ...r }) => r),
  };
  await mkdir(o.out, { recursive: true });
  await writeFileAtomic(join(o.out, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  const md = [`# ${title}`, '', `Command: \`${o.command}\``, '', ...o.task.notes.map((n) => `Note: ${n}`), '', `Base model: ${o.modelName} (${model.config.nLayer} blocks, n_embd ${model.config.nEmbd}); cut ${o.cut}; LoRA r=${o.rank} on c_attn; ${o.rounds} rounds; ${summary.trainRows} training rows, ${data.evalRows} evaluation rows.`, '', 'Label histogram (rows per device and class):', '', histogram, '', resultsTable(results), '![accuracy](accuracy.svg)', ''].join('\n');
  await writeFileAtomic(join(o.out, 'results.md'), md);
  await writeFileAtomic(join(o.out, 'accuracy.svg'), accuracyPlot(title, results));
  return { results, summary };
}

/** The share of the most frequent label: what always answering that label scores. */
export function majorityShare(labels: number[]): number {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  return Math.max(...counts.values()) / labels.length;
}
