/**
 * A round's wall time from a device-time model: each device produces its batches at its own pace (compute and
 * upload), the server trains them device after device in the client order (or interleaved), one batch at a time. Pipelined, every
 * device starts at once; stop-and-wait, a device starts only when the server has trained the previous one. The
 * server trains a device's batches once the device's manifest has landed, after its last batch (it checks every
 * batch against the manifest's SHA-256s before training on it: gpu-server/rounds/feed.ts), so a device's compute
 * overlaps the server's work on the devices before it, never on itself.
 */
import type { BatchOrder } from '../gpu-server/ordering/turns.ts';
import { Random } from '../core/random.ts';

export interface DeviceWork {
  id: string;
  batches: number;
  /** Seconds the device takes to produce one batch (forward pass and upload). */
  secondsPerBatch: number;
}

export interface Makespan {
  seconds: number;
  /** Time the server trained, and the rest of the round, when it waited for a batch. */
  serverBusySeconds: number;
  serverIdleSeconds: number;
}

export type Schedule = 'pipelined' | 'stop-and-wait';
/** The run setting training.batchOrder (gpu-server/runs/spec.ts). */
export type { BatchOrder } from '../gpu-server/ordering/turns.ts';

/**
 * The round's makespan: devices in `order`, the server's step `serverSecondsPerBatch`. Interleaved (one batch of each
 * device in turn), the server opens every device's feed before its first turn under either schedule, so every device
 * computes at once, and the first turn needs a batch of each: training starts when the last manifest lands.
 */
export function roundMakespan(
  devices: readonly DeviceWork[],
  serverSecondsPerBatch: number,
  schedule: Schedule,
  batchOrder: BatchOrder = 'by-device',
): Makespan {
  const busy = devices.reduce((a, d) => a + d.batches, 0) * serverSecondsPerBatch;
  let t = 0;
  if (batchOrder === 'interleaved') t = Math.max(0, ...devices.map((d) => d.batches * d.secondsPerBatch)) + busy;
  else
    for (const d of devices) {
      const ready = (schedule === 'pipelined' ? 0 : t) + d.batches * d.secondsPerBatch;
      t = Math.max(t, ready) + d.batches * serverSecondsPerBatch;
    }
  return { seconds: t, serverBusySeconds: busy, serverIdleSeconds: t - busy };
}

/**
 * A device class. Forward and backward FLOP/s are sustained rates for fp32 training-sized matrices (backward runs
 * slower: more memory traffic per FLOP); bandwidths are what a device keeps up over a round.
 */
export interface DeviceProfile {
  name: string;
  forwardGflops: number;
  backwardGflops: number;
  uplinkMbps: number;
  downlinkMbps: number;
  memoryMB: number;
  source: string;
}

export const DEVICE_PROFILES: readonly DeviceProfile[] = [
  {
    name: 'phone',
    forwardGflops: 10,
    backwardGflops: 5,
    uplinkMbps: 10,
    downlinkMbps: 50,
    memoryMB: 1024,
    source: 'a mid-range phone CPU in a browser or app (assumed), a mobile uplink',
  },
  {
    name: 'laptop',
    forwardGflops: 60,
    backwardGflops: 30,
    uplinkMbps: 50,
    downlinkMbps: 200,
    memoryMB: 4096,
    source: 'a laptop CPU (assumed), home broadband',
  },
  {
    name: 'workers',
    forwardGflops: 58,
    backwardGflops: 0,
    uplinkMbps: 1000,
    downlinkMbps: 1000,
    memoryMB: 128,
    source:
      'a Cloudflare Worker: forward as measured in workerd (bench:worker: 2,038 tokens/s through 2 GPT-2-small blocks in int8), no backward pass (onnxruntime-web runs inference only), 128 MB',
  },
];

