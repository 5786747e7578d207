/**
 * Each device's uploads as storage shows them, while the round trains: the server trains device after device, and
 * without this a device computing its batches in parallel showed nothing until its turn came ("0 of 188"). The count
 * is the server's own observation (objects listed under the device's prefix), not the device's claim, and counts
 * only the keys of the batches planned: a device that uploads more objects moves no number past its plan.
 */
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import type { RoundPlan } from '../runs/plan.ts';
import type { RoundProgress } from '../runs/types.ts';

/** How often storage is listed: a display, so a few seconds behind is fine. */
export const UPLOADS_WATCH_MS = 2_000;

/** Counts each device's uploaded batches into progress.devices[id].uploaded until stop() (which counts once more). */
export function watchUploads(
  store: ObjectStore,
  runId: string,
  plan: RoundPlan,
  progress: RoundProgress,
  everyMs = UPLOADS_WATCH_MS,
): { stop(): Promise<void> } {
  const after = new Map<string, string>();
  // The keys a device's planned batches go to (keys.activationBatch): objects under any other name count for none.
  const batchKeys = new Map(
    plan.order.map((id) => [id, new Set(Array.from({ length: plan.devices[id]!.batches }, (_, b) => keys.activationBatch(runId, id, plan.round, b)))]),
  );
  const seen = new Map<string, number>();
  // A device whose activations come from an earlier round's cache has them all already.
  for (const id of plan.order) if (plan.devices[id]!.sourceRound !== plan.round) progress.devices[id]!.uploaded = plan.devices[id]!.batches;
  const computing = () => plan.order.filter((id) => plan.devices[id]!.sourceRound === plan.round && (seen.get(id) ?? 0) < plan.devices[id]!.batches);
  const look = async () => {
    for (const id of computing()) {
      const dp = progress.devices[id]!;
      if (dp.state === 'failed' || dp.state === 'skipped') continue;
      const prefix = keys.activations(runId, id, plan.round);
      let n = seen.get(id) ?? 0;
      for await (const o of store.list(prefix, after.get(id))) {
        after.set(id, o.key);
        if (batchKeys.get(id)!.has(o.key)) n++;
      }
      seen.set(id, n);
      dp.uploaded = Math.max(dp.uploaded ?? 0, n);
    }
  };
  let running = true;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake = () => {};
  const loop = (async () => {
    while (running && computing().length) {
      // A failed listing leaves the count where it was: the round's own reads retry and report storage faults.
      await look().catch(() => {});
      if (running) await new Promise<void>((resolve) => ((wake = resolve), (timer = setTimeout(resolve, everyMs))));
    }
  })();
  return {
    async stop() {
      running = false;
      clearTimeout(timer);
      wake();
      await loop;
      // The last uploads may have come after the last listing: one more, so the round ends with the true count.
      await look().catch(() => {});
    },
  };
}
