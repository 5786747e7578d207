import { describe, expect, it } from 'vitest';
import { INTERLEAVED, topicSection, type TopicStudy } from './compare-report.ts';
import { spread, type SeedStudy } from './study.ts';

const study = (accuracy: Record<string, number[]>): SeedStudy => ({
  seeds: [0, 1, 2, 3, 4],
  majorityClass: 0.25,
  accuracy: Object.fromEntries(Object.entries(accuracy).map(([m, v]) => [m, spread(v)])),
  trainLoss: Object.fromEntries(Object.keys(accuracy).map((m) => [m, spread([1, 1, 1, 1, 1])])),
  runs: [],
  minutes: 0,
});
const iid: TopicStudy = {
  partition: { kind: 'iid' },
  out: 'docs/experiments/topics-iid',
  methods: study({ splitfrozen: [0.8, 0.82, 0.79, 0.85, 0.81], fedlora: [0.6, 0.61, 0.58, 0.66, 0.62], centralized: [0.9, 0.9, 0.91, 0.92, 0.9] }),
  orderings: {
    'random-reshuffle': study({ splitfrozen: [0.8, 0.82, 0.79, 0.85, 0.81] }),
    [INTERLEAVED]: study({ splitfrozen: [0.86, 0.85, 0.88, 0.87, 0.86] }),
  },
  sweep: { chosen: { splitfrozen: 0.003, fedlora: 0.01 }, accuracy: { splitfrozen: { '0.003': 0.8, '0.01': 0.7 }, fedlora: { '0.003': 0.5, '0.01': 0.6 } } },
};

describe("compare's report of the topic task", () => {
  it("lists every method any study ran, '-' where a study left one out", () => {
    const many: TopicStudy = { ...iid, label: 'many devices', methods: study({ splitfrozen: [0.5, 0.5, 0.6, 0.5, 0.5], fedlora: [0.4, 0.4, 0.4, 0.5, 0.4] }) };
    const line = topicSection([iid, many], [0, 1, 2, 3, 4], 'random')
      .split('\n')
      .find((l) => l.startsWith('| many devices | 25.0% |'))!;
    // splitfrozen, fedlora, centralized (not run: '-'), then interleaved.
    expect(line.split(' | ').slice(2, 6)).toEqual(['52.0 ± 4.5%', '42.0 ± 4.5%', '-', '86.4 ± 1.1%']);
  });

  const text = topicSection([iid], [0, 1, 2, 3, 4], 'random');
  const row = (start: string) => text.split('\n').find((l) => l.startsWith(start))!;

  it('prints the learning rates chosen on validation, with the accuracy at each', () => {
    expect(text).toContain('### Learning rates, chosen on validation');
    expect(row('| iid | splitfrozen |')).toBe('| iid | splitfrozen | 80.0% | 70.0% | 0.003 |');
    expect(row('| iid | fedlora |')).toBe('| iid | fedlora | 50.0% | 60.0% | 0.01 |');
  });

  it('tests the claims of methods that ran, paired across seeds and Holm-corrected, and leaves out the others', () => {
    const claim = (name: string) =>
      text
        .split(`**${name}`)[1]!
        .split('\n')
        .find((l) => l.startsWith('| iid |'))!;
    expect(claim('SplitFrozen beats FedLoRA')).toMatch(/^\| iid \| 20\.0 \| [\d.]+ \| [\d.e-]+ \| [\d.e-]+ \| supports \|$/);
    expect(claim('The centralized bound beats SplitFrozen, interleaved')).toMatch(/\| supports \|$/);
    // In plain words, from the same verdicts.
    expect(row('- SplitFrozen beats FedLoRA')).toBe('- SplitFrozen beats FedLoRA (the paper: up to +69.4% under extreme imbalance): holds in every setting.');
    // No SplitLoRA, FedProx or GraB runs: no claim about them.
    expect(text).not.toContain('beats SplitLoRA');
    expect(text).not.toContain('beats FedProx');
    expect(text).not.toContain('GraB beats');
  });
});
