/**
 * One experiment: a task, a partition into device shards, a base model, and the methods compared on them under the
 * same budget (one pass over every device's data per round). Writes results.json, results.md and accuracy.svg.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { histogramTable, type PartitionSpec } from '../core/data/partition.ts';
import type { Model } from '../core/model/family.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import { writeFileAtomic } from '../gpu-server/model/folder.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import { provenance } from './provenance.ts';
import { accuracyPlot, resultsTable } from './report.ts';
import type { MethodName } from './sim/accounting.ts';
import { runMethod, type MethodResult, type SimSpec } from './sim/methods.ts';
import { setUpGenerationSimulation, setUpSimulation } from './sim/setup.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';

export interface ExperimentOptions {
  /** A classification task, or GSM8K (generation: causal-LM on a Llama, evaluated by generating; needs `tokenizer`). */
  task: TaskData | GenerationTaskData;
  model: Model;
  tokenizer?: Tokenizer;
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
  const generation = !('labels' in o.task);
  // A new classification head for the task: a base model's own head (if any) was made for other labels.
  const params = new Map(o.model.params);
  params.delete('score.weight');
  const model = (generation ? { ...o.model, params } : { config: { ...o.model.config, numLabels: (o.task as TaskData).labels.length }, params }) as Model;
  if (generation && (model.config.modelType !== 'llama' || !o.tokenizer)) throw new Error('a generation task runs on a Llama model with its tokenizer');
  const setup = { devices: o.devices, partition: o.partition, trainRows: o.trainRows, evalRows: o.evalRows, batchSize: o.batchSize, seqLen: o.seqLen, padTokenId: model.config.padTokenId, seed: o.seed };
  const data = generation ? setUpGenerationSimulation(o.task as GenerationTaskData, o.tokenizer!, { ...setup, generate: GENERATED_PROMPTS }) : setUpSimulation(o.task as TaskData, setup);
  const title = `${o.task.name} / ${data.partition} / ${o.devices} devices`;
  log(`== ${title}`);
  for (const note of o.task.notes) log(`   note: ${note}`);
  const histogram = histogramTable(data.devices.map((d) => d.histogram), generation ? ['rows'] : (o.task as TaskData).labels);
  log(histogram);
  const targets = model.config.modelType === 'llama' ? ['self_attn.q_proj', 'self_attn.v_proj'] : ['attn.c_attn'];
  const spec: SimSpec = { cut: o.cut, rounds: o.rounds, lora: { rank: o.rank, alpha: 2 * o.rank, dropout: 0.05, targets }, lr: o.lr, seed: o.seed, ordering: o.ordering, avgEvery: o.avgEvery, wireBytes: 2 };
  const results: MethodResult[] = [];
  for (const method of o.methods) {
    const r = await runMethod(method, model, data, spec, (round) => log(`   ${method} round ${round.round + 1}/${o.rounds}: ${generation ? 'exact match' : 'accuracy'} ${(round.accuracy * 100).toFixed(1)}%, train loss ${round.trainLoss.toFixed(4)} (${(round.wallMs / 1000).toFixed(1)} s)`), o.tokenizer);
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
    accuracyIs: generation ? `exact match of the final number over the first ${data.prompts!.length} held-out problems, greedy, ${GENERATED_TOKENS_NOTE}` : 'classification accuracy',
    model: { name: o.modelName, nLayer: model.config.nLayer, nEmbd: model.config.nEmbd, nHead: model.config.nHead },
    spec,
    methods: results.map(({ final: _final, ...r }) => r),
    // compare keeps these results only while everything that made them is the same.
    ...(await provenance(o)),
  };
  await mkdir(o.out, { recursive: true });
  await writeFileAtomic(join(o.out, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  const md = [`# ${title}`, '', `Command: \`${o.command}\``, '', ...o.task.notes.map((n) => `Note: ${n}`), '', `Base model: ${o.modelName} (${model.config.modelType}, ${model.config.nLayer} blocks, width ${model.config.nEmbd}); cut ${o.cut}; LoRA r=${o.rank} on ${targets.join(', ')}; ${o.rounds} rounds; ${summary.trainRows} training rows, ${data.evalRows} evaluation rows.`, '', generation ? 'Rows per device:' : 'Label histogram (rows per device and class):', '', histogram, '', ...(generation ? [`"Accuracy" here: ${summary.accuracyIs}; loss: the held-out completions' next-token loss.`, ''] : []), resultsTable(results), '![accuracy](accuracy.svg)', ''].join('\n');
  await writeFileAtomic(join(o.out, 'results.md'), md);
  await writeFileAtomic(join(o.out, 'accuracy.svg'), accuracyPlot(title, results));
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
