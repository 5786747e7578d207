/**
 * The methods compared, in one process on the same model, LoRA, ordering and FLOP code as the real system:
 * - splitfrozen: devices run the frozen prefix once (its activations are reused every round); the server trains LoRA
 *   on the blocks from the cut, device after device in a client order (or their batches interleaved), on one set of
 *   adapters;
 * - splitfrozen-parallel: the ablation: per-device server adapters from the same start, averaged after each round;
 * - fedlora: each device trains LoRA on the whole model locally for one pass over its data; the server averages the
 *   adapters weighted by data size (FedAvg);
 * - splitlora: devices train LoRA on their prefix in parallel and the server on the rest, a batch of each device in
 *   turn, the gradient at the cut goes back to the device, and the device adapters are averaged every `avgEvery`
 *   steps and at the round's end (experiments/sim/splitlora.ts);
 * - fedsgd, fedprox, scaffold: FedLoRA as one step a round on the devices' mean gradient, with FedProx's proximal
 *   term, with SCAFFOLD's control variates (experiments/sim/federated.ts);
 * - centralized: the upper bound: every device's rows pooled and mixed at the server, trained from the cut.
 */
import type { Model } from '../../core/model/family.ts';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { orderPresent } from '../../gpu-server/ordering/ordering.ts';
import { inOrder, turns } from '../../gpu-server/ordering/turns.ts';
import type { GradientAdjustment, TrainBatch } from '../../gpu-server/train/trainer.ts';
import { ControlVariates, federatedRound } from './federated.ts';
import { splitLoraRound } from './splitlora.ts';
import { delivering } from './participation.ts';
import type { MethodWork } from '../device-time.ts';
import { adapterBytes, methodCosts, trainsFromEmbeddings, trainsWholeModel, type MethodName } from './accounting.ts';
import type { SimData, SimDevice } from './setup.ts';

export type { SimSpec } from './sim.ts';
export { averageAdapters, pooledBatches, roundBatches } from './sim.ts';
import { pooledBatches, Sim, type SimSpec } from './sim.ts';

export interface RoundResult {
  round: number;
  /** Classification accuracy, or (generation) the exact-match rate of the generated final numbers. */
  accuracy: number;
  loss: number;
  trainLoss: number;
  /** Devices whose data the round trained on (fewer than all where devices are sampled or drop out). */
  devices: number;
  wallMs: number;
}

export interface MethodResult {
  method: MethodName;
  rounds: RoundResult[];
  /** Per device and round, averaged over devices. */
  deviceForwardFlops: number;
  deviceBackwardFlops: number;
  serverFlops: number;
  bytesUpPerDevice: number;
  bytesDownPerDevice: number;
  devicePeakMemoryMB: number;
  /** What the method measured of the gradient at the cut: SplitLoRA's devices receive one, SplitFrozen's never. */
  cutGradientNorm: number;
  wallMs: number;
  /** Time in training steps, in this process (for SplitFrozen: the server's step time). */
  trainMs: number;
  /** What the device-time model (experiments/device-time.ts) needs of the run. */
  work: MethodWork;
  /** The adapters the method ends with (not in the JSON results). */
  final: AdapterWeights;
}

const tokensOf = (d: SimDevice) => d.batches.reduce((a, b) => a + b.rows * b.seqLen, 0);

