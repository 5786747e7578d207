import { describe, expect, it } from 'vitest';
import { gpt2Config } from '../model/gpt2/config.ts';
import { BLOCK_LINEARS, paramShapes } from '../model/gpt2/weights.ts';
import { llamaConfig } from '../model/llama/config.ts';
import { llamaParamShapes } from '../model/llama/weights.ts';
import { flopsPerToken } from './flops.ts';

const gpt2 = gpt2Config();
const T = 128;

/** Weights of the block linears, counted from the parameter table (an independent path to N). */
function linearWeights(nLayers: number): number {
  let n = 0;
  for (const [name, shape] of paramShapes(gpt2)) {
    const layer = Number(/^h\.(\d+)\./.exec(name)?.[1] ?? NaN);
    if (layer < nLayers && name.endsWith('.weight') && shape.length === 2) n += shape[0] * shape[1];
  }
  return n;
}

describe('FLOP accounting', () => {
  it('forward FLOPs of the blocks are 2 N plus the attention matmuls 4 n_layer T d (the usual transformer estimate)', () => {
    const r = flopsPerToken({ config: gpt2, seqLen: T, cut: 2 });
    expect(r.device.forward).toBe(2 * linearWeights(2) + 2 * 4 * T * 768);
    const blocks = r.blocks.reduce((a, b) => a + b.forward, 0);
    expect(blocks).toBe(2 * linearWeights(12) + 12 * 4 * T * 768);
    expect(r.head.forward).toBeCloseTo((2 * 768 * 2) / T);
  });

  it('SplitFrozen: LoRA at or above the cut leaves devices with no backward FLOPs', () => {
    const r = flopsPerToken({ config: gpt2, seqLen: T, cut: 2, lora: { rank: 8, targets: ['attn.c_attn'], from: 2 } });
    expect(r.device.backward).toBe(0);
    expect(r.blocks[1].backward).toBe(0);
    // The lowest trainable block: LoRA parameter grads of c_attn, then every op above it differentiates its input,
    // but c_attn itself needs no input gradient (nothing trainable below it).
    const d = 768;
    const lora = 2 * 8 * 3 * d + 2 * 8 * 3 * d + 2 * 8 * d;
    const above = 2 * (4 * T * d) + 2 * d * d + 2 * d * 4 * d * 2;
    expect(r.blocks[2].backward).toBe(lora + above);
    // Higher blocks also pass the gradient through c_attn and its adapter.
    expect(r.blocks[3].backward).toBe(lora + above + 2 * d * 3 * d + 2 * 8 * d);
    expect(r.server.forward).toBe(r.total.forward - r.device.forward);
  });

  it('SplitLoRA: adapters on device blocks give the device backward FLOPs too', () => {
    const r = flopsPerToken({ config: gpt2, seqLen: T, cut: 2, lora: { rank: 8, targets: ['attn.c_attn'] } });
    expect(r.device.backward).toBeGreaterThan(0);
    expect(r.blocks[0].backward).toBeLessThan(r.blocks[1].backward); // block 0 needs no gradient of its input
  });

  it('full backward through frozen linears costs one forward each; LoRA everywhere adds its own', () => {
    const frozen = flopsPerToken({ config: gpt2, seqLen: T, cut: 0, lora: { rank: 4, targets: BLOCK_LINEARS } });
    const top = frozen.blocks[11];
    // Above the first trainable op every matmul differentiates its input; attention matmuls do two operands.
    expect(top.backward).toBeGreaterThan(top.forward);
    expect(top.backward).toBeLessThan(2 * top.forward);
  });

  it('refuses a cut outside the model', () => {
    expect(() => flopsPerToken({ config: gpt2, seqLen: T, cut: 13 })).toThrow(/cut 13 is outside 0\.\.12/);
  });
});

describe('FLOPs of a Llama block', () => {
  it("forward is twice the block's weights per token plus attention over heads * head_dim; LoRA on q and v only adds its own", () => {
    const c = llamaConfig(); // Llama-3.2-1B
    const T = 128;
    const weights = [...llamaParamShapes(c)].filter(([n, s]) => n.startsWith('layers.0.') && s.length === 2).reduce((a, [, s]) => a + s[0]! * s[1]!, 0);
    expect(weights).toBe(60_817_408); // q, o 2048^2; k, v 512 x 2048; gate, up, down 8192 x 2048
    const r = flopsPerToken({ config: c, seqLen: T, cut: 1, head: 'lm', headTrainable: false });
    expect(r.blocks[0]!.forward).toBe(2 * weights + 2 * 2 * T * 32 * 64);
    expect(r.head.forward).toBe(2 * 2048 * 128256);
    const lora = flopsPerToken({
      config: c,
      seqLen: T,
      cut: 1,
      head: 'lm',
      headTrainable: false,
      lora: { rank: 16, targets: ['self_attn.q_proj', 'self_attn.v_proj'], from: 1 },
    });
    expect(lora.blocks[1]!.forward - r.blocks[1]!.forward).toBe(2 * 16 * (2048 + 2048) + 2 * 16 * (2048 + 512));
    expect(lora.device.backward).toBe(0); // adapters from the cut up: the device runs no backward
  });
});
