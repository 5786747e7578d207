/**
 * The trainer's state (adapters, head, AdamW moments and step) copied on the backend, to put back later: how the
 * server undoes a device's batches. Nothing is read back to JavaScript.
 */
import * as tf from '@tensorflow/tfjs';
import type { Trainer } from './trainer.ts';

export interface TrainerSnapshot {
  restore(): void;
  dispose(): void;
}

export function snapshotTrainer(trainer: Trainer): TrainerSnapshot {
  const vars = trainer.variables();
  const copy = (m: Map<string, tf.Variable>) => new Map([...m].map(([k, v]) => [k, tf.clone(v)]));
  const params = vars.map((v) => tf.clone(v));
  const m = copy(trainer.opt.m);
  const v = copy(trainer.opt.v);
  const step = trainer.opt.step;
  const all = () => [...params, ...m.values(), ...v.values()];
  return {
    restore() {
      vars.forEach((x, i) => x.assign(params[i]));
      // Moments made after the snapshot (a first step) go back to not existing, as before it.
      for (const [saved, live] of [
        [m, trainer.opt.m],
        [v, trainer.opt.v],
      ] as const) {
        for (const [k, x] of live) {
          const s = saved.get(k);
          if (s) x.assign(s);
          else {
            x.dispose();
            live.delete(k);
          }
        }
        // And moments dropped since (a state restored from before them) come back.
        for (const [k, s] of saved) if (!live.has(k)) live.set(k, tf.variable(s, false));
      }
      trainer.opt.step = step;
    },
    dispose: () => tf.dispose(all()),
  };
}
