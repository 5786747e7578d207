import { describe, expect, it } from 'vitest';
import { parseRunSpec } from './spec.ts';
import type { RunState } from './state.ts';
import { runSummary } from './summary.ts';
import type { RoundMetrics, RoundProgress } from './types.ts';

const spec = parseRunSpec({ model: 'm', task: { labels: ['0', '1'] }, devices: [{ id: 'd1', url: 'http://d1' }], training: { rounds: 2 } });
const state = (extra: Partial<RunState> = {}): RunState => ({
  record: { id: 'r', spec, createdAt: 't', cuts: {}, deepestCut: 2, modelName: 'm' },
  updates: new Map(),
  segments: new Map(),
  calibrations: new Map(),
  ...extra,
});
const metrics = (round: number, evalAccuracy?: number) => ({ round, evalAccuracy }) as RoundMetrics;

describe('a run in the runs list', () => {
  it('says where the run stands and how its last round scored', () => {
    expect(runSummary(state(), undefined)).toEqual({ id: 'r', createdAt: 't', devices: 1, rounds: 2, roundsDone: 0, status: 'ready', accuracy: null });
    expect(runSummary(state({ running: new Promise(() => {}) }), metrics(0, 0.5))).toMatchObject({ status: 'running', roundsDone: 1, accuracy: 0.5 });
    expect(runSummary(state({ progress: { phase: 'failed' } as RoundProgress }), metrics(0, 0.5)).status).toBe('failed');
    const cancelled = state();
    cancelled.record.cancelled = { round: 1, at: 't' };
    expect(runSummary(cancelled, metrics(0)).status).toBe('cancelled');
    expect(runSummary(state(), metrics(1, 0.75))).toMatchObject({ status: 'done', roundsDone: 2, accuracy: 0.75 });
  });
});
