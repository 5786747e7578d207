import { describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { LEVELS } from '../core/privacy/defence.ts';
import { defenceKey } from '../core/privacy/stream.ts';
import { privacyReport, type DeviceSetting } from './privacy.ts';

describe('the attack suite', () => {
  const model = initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 1 });
  const attacker = syntheticSentiment(80, 1).map((r) => r.text);
  const victims = syntheticSentiment(16, 2).map((r) => r.text);
  // Fixed keys, so that every figure below is pinned.
  const keys = () => {
    let n = 0;
    return () => defenceKey(`pinned test key number ${n++} of the suite`);
  };
  const report = async (setting: DeviceSetting) => (await privacyReport(model, 2, [setting], attacker, victims, { seqLen: 24, copies: 6, keys: keys() }))[0];
  const recoveries = (r: Awaited<ReturnType<typeof report>>) =>
    Object.fromEntries(Object.entries(r.attacks).map(([k, v]) => [k, Number(v.recovery.toFixed(4))]));

  it('breaks undefended activations: the white-box search recovers the text, far above guessing', async () => {
    const r = await report({ kind: 'output', defence: LEVELS.off });
    expect(r.attacks.whitebox.recovery).toBeGreaterThanOrEqual(0.9);
    expect(r.strongest.majority).toBeLessThan(0.1);
    expect(recoveries(r)).toMatchInlineSnapshot(`
      {
        "adaptive": 0.9893,
        "learned": 0.8021,
        "nearest": 0.8984,
        "whitebox": 0.9893,
      }
    `);
    expect(r.copiesBitEqual).toBe(true);
  });

  it('against noise: each attack pinned; copies are bit-equal, and would have helped an averaging attacker had the noise been fresh', async () => {
    const r = await report({ kind: 'output', defence: LEVELS.medium });
    expect(r.copiesBitEqual).toBe(true);
    expect(r.attacks.adaptive).toEqual(r.attacks.whitebox);
    expect(r.adaptiveFreshNoise!.recovery).toBeGreaterThan(r.attacks.adaptive.recovery + 0.1);
    expect(recoveries(r)).toMatchInlineSnapshot(`
      {
        "adaptive": 0.0428,
        "learned": 0.0321,
        "nearest": 0.0695,
        "whitebox": 0.0428,
      }
    `);
    expect(r.strongest.recovery).toBe(Math.max(...Object.values(r.attacks).map((a) => a.recovery)));
  });

  it('against sanitisation: what the attacks recover is the sanitised text, pinned', async () => {
    const r = await report({ kind: 'sanitise', epsilon: 2 });
    expect(recoveries(r)).toMatchInlineSnapshot(`
      {
        "adaptive": 0.0321,
        "informed": 0.0481,
        "learned": 0.0267,
        "nearest": 0.0481,
        "whitebox": 0.0321,
      }
    `);
  });

  it('against randomised response in groups: the attacker who knows the groups is pinned too, and the text leaves only as its groups', async () => {
    const r = await report({ kind: 'groups', epsilon: 0, minSize: 8 });
    expect(r.attacks.informed).toBeDefined();
    expect(r.strongest.recovery).toBeLessThan(0.2);
    expect(recoveries(r)).toMatchInlineSnapshot(`
      {
        "adaptive": 0.0588,
        "informed": 0.1176,
        "learned": 0.0802,
        "nearest": 0.0588,
        "whitebox": 0.0588,
      }
    `);
  });
});
