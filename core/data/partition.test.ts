import { describe, expect, it } from 'vitest';
import { Random } from '../random.ts';
import { labelHistogram, partition, type PartitionSpec } from './partition.ts';

const rng = new Random(3);
const labels = Array.from({ length: 1000 }, () => Math.floor(rng.uniform() * 3));
const specs: PartitionSpec[] = [
  { kind: 'iid' },
  { kind: 'dirichlet', alpha: 0.1 },
  { kind: 'dirichlet', alpha: 100 },
  { kind: 'extreme' },
  { kind: 'quantity', alpha: 0.5 },
];

describe('partitioners', () => {
  it('place every sample exactly once, and the same seed gives the same shards', () => {
    for (const spec of specs) {
      const parts = partition(labels, 6, spec, 1);
      const all = parts.flat().sort((a, b) => a - b);
      expect(all, spec.kind).toEqual(labels.map((_, i) => i));
      expect(partition(labels, 6, spec, 1)).toEqual(parts);
      expect(partition(labels, 6, spec, 2)).not.toEqual(parts);
    }
  });

  it('IID shards have equal sizes and each class in proportion', () => {
    const hist = labelHistogram(labels, partition(labels, 5, { kind: 'iid' }, 0), 3);
    for (const h of hist) {
      expect(h.reduce((a, b) => a + b, 0)).toBe(200);
      for (const c of h) expect(c).toBeGreaterThan(40);
    }
  });

  it('Dirichlet label skew concentrates classes as alpha shrinks', () => {
    // The share of a device's samples in its largest class: near 1/3 for large alpha, near 1 for small.
    const dominance = (alpha: number) => {
      const hist = labelHistogram(labels, partition(labels, 6, { kind: 'dirichlet', alpha }, 4), 3).filter((h) => h.some((x) => x > 0));
      return hist.reduce((a, h) => a + Math.max(...h) / h.reduce((x, y) => x + y, 0), 0) / hist.length;
    };
    expect(dominance(100)).toBeLessThan(0.45);
    expect(dominance(0.1)).toBeGreaterThan(0.85);
  });

  it('extreme imbalance gives each device a single class, and needs a device per class', () => {
    const hist = labelHistogram(labels, partition(labels, 6, { kind: 'extreme' }, 0), 3);
    for (const h of hist) expect(h.filter((x) => x > 0)).toHaveLength(1);
    expect(() => partition(labels, 2, { kind: 'extreme' }, 0)).toThrow(/3 classes need at least 3 devices, got 2/);
    // Each seed deals the classes to devices anew: the partition is not the same for every seed.
    const classOf = (seed: number) => labelHistogram(labels, partition(labels, 3, { kind: 'extreme' }, seed), 3).map((h) => h.findIndex((x) => x > 0));
    const dealings = new Set(Array.from({ length: 10 }, (_, seed) => classOf(seed).join(',')));
    expect(dealings.size).toBeGreaterThan(1);
    for (const d of dealings) expect([...d.split(',')].sort()).toEqual(['0', '1', '2']);
  });

  it('quantity skew varies sizes but keeps labels mixed', () => {
    const parts = partition(labels, 6, { kind: 'quantity', alpha: 0.5 }, 0);
    const sizes = parts.map((p) => p.length);
    expect(Math.max(...sizes)).toBeGreaterThan(3 * Math.min(...sizes));
  });

  it('refuses bad parameters', () => {
    expect(() => partition(labels, 0, { kind: 'iid' }, 0)).toThrow(/devices must be a positive integer/);
    expect(() => partition(labels, 3, { kind: 'dirichlet', alpha: 0 }, 0)).toThrow(/alpha > 0/);
  });
});
