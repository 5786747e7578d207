import { describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { inversionReport } from './privacy.ts';

describe('privacy report', () => {
  const model = initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 1 });

  it('recovers every token of text the attacker also holds, at any cut', async () => {
    const text = syntheticSentiment(12, 5).map((r) => r.text);
    const report = await inversionReport(model, [0, 2], text, text, { seqLen: 24 });
    expect(report.map((r) => [r.cut, r.recovery])).toEqual([[0, 1], [2, 1]]);
  });

  it('on other text, recovers far more than guessing the most frequent token, the same way twice', async () => {
    const [attacker, victims] = [syntheticSentiment(60, 1).map((r) => r.text), syntheticSentiment(20, 2).map((r) => r.text)];
    const report = await inversionReport(model, [0, 1, 2], attacker, victims, { seqLen: 24 });
    for (const r of report) expect(r.recovery).toBeGreaterThan(r.majority + 0.5);
    expect(await inversionReport(model, [0, 1, 2], attacker, victims, { seqLen: 24 })).toEqual(report);
  });
});
