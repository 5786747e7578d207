/**
 * The methods in which every device trains its own copy of the adapters from the same global ones and the server
 * averages the copies, weighted by the devices' rows (FedAvg):
 * - fedlora: a pass over the device's data a round, LoRA on the whole model;
 * - fedsgd: FedSGD as McMahan et al. define it (one pass, the whole local data as one batch): each device computes
 *   the gradient of its round's batches at the global adapters and the server takes one step on their mean by rows,
 *   with its own AdamW kept across rounds; the same sample gradients as fedlora's, one step where fedlora takes a
 *   step a batch;
 * - fedprox: fedlora with FedProx's proximal term mu/2 |w - w_global|^2, its gradient mu (w - w_global) added to each
 *   local step's;
 * - scaffold: fedlora with SCAFFOLD's control variates (option II): each local step's gradient corrected by c - c_i;
 *   after its K steps c_i becomes the mean of the gradients they took, and c moves by the devices' mean change of
 *   c_i. Under SGD that mean is exactly option II's c_i - c + (w_global - w_i) / (K lr); under AdamW the displacement
 *   is in Adam's units, not the gradient's (an early version used it, and its correction swamped the gradients), so
 *   the mean is taken from the gradients themselves;
 * - splitfrozen-parallel: SplitFrozen's ablation: per-device server adapters from the cut, averaged.
 * Optimizer state: each device starts its local training with a fresh AdamW (a device keeps no state between rounds,
 * and a copy must not inherit another device's moments; FedSGD's devices take no step); FedProx's and SCAFFOLD's
 * corrections are applied to the gradient AdamW takes (their analyses assume plain SGD; with AdamW they are the usual
 * practical variant).
 */
import * as tf from '@tensorflow/tfjs';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import type { Gradients } from '../../gpu-server/backends/backend.ts';
import type { GradientAdjustment, Trainer } from '../../gpu-server/train/trainer.ts';
import type { TokenBatch } from './setup.ts';
import { averageAdapters } from './sim.ts';

export const FEDERATED = ['fedlora', 'fedsgd', 'fedprox', 'scaffold', 'splitfrozen-parallel'] as const;
export type FederatedMethod = (typeof FEDERATED)[number];

type Named = Map<string, tf.Tensor>;

/** What a federated round needs of the simulation: the devices in order, their round's batches, and a step. */
export interface FederatedRound {
  order: readonly string[];
  /** Every device that takes part in the run (more than `order` where a round samples some of them). */
  population: number;
  rows: (id: string) => number;
  batches: (id: string) => TokenBatch[];
  step: (b: TokenBatch, adjust?: GradientAdjustment) => Promise<number>;
  /** A batch's mean loss and gradients at the trainer's adapters, no step taken (FedSGD's devices). */
  gradients: (b: TokenBatch) => Promise<Gradients>;
  /** GraB: what each device's local training did to the adapters. */
  updated?: (id: string, delta: Float32Array) => void;
}

/** SCAFFOLD's control variates across rounds: the server's c and each device's c_i (zero at first). */
export class ControlVariates {
  private server: Named | undefined;
  private readonly devices = new Map<string, Named>();

  private zeros(t: Trainer): Named {
    return new Map(t.variables().map((v) => [v.name, tf.zerosLike(v)]));
  }

  of(t: Trainer, id: string): { c: Named; ci: Named } {
    this.server ??= this.zeros(t);
    if (!this.devices.has(id)) this.devices.set(id, this.zeros(t));
    return { c: this.server, ci: this.devices.get(id)! };
  }

  /** c_i+ = the mean of the gradients the device's steps took (taken over); returns c_i+ - c_i for the server's update. */
  update(t: Trainer, id: string, meanGradient: Named): Named {
    const { ci } = this.of(t, id);
    const delta = new Map([...meanGradient].map(([k, x]) => [k, x.sub(ci.get(k)!)]));
    tf.dispose([...ci.values()]);
    this.devices.set(id, meanGradient);
    return delta;
  }

