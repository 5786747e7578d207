/**
 * Each method's learning rate chosen by a sweep on a validation split carved from the training rows, so the test
 * split is touched once, at the end, by the runs that report. One seed; every run kept or made again by its
 * provenance, as every experiment is.
 */
import { join } from 'node:path';
import { Random } from '../core/random.ts';
import type { ExperimentOptions } from './experiment-options.ts';
import type { MethodName } from './sim/accounting.ts';
import { runSeeds } from './study.ts';
import type { TaskData } from './tasks.ts';

/** The task with its evaluation rows drawn from its training rows (a seeded share), which it then trains without. */
export function validationTask(task: TaskData, share = 0.2, seed = 20_261_207): TaskData {
  const order = new Random(seed).shuffled(task.train.length);
  const held = new Set(order.slice(0, Math.round(task.train.length * share)));
  return {
    ...task,
    train: task.train.filter((_, i) => !held.has(i)),
    eval: task.train.filter((_, i) => held.has(i)),
    notes: [...task.notes, `validation: ${held.size} of the ${task.train.length} training rows, held out (the test split unseen)`],
  };
}

export interface Sweep {
  /** The rate each method trains at: the best final validation accuracy (the smaller rate on a tie). */
  chosen: Partial<Record<MethodName, number>>;
  /** Final validation accuracy by method and rate. */
  accuracy: Record<string, Record<string, number>>;
}

/** Runs each of `base`'s methods at each rate on the validation split (its first seed) and picks each one's best. */
export async function sweepLearningRates(base: ExperimentOptions, rates: readonly number[], fresh = false): Promise<Sweep> {
  const task = validationTask(base.task as TaskData);
  const evalRows = Math.min(base.evalRows, task.eval.length);
  const sweep: Sweep = { chosen: {}, accuracy: {} };
  for (const method of base.methods) {
    const scores: Array<[number, number]> = [];
    for (const lr of [...rates].sort((a, b) => a - b)) {
      const study = await runSeeds(
        { ...base, task, evalRows, methods: [method], lr, lrByMethod: undefined, out: join(base.out, 'validation', method, `lr-${lr}`) },
        [base.seed],
        { fresh },
      );
      scores.push([lr, study.accuracy[method]!.mean]);
    }
    sweep.accuracy[method] = Object.fromEntries(scores.map(([lr, a]) => [String(lr), a]));
    sweep.chosen[method] = scores.reduce((best, s) => (s[1] > best[1] ? s : best))[0];
  }
  return sweep;
}
