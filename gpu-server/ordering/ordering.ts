/**
 * Client orderings for sequential training: in which order the server trains on the devices in each round.
 * All return a permutation of the run's devices; GraB uses what the previous round's training did to each device's
 * share of the adapters.
 */
import { Random } from '../../core/random.ts';

export type OrderingSpec = { kind: 'random-reshuffle' } | { kind: 'shuffle-once' } | { kind: 'fixed'; order: string[] } | { kind: 'grab'; order?: string[] };

export interface OrderingInput {
  round: number;
  devices: readonly string[];
  seed: number;
  /** The previous round's order, and the update each device's training made to the adapters in it (GraB). */
  previous?: { order: readonly string[]; updates: ReadonlyMap<string, Float32Array> };
}

export function permutation(items: readonly string[], rng: Random): string[] {
  return rng.shuffled(items.length).map((i) => items[i]!);
}

function checkPermutation(order: readonly string[], devices: readonly string[], what: string): string[] {
  const missing = devices.filter((d) => !order.includes(d));
  const extra = order.filter((d) => !devices.includes(d));
  if (missing.length || extra.length || new Set(order).size !== order.length) {
    throw new Error(
      `${what} must list every device once: ${[missing.length ? `missing ${missing.join(', ')}` : '', extra.length ? `unknown ${extra.join(', ')}` : ''].filter(Boolean).join('; ') || 'duplicates'}`,
    );
  }
  return [...order];
}

export function orderFor(spec: OrderingSpec, input: OrderingInput): string[] {
  switch (spec.kind) {
    case 'random-reshuffle':
      return permutation(input.devices, new Random(input.seed * 1_000_003 + input.round));
    case 'shuffle-once':
      return permutation(input.devices, new Random(input.seed));
    case 'fixed':
      return checkPermutation(spec.order, input.devices, 'the fixed order');
    case 'grab': {
      if (!input.previous) return spec.order ? checkPermutation(spec.order, input.devices, 'the initial GraB order') : [...input.devices];
      const { order, updates } = input.previous;
      return pairBalance(
        order.map((d) => {
          const u = updates.get(d);
          if (!u) throw new Error(`GraB needs the previous round's update of device ${d}`);
          return u;
        }),
      ).map((i) => order[i]);
    }
  }
}

/**
 * The order of a round in which only some of the run's devices take part (others were skipped, unreachable or not
 * sampled): a fixed or initial order keeps its devices that are here, the others after them; GraB balances the
 * devices it has a previous update of (at least two), and those it has none of (new, or absent last round) come last.
 */
export function orderPresent(spec: OrderingSpec, input: OrderingInput): string[] {
  const ids = input.devices;
  const { previous } = input;
  const balanced = spec.kind === 'grab' && previous ? previous.order.filter((d) => ids.includes(d) && previous.updates.has(d)) : [];
  if (spec.kind === 'grab' && balanced.length >= 2)
    return [
      ...orderFor(spec, { ...input, devices: balanced, previous: { order: balanced, updates: previous!.updates } }),
      ...ids.filter((d) => !balanced.includes(d)),
    ];
  const given = spec.kind === 'fixed' || spec.kind === 'grab' ? spec.order : undefined;
  const here = given ? { ...spec, order: [...given.filter((d) => ids.includes(d)), ...ids.filter((d) => !given.includes(d))] } : spec;
  return orderFor(here as OrderingSpec, { ...input, previous: undefined });
}

/** Subtracts the mean vector. */
export function centred(vectors: readonly Float32Array[]): Float32Array[] {
  const n = vectors.length;
  const mean = new Float64Array(vectors[0].length);
  for (const v of vectors) v.forEach((x, i) => (mean[i] += x / n));
  return vectors.map((v) => v.map((x, i) => x - mean[i]));
}

function norm2(v: Float64Array): number {
  return v.reduce((a, x) => a + x * x, 0);
}

/**
 * GraB's pair balance (as in CD-GraB): walk the vectors in their current order two at a time, and give the pair's
 * difference the sign that keeps the running sum small; the one taken with + goes to the front of the new order,
 * the other to the back (which is then reversed). Returns the new order as indices into `vectors`.
 */
export function pairBalance(vectors: readonly Float32Array[]): number[] {
  const c = centred(vectors);
  const sum = new Float64Array(c[0]?.length ?? 0);
  const front: number[] = [];
  const back: number[] = [];
  for (let k = 0; k < c.length; k += 2) {
    const [i, j] = [k, k + 1 < c.length ? k + 1 : -1];
    const diff = Float64Array.from(c[i], (x, t) => x - (j >= 0 ? c[j][t] : 0));
    const plus = norm2(sum.map((s, t) => s + diff[t]));
    const minus = norm2(sum.map((s, t) => s - diff[t]));
    const sign = plus <= minus ? 1 : -1;
    sum.forEach((s, t) => (sum[t] = s + sign * diff[t]));
    const [first, second] = sign > 0 ? [i, j] : [j, i];
    if (first >= 0) front.push(first);
    if (second >= 0) back.push(second);
  }
  return [...front, ...back.reverse()];
}

/** The herding objective GraB minimises: the largest norm of a prefix sum of centred vectors, in the given order. */
export function largestPrefixSum(vectors: readonly Float32Array[], order: readonly number[]): number {
  const c = centred(vectors);
  const sum = new Float64Array(c[0].length);
  let worst = 0;
  for (const i of order) {
    c[i].forEach((x, t) => (sum[t] += x));
    worst = Math.max(worst, Math.sqrt(norm2(sum)));
  }
  return worst;
}