/** What a method's run asked of its devices and server (experiments/sim/methods.ts fills it in). */
export interface MethodWork {
  /** Each device's batches and tokens, and how many times slower than its profile it runs (a straggler: > 1). */
  devices: Array<{ batches: number; tokens: number; slowdown?: number }>;
  /** FLOPs per token: a device's forward and backward, the server's training. */
  perToken: { deviceForward: number; deviceBackward: number; server: number };
  /** Bytes of activations (up) or of their gradient (down) per token. */
  activationBytesPerToken: number;
  /** Bytes of the adapters a device exchanges (FedLoRA: the whole model's; SplitLoRA: its blocks'). */
  adapterBytes: number;
  /** SplitLoRA: steps between averagings of the device adapters. */
  avgEvery: number;
  devicePeakMemoryMB: number;
  /** Each round's devices that delivered (indices into `devices`), where not every device took part in every round. */
  delivering?: number[][];
}

/**
 * Seconds one round of a method takes on devices of `profile` with a server of `serverFlops` FLOP/s (measured: the
 * SplitFrozen server's training steps), or undefined where the method does not fit the device (memory, or a
 * backward pass a Worker cannot run). `round` 0 is the first: SplitFrozen's devices compute only then.
 */
export function methodRoundSeconds(
  method: string,
  w: MethodWork,
  profile: DeviceProfile,
  serverFlops: number,
  round: number,
  schedule: Schedule = 'pipelined',
  batchOrder: BatchOrder = 'by-device',
): number | undefined {
  const backward = w.perToken.deviceBackward > 0;
  if (w.devicePeakMemoryMB > profile.memoryMB || (backward && profile.backwardGflops === 0)) return undefined;
  // A straggler computes and uploads `slowdown` times slower than its profile.
  const compute = (tokens: number, slowdown = 1) =>
    slowdown *
    ((tokens * w.perToken.deviceForward) / (profile.forwardGflops * 1e9) +
      (backward ? (tokens * w.perToken.deviceBackward) / (profile.backwardGflops * 1e9) : 0));
  const up = (bytes: number, slowdown = 1) => (slowdown * 8 * bytes) / (profile.uplinkMbps * 1e6);
  const down = (bytes: number) => (8 * bytes) / (profile.downlinkMbps * 1e6);
  const server = (tokens: number) => (tokens * w.perToken.server) / serverFlops;
  const perBatch = (d: { batches: number; tokens: number }) => d.tokens / Math.max(d.batches, 1);
  // The devices that deliver this round (all, unless the run sampled them or they dropped out).
  const here = w.delivering?.[round]?.map((i) => w.devices[i]!) ?? w.devices;
  switch (method) {
    case 'splitfrozen':
    case 'splitfrozen-parallel':
    case 'centralized': {
      // Activations computed and sent once, in the round a device first delivers (the bound: all in the first);
      // the server trains every device whose activations it holds, every round.
      const first = firstDelivery(w, method === 'centralized');
      const held = w.devices.map((d, i) => ({ d, i })).filter(({ i }) => first[i]! <= round);
      const devices = held.map(({ d, i }) => ({
        id: String(i),
        batches: d.batches,
        secondsPerBatch: first[i] === round ? compute(perBatch(d), d.slowdown) + up(perBatch(d) * w.activationBytesPerToken, d.slowdown) : 0,
      }));
      const tokensPerBatch =
        held.reduce((a, { d }) => a + d.tokens, 0) /
        Math.max(
          1,
          devices.reduce((a, d) => a + d.batches, 0),
        );
      return roundMakespan(devices, server(tokensPerBatch), schedule, batchOrder).seconds;
    }
    case 'fedlora':
    case 'fedprox':
    case 'scaffold':
    case 'fedsgd':
      // Every delivering device at once: the global adapters down, a pass over its data (FedSGD: its gradient over
      // the same rows), its adapters (or gradient) up (SCAFFOLD's adapterBytes count its control variate too);
      // averaging is free.
      return Math.max(0, ...here.map((d) => down(w.adapterBytes) + compute(d.tokens, d.slowdown) + up(w.adapterBytes, d.slowdown)));
    case 'splitlora': {
      // Devices at once, a batch at a time: forward, activations up, the server's step, the gradient down,
      // backward, and the device adapters' averaging every avgEvery steps; the server takes one batch at a time.
      const chain = here.map(
        (d) =>
          compute(d.tokens, d.slowdown) +
          up(d.tokens * w.activationBytesPerToken, d.slowdown) +
          server(d.tokens) +
          down(d.tokens * w.activationBytesPerToken) +
          (d.batches / w.avgEvery) * (up(w.adapterBytes, d.slowdown) + down(w.adapterBytes)),
      );
      return Math.max(...chain, server(here.reduce((a, d) => a + d.tokens, 0)));
    }
    default:
      throw new Error(`no time model for method '${method}'`);
  }
}

