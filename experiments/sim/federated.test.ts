import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import { ControlVariates } from './federated.ts';
import { pooledBatches, roundBatches, runMethod } from './methods.ts';
import type { TokenBatch } from './setup.ts';
import { config, data, handTrainer, model, spec, stepByHand } from './tiny.fixture.ts';

const one = { ...spec, ordering: { kind: 'fixed' as const, order: ['device-0'] } };

/** Local training by hand: a fresh trainer (and AdamW) from the initial adapters over `batches`. */
async function byHand(batches: TokenBatch[], cut = 0) {
  const t = handTrainer(cut);
  for (const b of batches) await stepByHand(t, b, cut);
  const w = t.exportAdapter();
  t.dispose();
  return w;
}
const distance = (a: Float32Array, b: Float32Array) => Math.hypot(...a.map((x, i) => x - b[i]!));

describe('the federated comparators, on a tiny model', () => {
  beforeAll(() => initBackend('wasm'));

  it("FedSGD: one AdamW step on the mean by rows of every device's batch gradients at the global adapters", async () => {
    const d = data(2);
    const ran = await runMethod('fedsgd', model, d, spec);
    // By hand: each batch's gradient from the initial adapters, weighted by its rows over all the round's rows.
    const t = handTrainer(0);
    const batches = d.devices.flatMap((dev) => roundBatches(dev, 0, spec.seed));
    const rows = batches.reduce((a, b) => a + b.rows, 0);
    const name = 'h.2.attn.c_attn';
    const g = new Float32Array(ran.final.b.get(name)!.length);
    for (const b of batches) {
      const hidden = tf.tidy(() =>
        t.net.hidden(tf.tensor2d(b.ids, [b.rows, b.seqLen], 'int32'), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32'), 0).dataSync(),
      );
      const { loss, grads } = await t.lossAndGradients(
        { cut: 0, rows: b.rows, seqLen: b.seqLen, hidden: hidden as Float32Array, mask: b.mask, labels: b.labels },
        true,
      );
      const gb = grads[t.lora.b.get(name)!.name]!.dataSync();
      gb.forEach((x, i) => (g[i]! += (x * b.rows) / rows));
      tf.dispose([loss, ...Object.values(grads)]);
    }
    t.dispose();
    // AdamW's first step from B = 0 (clipping scales g and |g| alike): -lr g / (|g| + eps).
    const { eps } = spec.optimizer;
    const got = ran.final.b.get(name)!;
    expect(got.some((x) => x !== 0)).toBe(true);
    g.forEach((x, i) => expect(got[i]).toBeCloseTo((-spec.lr * x) / (Math.abs(x) + eps), 5));
    // Its devices compute the gradients of every row, as FedLoRA's do.
    expect(ran.deviceForwardFlops).toBe((await runMethod('fedlora', model, d, spec)).deviceForwardFlops);
  });

  it('FedProx is FedLoRA at mu 0, and its proximal term keeps the local adapters near the global ones', async () => {
    const d = data(1);
    const fedlora = await runMethod('fedlora', model, d, one);
    expect((await runMethod('fedprox', model, d, { ...one, proxMu: 0 })).final.b).toEqual(fedlora.final.b);
    const start = (await byHand([])).b.get('h.2.attn.c_attn')!;
    const moved = (w: Map<string, Float32Array>) => distance(w.get('h.2.attn.c_attn')!, start);
    const held = await runMethod('fedprox', model, d, { ...one, proxMu: 1000 });
    expect(moved(held.final.b)).toBeLessThan(moved(fedlora.final.b) / 2);
  });

  it('SCAFFOLD corrects nothing in its first round or with one device, and steers later rounds where devices differ', async () => {
    const skewed = data(2, 'extreme');
    const first = await runMethod('scaffold', model, skewed, spec);
    expect(first.final.b).toEqual((await runMethod('fedlora', model, skewed, spec)).final.b);
    const alone = data(1);
    expect((await runMethod('scaffold', model, alone, { ...one, rounds: 2 })).final.b).toEqual(
      (await runMethod('fedlora', model, alone, { ...one, rounds: 2 })).final.b,
    );
    const two = { ...spec, rounds: 2 };
    expect((await runMethod('scaffold', model, skewed, two)).final.b).not.toEqual((await runMethod('fedlora', model, skewed, two)).final.b);
    // Its correction is in the gradients' units (the mean of the gradients a device took): on IID devices, whose
    // gradients agree, it steers little, where a correction in Adam's units would swamp the gradients.
    const iid = data(2);
    const start = (await byHand([])).b.get('h.2.attn.c_attn')!;
    const [fedlora, scaffold] = await Promise.all(['fedlora', 'scaffold'].map((m) => runMethod(m as 'fedlora', model, iid, two)));
    const b = (r: typeof fedlora) => r.final.b.get('h.2.attn.c_attn')!;
    expect(distance(b(scaffold), b(fedlora))).toBeLessThan(distance(b(fedlora), start) / 2);
    // Its control variate travels with the adapters.
    expect(first.bytesUpPerDevice).toBe(2 * (await runMethod('fedlora', model, skewed, spec)).bytesUpPerDevice);
  });
});

describe("SCAFFOLD's control variates", () => {
  beforeAll(() => initBackend('wasm'));

  it("c moves by the sampled devices' changes summed over the whole population (|S|/N times their mean)", () => {
    const t = handTrainer(0);
    const controls = new ControlVariates();
    const ones = (x: number) => new Map(t.variables().map((v) => [v.name, tf.fill(v.shape, x)]));
    // Two of four devices deliver, with mean gradients 1 and 3: c = (1 + 3) / 4 = 1.
    const deltas = [controls.update(t, 'a', ones(1)), controls.update(t, 'b', ones(3))];
    controls.moveServer(deltas, 4);
    const { c, ci } = controls.of(t, 'b');
    expect([...c.values()].every((x) => x.dataSync().every((v) => v === 1))).toBe(true);
    expect([...ci.values()][0]!.dataSync()[0]).toBe(3);
    controls.dispose();
    t.dispose();
  });
});

describe('the centralized bound', () => {
  beforeAll(() => initBackend('wasm'));

  it('trains from the cut on the pooled batches, as by hand', async () => {
    const d = data(2, 'extreme');
    const ran = await runMethod('centralized', model, d, spec);
    expect(ran.final.head).toEqual((await byHand(pooledBatches(d.devices, 0, spec.seed, config.padTokenId), spec.cut)).head);
  });

  it("pools every device's rows into new mixed batches each round, each row once", () => {
    const d = data(2, 'extreme');
    // One class a device: any device's batch holds one label.
    for (const dev of d.devices) for (const b of dev.batches) expect(new Set(b.labels).size).toBe(1);
    const pooled = pooledBatches(d.devices, 0, spec.seed, config.padTokenId);
    expect(pooled.some((b) => new Set(b.labels).size === 2)).toBe(true);
    // Each row's real tokens (mask 1) and label, whatever the padding around them.
    const key = (bs: TokenBatch[]) =>
      bs
        .flatMap((b) =>
          Array.from(
            { length: b.rows },
            (_, r) => `${[...b.ids.subarray(r * b.seqLen, (r + 1) * b.seqLen)].filter((_, j) => b.mask[r * b.seqLen + j]).join(',')}:${b.labels[r]}`,
          ),
        )
        .sort()
        .join('|');
    expect(key(pooled)).toBe(key(d.devices.flatMap((dev) => dev.batches)));
    expect(pooledBatches(d.devices, 1, spec.seed, config.padTokenId)[0]!.ids).not.toEqual(pooled[0]!.ids);
    expect(pooledBatches(d.devices, 0, spec.seed, config.padTokenId)[0]!.ids).toEqual(pooled[0]!.ids);
  });
});
