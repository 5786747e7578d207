/**
 * The round's last phase: evaluate, write the PEFT adapter, the round's metrics line and its done marker. Each write
 * is idempotent, so a server killed here redoes them on resume without duplicates.
 */
import type { GenerationExample } from '../../core/data/generation.ts';
import type { Example } from '../../core/data/shard.ts';
import { putJson } from '../../core/storage/json.ts';
import { keys } from '../../core/storage/keys.ts';
import { adapterFiles, type AdapterWeights } from '../../core/peft/adapter.ts';
import { evaluateClassification, evaluateGeneration } from '../runs/evaluate.ts';
import { writeRoundMetrics } from '../runs/metrics.ts';
import type { RoundPlan } from '../runs/plan.ts';
import type { RoundMetrics, RoundProgress } from '../runs/types.ts';
import type { ResolvedRoundOptions } from './context.ts';
import type { Loaded, RunState } from '../runs/state.ts';
import type { Training } from './train.ts';

/**
 * The adapters, in the PEFT layout, under the round's key (a cancelled round writes these only): the trainer's as
 * they are now, or `weights` (a cancelled round's, without batches not yet measured).
 */
export async function writeAdapter(
  s: RunState,
  opts: ResolvedRoundOptions,
  { model, trainer }: Loaded,
  round: number,
  weights: AdapterWeights = trainer.exportAdapter(),
): Promise<void> {
  const files = adapterFiles(weights, model.config, s.record.modelName);
  for (const [file, bytes] of Object.entries(files)) await opts.store.put(keys.adapter(s.record.id, round, file), bytes);
}

export async function writeOutputs(
  s: RunState,
  opts: ResolvedRoundOptions,
  loaded: Loaded,
  plan: RoundPlan,
  progress: RoundProgress,
  training: Training,
  startedAt: number,
): Promise<RoundMetrics> {
  const { record } = s;
  progress.phase = 'evaluating';
  const evaluation = await evaluate(s, loaded);
  await writeAdapter(s, opts, loaded, plan.round);
  const { losses } = training;
  const metrics: RoundMetrics = {
    round: plan.round,
    order: plan.order,
    steps: losses.length,
    trainLoss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN,
    evalLoss: evaluation?.loss,
    evalAccuracy: evaluation?.accuracy,
    evalExactMatch: evaluation?.exactMatch,
    evalRows: loaded.evalRows.length,
    samples: evaluation?.samples,
    devices: Object.entries(progress.devices).map(([id, p]) => ({
      id,
      cut: p.cut,
      state: p.state,
      batches: p.trained,
      refused: p.refused,
      reused: p.reused,
      forwardMs: p.forwardMs,
      bytes: p.bytes,
      defence: p.defence,
      error: p.error,
    })),
    serverTrainMs: Math.round(training.trainMs),
    serverIdleMs: Math.round(training.wallMs - training.trainMs),
    bytesMoved: Object.values(progress.devices).reduce((a, p) => a + p.bytes, 0),
    wallMs: Math.round(performance.now() - startedAt),
    rejected: progress.rejected.length,
  };
  await writeRoundMetrics(opts.store, record.id, metrics);
  s.lastMetrics = metrics;
  await putJson(opts.store, keys.roundDone(record.id, plan.round), metrics);
  return metrics;
}

function evaluate(s: RunState, { trainer, tokenizer, evalRows, evalContexts }: Loaded) {
  if (evalRows.length === 0) return undefined;
  const { spec } = s.record;
  const { batchSize, seqLen } = spec.training;
  if (spec.task.kind === 'generation')
    return evaluateGeneration(trainer, tokenizer, evalRows as GenerationExample[], evalContexts, { batchSize, seqLen, ...spec.task.generate });
  return evaluateClassification(trainer, tokenizer, evalRows as Example[], batchSize, seqLen);
}
