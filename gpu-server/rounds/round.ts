/**
 * One round, phase after phase: load the run (once), plan or resume, start the devices (all at once when pipelined:
 * they compute while the server trains on the ones before them), train device after device, write the outputs.
 * Everything a round needs is in storage, so a restarted server resumes an unfinished round where its checkpoint says.
 */
import type { RoundProgress } from '../runs/types.ts';
import type { ResolvedRoundOptions } from './context.ts';
import { loadRun, type RunState } from '../runs/state.ts';
import { writeAdapter, writeOutputs } from './outputs.ts';
import { planOrResume, progressFor } from './planning.ts';
import { startDevice } from './start.ts';
import { trainDevices } from './train.ts';
import { watchUploads } from './uploads.ts';

export async function runRound(s: RunState, opts: ResolvedRoundOptions, round: number): Promise<void> {
  const { record } = s;
  const log = opts.log ?? (() => {});
  const startedAt = performance.now();
  const progress: RoundProgress = { round, phase: 'planning', order: [], batchesTotal: 0, batchesTrained: 0, losses: [], devices: {}, rejected: [] };
  s.progress = progress;
  const loaded = await loadRun(s, opts);
  const plan = await planOrResume(s, opts, loaded, round);
  if (!plan) {
    progress.phase = 'cancelled';
    log(`run ${record.id} round ${round}: cancelled while planning; triggering the run again plans the round`);
    return;
  }
  progressFor(s, plan, progress);
  log(`run ${record.id} round ${round}: order ${plan.order.join(' > ')}${Object.keys(plan.skipped).length ? `; skipped ${JSON.stringify(plan.skipped)}` : ''}`);

  /** When each device was asked to start: its uploads are due limits.uploadSeconds after. */
  const askedAt = new Map<string, number>();
  const start = (id: string) => (askedAt.set(id, Date.now()), startDevice(s, opts, loaded, plan, progress, id));
  if (opts.schedule === 'pipelined') await Promise.all(plan.order.map(start));
  const uploads = watchUploads(opts.store, record.id, plan, progress);
  const training = await trainDevices(s, opts, loaded, plan, progress, start, askedAt, startedAt).finally(() => uploads.stop());
  if (training.cancelled) {
    await writeAdapter(s, opts, loaded, round, training.adapter);
    progress.phase = 'cancelled';
    log(
      `run ${record.id} round ${round}: cancelled after ${training.losses.length} batches; the adapter of what trained (and was measured) is under round ${round}, and triggering the run again resumes the round`,
    );
    return;
  }
  const metrics = await writeOutputs(s, opts, loaded, plan, progress, training, startedAt);
  progress.phase = 'done';
  log(
    `run ${record.id} round ${round}: trained ${metrics.steps} batches, loss ${metrics.trainLoss.toFixed(4)}${metrics.evalAccuracy !== undefined ? `, eval accuracy ${(metrics.evalAccuracy * 100).toFixed(1)}%` : ''}`,
  );
}
