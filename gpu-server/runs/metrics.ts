/** The run's metrics.jsonl: one line per finished round. */
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import type { RoundMetrics } from './types.ts';

export async function readMetrics(store: ObjectStore, runId: string): Promise<RoundMetrics[]> {
  const bytes = await store.get(keys.metrics(runId));
  if (!bytes) return [];
  // A line cut short by a crash mid-write is dropped; its round rewrites it when it resumes.
  return new TextDecoder()
    .decode(bytes)
    .split('\n')
    .flatMap((l) => {
      try {
        return l ? [JSON.parse(l) as RoundMetrics] : [];
      } catch {
        return [];
      }
    });
}

/** Writes the round's line, replacing one a resumed round wrote before (so a line is never there twice). */
export async function writeRoundMetrics(store: ObjectStore, runId: string, metrics: RoundMetrics): Promise<void> {
  const lines = (await readMetrics(store, runId)).filter((m) => m.round !== metrics.round);
  await store.put(keys.metrics(runId), [...lines, metrics].map((m) => JSON.stringify(m) + '\n').join(''), 'application/x-ndjson');
}
