/**
 * Who takes part in a round when there are many devices: each is sampled with probability `fraction` (at least one
 * is), and a sampled device drops out before it delivers with probability `dropout`. Seeded by the run's seed and the
 * round, the same for every method. What a method makes of an absent device differs: a federated device's update is
 * simply missing, while SplitFrozen's server still holds the activations a device uploaded in an earlier round.
 */
import { Random } from '../../core/random.ts';

export interface Participation {
  fraction: number;
  dropout: number;
}

export const EVERY_DEVICE: Participation = { fraction: 1, dropout: 0 };

/** The devices that deliver in round `round`, in the order given. */
export function delivering(ids: readonly string[], round: number, seed: number, p: Participation): string[] {
  if (p.fraction >= 1 && p.dropout <= 0) return [...ids];
  const rng = new Random(seed * 7_368_787 + round * 104_729 + 13);
  const draws = ids.map((id) => ({ id, sampled: rng.uniform() < p.fraction, dropped: rng.uniform() < p.dropout }));
  // At least one device is sampled: one drawn at random when the draws sampled none.
  if (!draws.some((d) => d.sampled)) draws[Math.floor(rng.uniform() * draws.length)]!.sampled = true;
  return draws.filter((d) => d.sampled && !d.dropped).map((d) => d.id);
}