/** The round in which each device first delivered (Infinity: never); round 0 for all where every device always did. */
function firstDelivery(w: MethodWork, everyoneFirst: boolean): number[] {
  const first = w.devices.map(() => (w.delivering && !everyoneFirst ? Infinity : 0));
  if (!everyoneFirst) w.delivering?.forEach((ids, round) => ids.forEach((i) => (first[i] = Math.min(first[i]!, round))));
  return first;
}

/** Seconds from the start to the end of each of `rounds` rounds, or undefined where the method does not fit the device. */
export function cumulativeSeconds(
  method: string,
  w: MethodWork,
  profile: DeviceProfile,
  serverFlops: number,
  rounds: number,
  schedule: Schedule = 'pipelined',
  batchOrder?: BatchOrder,
): number[] | undefined {
  let total = 0;
  const out: number[] = [];
  for (let k = 0; k < rounds; k++) {
    const s = methodRoundSeconds(method, w, profile, serverFlops, k, schedule, batchOrder);
    if (s === undefined) return undefined;
    out.push((total += s));
  }
  return out;
}

/** The same work spread over `n` devices alike, each with the average device's batches and tokens. */
export function withDevices(w: MethodWork, n: number): MethodWork {
  const avg = (pick: (d: MethodWork['devices'][number]) => number) => w.devices.reduce((a, d) => a + pick(d), 0) / Math.max(1, w.devices.length);
  const device = { batches: Math.max(1, Math.round(avg((d) => d.batches))), tokens: avg((d) => d.tokens) };
  return { ...w, devices: Array.from({ length: n }, () => device), delivering: undefined };
}

/**
 * The fewest devices (alike, each with the average device's data) at which SplitFrozen's modelled time over `rounds`
 * reaches another method's: its server trains every device's batches one after another, so its time grows with the
 * devices, while federated devices train at once. Undefined where it stays below up to `max` devices, or where
 * either method does not fit the device.
 */
export function breakEvenDevices(
  splitfrozen: MethodWork,
  other: { method: string; work: MethodWork },
  profile: DeviceProfile,
  serverFlops: number,
  rounds: number,
  max = 100_000,
): number | undefined {
  const slower = (n: number) => {
    const sf = cumulativeSeconds('splitfrozen', withDevices(splitfrozen, n), profile, serverFlops, rounds)?.at(-1);
    const o = cumulativeSeconds(other.method, withDevices(other.work, n), profile, serverFlops, rounds)?.at(-1);
    return sf === undefined || o === undefined ? undefined : sf >= o;
  };
  if (slower(1) === undefined) return undefined;
  let hi = 1;
  while (!slower(hi)) {
    if (hi >= max) return undefined;
    hi = Math.min(max, hi * 2);
  }
  let lo = Math.floor(hi / 2);
  // slower(lo) is false (or lo is 0), slower(hi) true: the first n between.
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (slower(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * Heavy-tailed slowdowns for `n` devices: Pareto draws of shape `alpha` (at least 1; alpha 1.5 makes one device in
 * ten over 4.6 times slower and one in a hundred over 21), seeded.
 */
export function paretoSlowdowns(n: number, alpha: number, seed: number): number[] {
  const rng = new Random(seed * 2_654_435 + 97);
  return Array.from({ length: n }, () => (1 - rng.uniform()) ** (-1 / alpha));
}

/** The work with each device slowed down as given. */
export function withSlowdowns(w: MethodWork, slowdowns: readonly number[]): MethodWork {
  return { ...w, devices: w.devices.map((d, i) => ({ ...d, slowdown: slowdowns[i] ?? 1 })) };
}
