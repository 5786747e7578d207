/**
 * Splitting a labelled dataset into N device shards: IID, Dirichlet label skew (concentration alpha: small alpha,
 * few classes per device), extreme imbalance (each device holds a single class) and quantity skew (IID labels,
 * Dirichlet sizes). Every sample is placed exactly once; the same seed gives the same shards.
 */
import { Random } from '../random.ts';

export type PartitionSpec = { kind: 'iid' } | { kind: 'dirichlet'; alpha: number } | { kind: 'extreme' } | { kind: 'quantity'; alpha: number };

export function describePartition(p: PartitionSpec): string {
  return p.kind === 'dirichlet' || p.kind === 'quantity' ? `${p.kind}(alpha=${p.alpha})` : p.kind;
}

/** Splits `count` items into groups of sizes proportional to `weights`, largest remainders first. */
function split<T>(items: T[], weights: number[]): T[][] {
  const exact = weights.map((w) => w * items.length);
  const sizes = exact.map(Math.floor);
  const byRemainder = exact.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0]);
  for (let k = 0; sizes.reduce((a, b) => a + b, 0) < items.length; k++) sizes[byRemainder[k % sizes.length][1]]++;
  const out: T[][] = [];
  let at = 0;
  for (const size of sizes) {
    out.push(items.slice(at, at + size));
    at += size;
  }
  return out;
}

/** Indices of `labels` for each of `devices` shards. */
export function partition(labels: readonly number[], devices: number, spec: PartitionSpec, seed: number): number[][] {
  if (!Number.isSafeInteger(devices) || devices < 1) throw new RangeError(`devices must be a positive integer, got ${devices}`);
  const rng = new Random(seed);
  const classes = Math.max(...labels) + 1;
  const byClass = Array.from({ length: classes }, () => [] as number[]);
  for (const i of rng.shuffled(labels.length)) byClass[labels[i]].push(i);
  const parts = Array.from({ length: devices }, () => [] as number[]);
  switch (spec.kind) {
    case 'iid':
      split(rng.shuffled(labels.length), Array(devices).fill(1 / devices)).forEach((p, d) => parts[d].push(...p));
      break;
    case 'quantity': {
      if (!(spec.alpha > 0)) throw new RangeError(`quantity skew needs alpha > 0, got ${spec.alpha}`);
      split(rng.shuffled(labels.length), rng.dirichlet(spec.alpha, devices)).forEach((p, d) => parts[d].push(...p));
      break;
    }
    case 'dirichlet': {
      if (!(spec.alpha > 0)) throw new RangeError(`Dirichlet label skew needs alpha > 0, got ${spec.alpha}`);
      for (const members of byClass) split(members, rng.dirichlet(spec.alpha, devices)).forEach((p, d) => parts[d].push(...p));
      break;
    }
    case 'extreme': {
      const present = byClass.map((m, c) => (m.length ? c : -1)).filter((c) => c >= 0);
      if (devices < present.length)
        throw new RangeError(
          `extreme imbalance gives each device one class: ${present.length} classes need at least ${present.length} devices, got ${devices}`,
        );
      // Device d holds class present[perm[d mod C]], the permutation drawn from the seed (so each seed deals the
      // classes to other devices); a class shared by several devices is split evenly between them.
      const dealt = rng.shuffled(present.length).map((k) => present[k]!);
      dealt.forEach((c, k) => {
        const holders = Array.from({ length: devices }, (_, d) => d).filter((d) => d % present.length === k);
        split(
          byClass[c],
          holders.map(() => 1 / holders.length),
        ).forEach((p, h) => parts[holders[h]].push(...p));
      });
      break;
    }
  }
  return parts.map((p) => p.sort((a, b) => a - b));
}

/** counts[device][class] */
export function labelHistogram(labels: readonly number[], parts: readonly number[][], classes: number): number[][] {
  return parts.map((p) => {
    const h = Array(classes).fill(0);
    for (const i of p) h[labels[i]]++;
    return h;
  });
}

export function histogramTable(hist: number[][], classNames: readonly string[]): string {
  const lines = [`| device | ${classNames.join(' | ')} | total |`, `|---|${classNames.map(() => '---|').join('')}---|`];
  hist.forEach((h, d) => lines.push(`| ${d} | ${h.join(' | ')} | ${h.reduce((a, b) => a + b, 0)} |`));
  return lines.join('\n');
}
