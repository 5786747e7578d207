/**
 * Starting a device's part of a round: a signed request with its settings and presigned URLs. A device whose
 * activations are reused from an earlier round is not asked; one that cannot be reached is marked failed, and the
 * round goes on without it.
 */
import { buildRoundRequest } from './request.ts';
import type { RoundPlan } from '../runs/plan.ts';
import type { RoundProgress } from '../runs/types.ts';
import { abortable } from './feed.ts';
import { deviceApi, type ResolvedRoundOptions } from './context.ts';
import { type Loaded, type RunState } from '../runs/state.ts';

export async function startDevice(
  s: RunState,
  opts: ResolvedRoundOptions,
  { model }: Loaded,
  plan: RoundPlan,
  progress: RoundProgress,
  id: string,
): Promise<void> {
  const { record } = s;
  const { spec } = record;
  const d = plan.devices[id];
  // A cancelled round asks no device to start: it would read its owner's text for nothing.
  if (d.sourceRound !== plan.round || s.cancel?.signal.aborted) return;
  const request = await buildRoundRequest(opts.store, {
    runId: record.id,
    round: plan.round,
    deviceId: id,
    modelSha256: d.modelSha256,
    tokenTableSha256: d.tokenTableSha256,
    weightsSha256: d.weightsSha256,
    tokenizer: s.tokenizerRef ?? undefined,
    task: spec.task.kind,
    cut: d.cut,
    rows: d.rows,
    batchSize: spec.training.batchSize,
    seqLen: spec.training.seqLen,
    dtype: spec.training.dtype,
    labels: spec.task.labels,
    padTokenId: model.config.padTokenId,
    shards: d.shards,
    expiresInSeconds: opts.urlSeconds,
  });
  // A device slow to answer holds the round for limits.callSeconds at most, and a cancel not at all.
  await abortable(deviceApi(s, opts, id).startRound(request), s.cancel?.signal).catch((e: Error) =>
    Object.assign(progress.devices[id], { state: 'failed', error: e.message }),
  );
}
