/** A run in one line, for the runs list: where it stands and how its last round scored. */
import type { RunState } from './state.ts';
import type { RoundMetrics } from './types.ts';

export const RUN_STATUSES = ['running', 'failed', 'cancelled', 'done', 'ready'] as const;

export interface RunSummary {
  id: string;
  createdAt: string;
  devices: number;
  rounds: number;
  roundsDone: number;
  status: (typeof RUN_STATUSES)[number];
  accuracy: number | null;
}

export function runSummary(s: RunState, last: RoundMetrics | undefined): RunSummary {
  const { record } = s;
  const rounds = record.spec.training.rounds;
  const roundsDone = last ? last.round + 1 : 0;
  const status = s.running ? 'running' : s.progress?.phase === 'failed' ? 'failed' : record.cancelled ? 'cancelled' : roundsDone >= rounds ? 'done' : 'ready';
  return { id: record.id, createdAt: record.createdAt, devices: record.spec.devices.length, rounds, roundsDone, status, accuracy: last?.evalAccuracy ?? null };
}
