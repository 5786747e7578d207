/** Learning rate per optimizer step: linear warmup, then constant, linear or cosine decay to zero at totalSteps. */
export interface ScheduleSpec {
  lr: number;
  warmupSteps: number;
  kind: 'constant' | 'linear' | 'cosine';
  /** Where linear and cosine reach zero; needed by them, ignored by constant. */
  totalSteps?: number;
}

export function learningRate(s: ScheduleSpec, step: number): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (s.kind === 'constant') return s.lr;
  const total = s.totalSteps ?? Infinity;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, total - s.warmupSteps));
  return s.kind === 'linear' ? s.lr * (1 - progress) : s.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