export async function runMethod(
  method: MethodName,
  model: Model,
  data: SimData,
  spec: SimSpec,
  onRound?: (r: RoundResult) => void,
  tokenizer?: Tokenizer,
): Promise<MethodResult> {
  const started = performance.now();
  const devices = data.devices.filter((d) => d.rows > 0);
  // A fixed order names every device; devices a partition left without rows take no part.
  const ordering =
    spec.ordering.kind === 'fixed' ? { ...spec.ordering, order: spec.ordering.order.filter((id) => devices.some((d) => d.id === id)) } : spec.ordering;
  const { cut } = spec;
  const setup = {
    config: model.config,
    cut,
    seqLen: Math.max(...devices.flatMap((d) => d.batches.map((b) => b.seqLen))),
    batchSize: Math.max(...devices.flatMap((d) => d.batches.map((b) => b.rows))),
    lora: spec.lora,
    generation: data.prompts !== undefined,
  };
  const costs = methodCosts(method, setup);
  // What a device exchanges with the server: the whole model's adapters (with SCAFFOLD's control variate beside
  // them), or those of its blocks; and its activations, once.
  const exchangedBytes = trainsWholeModel(method) ? adapterBytes(setup, model.config.nLayer) * (method === 'scaffold' ? 2 : 1) : adapterBytes(setup, cut);
  const activationBytes = (d: SimDevice) => tokensOf(d) * model.config.nEmbd * spec.wireBytes;
  const sim = new Sim(model, data, spec, trainsFromEmbeddings(method) ? 0 : cut, tokenizer);
  const controls = new ControlVariates();
  const t = sim.trainer;
  const rounds: RoundResult[] = [];
  const delivered: number[][] = [];
  let previous: { order: string[]; updates: Map<string, Float32Array> } | undefined;
  let cutGradientNorm = 0;
  let bytesUp = 0;
  let bytesDown = 0;
  // The round in which each device's activations first reached the server (SplitFrozen's cache).
  const uploaded = new Map<string, number>();
  // GraB orders each round by what every device's training did to the adapters in the previous one.
  const grab = spec.ordering.kind === 'grab';
  if (grab && method === 'splitlora') throw new Error("SplitLoRA's devices train in parallel: there is no client order for GraB to balance");
  if (grab && spec.batchOrder === 'interleaved')
    throw new Error("GraB orders the devices by each one's own update to the adapters: it cannot be interleaved (use by-device)");

  let trainMs = 0;
  const step = async (b: TrainBatch, adjust?: GradientAdjustment) => {
    const t0 = performance.now();
    const { loss } = await t.trainStep(b, adjust);
    trainMs += performance.now() - t0;
    return loss;
  };
  for (let round = 0; round < spec.rounds; round++) {
    const roundStart = performance.now();
    const losses: number[] = [];
    const here = delivering(
      devices.map((d) => d.id),
      round,
      spec.seed,
      spec.participation,
    );
    // SplitFrozen's server trains on every device whose activations it holds, here this round or not; the bound on
    // every row; the other methods on the devices that deliver.
    for (const id of here) if (!uploaded.has(id)) uploaded.set(id, round);
    delivered.push(here.map((id) => devices.findIndex((d) => d.id === id)));
    const trainedOn =
      method === 'centralized'
        ? devices.map((d) => d.id)
        : method === 'splitfrozen' || method === 'splitfrozen-parallel'
          ? devices.map((d) => d.id).filter((id) => uploaded.has(id))
          : here;
    const order = orderPresent(ordering, { round, devices: trainedOn, seed: spec.seed, previous });
    const byId = new Map(devices.map((d) => [d.id, d]));
    const uploadsNow = order.filter((id) => uploaded.get(id) === round);
    const updates = new Map<string, Float32Array>();
    // A round in which no device delivers trains nothing (it is still evaluated).
    if (order.length > 0)
      switch (method) {
        case 'splitfrozen': {
          // The server's own schedule (by device, or one batch of each device in turn), over the devices' batches.
          let before: Float32Array | undefined;
          const open = async (id: string) => {
            before = grab ? t.flatAdapters() : undefined;
            return inOrder(sim.batches(byId.get(id)!, round));
          };
          for await (const turn of turns(order, spec.batchOrder ?? 'by-device', open)) {
            if ('batch' in turn) losses.push(await step(sim.atCut(turn.batch, cut)));
            else if (before)
              updates.set(
                turn.device,
                t.flatAdapters().map((x, i) => x - before![i]),
              );
          }
          break;
        }
        case 'centralized': {
          // The upper bound: every device's rows pooled at the server and mixed into new batches each round, trained
          // from the cut as SplitFrozen trains (the same steps over the same rows).
          for (const b of pooledBatches(devices, round, spec.seed, model.config.padTokenId)) losses.push(await step(sim.atCut(b, cut)));
          break;
        }
        case 'splitfrozen-parallel':
        case 'fedlora':
        case 'fedsgd':
        case 'fedprox':
        case 'scaffold': {
          const from = method === 'splitfrozen-parallel' ? cut : 0;
          const trained = await federatedRound(
            method,
            t,
            {
              order,
              population: devices.length,
              rows: (id) => byId.get(id)!.rows,
              batches: (id) => sim.batches(byId.get(id)!, round),
              step: (b, adjust) => step(sim.atCut(b, from), adjust),
              gradients: (b) => t.lossAndGradients(sim.atCut(b, from), true),
              updated: grab ? (id, delta) => updates.set(id, delta) : undefined,
            },
            { mu: spec.proxMu, controls },
          );
          losses.push(...trained);
          if (trainsWholeModel(method)) {
            bytesDown += exchangedBytes * order.length;
            bytesUp += exchangedBytes * order.length;
          }
          break;
        }
        case 'splitlora': {
          const traffic = await splitLoraRound(t, {
            order,
            rows: (id) => byId.get(id)!.rows,
            batches: (id) => sim.batches(byId.get(id)!, round),
            atEmbeddings: (b) => sim.atCut(b, 0),
            step,
            cut,
            avgEvery: spec.avgEvery,
            wireBytes: spec.wireBytes,
            nEmbd: model.config.nEmbd,
          });
          losses.push(...traffic.losses);
          bytesUp += traffic.bytesUp;
          bytesDown += traffic.bytesDown;
          if (round === 0) cutGradientNorm = traffic.cutGradientNorm;
          break;
        }
      }
    // SplitFrozen's activations go up once, when a device first delivers: later rounds reuse them (the prefix is frozen).
    if (method === 'splitfrozen' || method === 'splitfrozen-parallel') for (const id of uploadsNow) bytesUp += activationBytes(byId.get(id)!);
    previous = { order, updates };
    const { accuracy, loss } = await sim.evaluate();
    const r = {
      round,
      accuracy,
      loss,
      trainLoss: losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length),
      devices: order.length,
      wallMs: Math.round(performance.now() - roundStart),
    };
    rounds.push(r);
    onRound?.(r);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const final = t.exportAdapter();
  sim.dispose();
  controls.dispose();
  const deviceTokens = devices.reduce((a, d) => a + tokensOf(d), 0) / devices.length;
  // SplitFrozen's devices compute their activations once (the centralized bound's prefix runs once too); every other
  // method's devices work every round.
  const deviceRounds = method === 'splitfrozen' || method === 'splitfrozen-parallel' || method === 'centralized' ? 1 : spec.rounds;
  return {
    method,
    rounds,
    deviceForwardFlops: costs.device.forward * deviceTokens * deviceRounds,
    deviceBackwardFlops: costs.device.backward * deviceTokens * deviceRounds,
    serverFlops: (costs.server.forward + costs.server.backward) * deviceTokens * devices.length * spec.rounds,
    bytesUpPerDevice: bytesUp / devices.length,
    bytesDownPerDevice: bytesDown / devices.length,
    devicePeakMemoryMB: Number(costs.devicePeakMemoryMB.toFixed(1)),
    cutGradientNorm,
    wallMs: Math.round(performance.now() - started),
    trainMs: Math.round(trainMs),
    work: {
      devices: devices.map((d) => ({ batches: d.batches.length, tokens: tokensOf(d) })),
      perToken: { deviceForward: costs.device.forward, deviceBackward: costs.device.backward, server: costs.server.forward + costs.server.backward },
      activationBytesPerToken: model.config.nEmbd * spec.wireBytes,
      adapterBytes: exchangedBytes,
      avgEvery: spec.avgEvery,
      devicePeakMemoryMB: costs.devicePeakMemoryMB,
      ...(delivered.every((ids) => ids.length === devices.length) ? {} : { delivering: delivered }),
    },
    final,
  };
}