  /** c += the sampled devices' changes summed over the `population` N (SCAFFOLD's |S|/N times their mean). */
  moveServer(deltas: Named[], population: number): void {
    if (!this.server || deltas.length === 0) return;
    const moved = new Map([...this.server].map(([k, x]) => [k, tf.tidy(() => x.add(tf.addN(deltas.map((d) => d.get(k)!)).div(population)))]));
    tf.dispose([...this.server.values(), ...deltas.flatMap((d) => [...d.values()])]);
    this.server = moved;
  }

  dispose(): void {
    tf.dispose([...(this.server?.values() ?? []), ...[...this.devices.values()].flatMap((m) => [...m.values()])]);
  }
}

/** One round of a federated method on trainer `t`; returns the devices' training losses. */
export async function federatedRound(method: FederatedMethod, t: Trainer, r: FederatedRound, o: { mu: number; controls: ControlVariates }): Promise<number[]> {
  if (method === 'fedsgd') return fedSgdRound(t, r);
  const start = t.exportAdapter();
  const local: AdapterWeights[] = [];
  const losses: number[] = [];
  const deltas: Named[] = [];
  for (const id of r.order) {
    t.loadAdapter(start);
    t.resetOptimizer();
    const global: Named = new Map(t.variables().map((v) => [v.name, v.clone()]));
    const batches = r.batches(id);
    let adjust: GradientAdjustment | undefined;
    if (method === 'fedprox')
      adjust = (params, grads) => Object.fromEntries(params.map((p) => [p.name, grads[p.name]!.add(p.sub(global.get(p.name)!).mul(o.mu))]));
    // SCAFFOLD: the sum of the (uncorrected) gradients the steps take, for the device's new c_i.
    const taken: Named = new Map();
    if (method === 'scaffold') {
      const { c, ci } = o.controls.of(t, id);
      adjust = (params, grads) => {
        for (const p of params) {
          const sum = taken.get(p.name);
          taken.set(p.name, tf.keep(sum ? sum.add(grads[p.name]!) : grads[p.name]!.clone()));
          sum?.dispose();
        }
        return Object.fromEntries(params.map((p) => [p.name, grads[p.name]!.add(c.get(p.name)!.sub(ci.get(p.name)!))]));
      };
    }
    const before = r.updated ? t.flatAdapters() : undefined;
    for (const b of batches) losses.push(await r.step(b, adjust));
    if (before)
      r.updated!(
        id,
        t.flatAdapters().map((x, i) => x - before[i]!),
      );
    if (method === 'scaffold' && taken.size) {
      deltas.push(o.controls.update(t, id, new Map([...taken].map(([k, x]) => [k, x.div(batches.length)]))));
      tf.dispose([...taken.values()]);
    }
    tf.dispose([...global.values()]);
    local.push(t.exportAdapter());
  }
  // c moves by |S|/N times the sampled devices' mean change: their sum over the whole population.
  if (method === 'scaffold') o.controls.moveServer(deltas, r.population);
  t.loadAdapter(averageAdapters(local, r.order.map(r.rows)));
  return losses;
}

/** FedSGD's round: every delivering row's gradient at the global adapters, averaged, then one step at the server. */
async function fedSgdRound(t: Trainer, r: FederatedRound): Promise<number[]> {
  const batches = r.order.flatMap((id) => r.batches(id));
  const rows = batches.reduce((a, b) => a + b.rows, 0);
  const losses: number[] = [];
  let sum: Record<string, tf.Tensor> = {};
  let loss = 0;
  for (const b of batches) {
    const g = await r.gradients(b);
    const share = b.rows / rows;
    const value = (await g.loss.data())[0]!;
    losses.push(value);
    loss += value * share;
    const next = tf.tidy(() => Object.fromEntries(Object.entries(g.grads).map(([k, x]) => [k, sum[k] ? sum[k].add(x.mul(share)) : x.mul(share)])));
    tf.dispose([g.loss, ...Object.values(g.grads), ...Object.values(sum)]);
    sum = next;
  }
  await t.applyGradients({ loss: tf.scalar(loss), grads: sum });
  return losses;
}
