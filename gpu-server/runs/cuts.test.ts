import { describe, expect, it } from 'vitest';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { planCut, prefixEstimate } from './cuts.ts';

const small = gpt2Config();

describe('cut planning', () => {
  it('gives each device the deepest cut that fits its memory and time, and deeper cuts to bigger devices', () => {
    const worker = planCut(small, { memoryMB: 128, gflops: 20, maxBatchSeconds: 10, weights: 'int8' }, 8, 128);
    const phone = planCut(small, { memoryMB: 512, gflops: 50, maxBatchSeconds: 10, weights: 'int8' }, 8, 128);
    expect(worker.cut).toBeGreaterThanOrEqual(1);
    expect(phone.cut).toBeGreaterThan(worker.cut);
    expect(worker.memoryMB).toBeLessThanOrEqual(128);
    // One more block would not fit.
    expect(prefixEstimate(small, worker.cut + 1, { weights: 'int8', gflops: 20 }, 8, 128).memoryMB).toBeGreaterThan(128);
  });

  it('a slow device gets a shallow cut from its time budget alone', () => {
    const slow = planCut(small, { memoryMB: 4096, gflops: 1, maxBatchSeconds: 2, weights: 'int8' }, 8, 128);
    expect(slow.batchSeconds).toBeLessThanOrEqual(2);
    expect(prefixEstimate(small, slow.cut + 1, { weights: 'int8', gflops: 1 }, 8, 128).batchSeconds).toBeGreaterThan(2);
  });

  it('never hands the server zero blocks, and says why a device cannot take part', () => {
    expect(planCut(small, { memoryMB: 1e6, gflops: 1e6, maxBatchSeconds: 1e6, weights: 'fp32' }, 8, 128).cut).toBe(11);
    expect(() => planCut(small, { memoryMB: 128, gflops: 20, maxBatchSeconds: 10, weights: 'fp32' }, 8, 128, 'dev-x')).toThrow(
      /device dev-x cannot run even the embeddings: they need ~\d+ MB, it has 128 MB \(int8 weights keep the token table out/,
    );
  });
});
