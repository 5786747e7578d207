/**
 * Each method's learning rate chosen by a sweep on a validation split carved from the training rows, so the test
 * split is touched once, at the end, by the runs that report. One seed; every run kept or made again by its
 * provenance, as every experiment is.
 */
import { join } from 'node:path';
import { Random } from '../core/random.ts';
import { DEFAULT_PROX_MU, type ExperimentOptions } from './experiment-options.ts';
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
  /** FedProx's mu, swept at its chosen rate: the best final validation accuracy (the smaller mu on a tie). */
  proxMu?: { chosen: number; accuracy: Record<string, number> };
}

/** FedProx's mu values swept: those its authors report for their benchmarks. */
export const PROX_MUS = [0.001, 0.01, 0.1];

/**
 * Runs each of `base`'s methods at each rate on the validation split (its first seed) and picks each one's best;
 * FedProx's mu is then swept at FedProx's chosen rate (a grid of both would triple its runs).
 */
export async function sweepLearningRates(base: ExperimentOptions, rates: readonly number[], fresh = false, mus = PROX_MUS): Promise<Sweep> {
  const task = validationTask(base.task as TaskData);
  const evalRows = Math.min(base.evalRows, task.eval.length);
  const validate = async (method: MethodName, lr: number, proxMu: number | undefined, name: string) =>
    (
      await runSeeds(
        { ...base, task, evalRows, methods: [method], lr, proxMu, lrByMethod: undefined, out: join(base.out, 'validation', method, name) },
        [base.seed],
        { fresh },
      )
    ).accuracy[method]!.mean;
  const best = (scores: Array<[number, number]>) => scores.reduce((b, s) => (s[1] > b[1] ? s : b))[0];
  const sweep: Sweep = { chosen: {}, accuracy: {} };
  for (const method of base.methods) {
    const scores: Array<[number, number]> = [];
    for (const lr of [...rates].sort((a, b) => a - b)) scores.push([lr, await validate(method, lr, base.proxMu, `lr-${lr}`)]);
    sweep.accuracy[method] = Object.fromEntries(scores.map(([lr, a]) => [String(lr), a]));
    sweep.chosen[method] = best(scores);
    if (method === 'fedprox' && mus.length) {
      const lr = sweep.chosen.fedprox!;
      const byMu: Array<[number, number]> = [];
      for (const mu of [...mus].sort((a, b) => a - b))
        // The rate sweep's run at this rate already had the mu it ran with.
        byMu.push([mu, mu === (base.proxMu ?? DEFAULT_PROX_MU) ? scores.find((s) => s[0] === lr)![1] : await validate(method, lr, mu, `lr-${lr}-mu-${mu}`)]);
      sweep.proxMu = { chosen: best(byMu), accuracy: Object.fromEntries(byMu.map(([mu, a]) => [String(mu), a])) };
    }
  }
  return sweep;
}
