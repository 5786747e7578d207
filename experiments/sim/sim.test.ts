import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { flopsPerToken } from '../../core/flops/flops.ts';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import { Trainer } from '../../gpu-server/train/trainer.ts';
import { countMatmulFlops } from './count.ts';
import { roundBatches, runMethod } from './methods.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { tokenBatches } from './setup.ts';
import { config, data, handTrainer, model, rows, spec, stepByHand } from './tiny.fixture.ts';

describe('simulation methods, one round on a tiny model', () => {
  beforeAll(() => initBackend('wasm'));

  it('FedLoRA with one device equals plain local LoRA training', async () => {
    const d = data(1);
    const fed = await runMethod('fedlora', model, d, { ...spec, ordering: { kind: 'fixed', order: ['device-0'] } });
    // The same training by hand: LoRA on the whole model, the device's batches from the embeddings up.
    const t = handTrainer(0);
    for (const b of roundBatches(d.devices[0]!, 0, spec.seed)) await stepByHand(t, b, 0);
    const mine = t.exportAdapter();
    expect(fed.final.b.get('h.2.attn.c_attn')).toEqual(mine.b.get('h.2.attn.c_attn'));
    expect(fed.final.head).toEqual(mine.head);
    t.dispose();
  });

  it("SplitLoRA's devices receive a gradient at the cut and run backward; SplitFrozen's never do", async () => {
    const d = data(2);
    const splitlora = await runMethod('splitlora', model, d, spec);
    const splitfrozen = await runMethod('splitfrozen', model, d, spec);
    expect(splitlora.cutGradientNorm).toBeGreaterThan(0);
    expect(splitlora.bytesDownPerDevice).toBeGreaterThan(0);
    expect(splitlora.deviceBackwardFlops).toBeGreaterThan(0);
    // The device copies of SplitLoRA's adapters below the cut moved; SplitFrozen has none below the cut.
    expect(splitlora.final.b.get('h.0.attn.c_attn')!.some((x) => x !== 0)).toBe(true);
    expect(splitfrozen.final.a.has('h.0.attn.c_attn')).toBe(false);
    expect(splitfrozen.cutGradientNorm).toBe(0);
    expect(splitfrozen.bytesDownPerDevice).toBe(0);
    expect(splitfrozen.deviceBackwardFlops).toBe(0);
    expect(splitfrozen.deviceForwardFlops).toBeLessThan(splitlora.deviceForwardFlops);
    // SplitLoRA's device adapters change the hidden states at the cut after its first step, so the server's differ.
    expect(splitlora.final.b.get('h.2.attn.c_attn')).not.toEqual(splitfrozen.final.b.get('h.2.attn.c_attn'));
  });

  it('SplitLoRA runs its devices in parallel, each on its own copy below the cut, and ends its round on their average', async () => {
    const d = data(2);
    const ran = await runMethod('splitlora', model, d, { ...spec, avgEvery: 1000 });
    // The same round by hand: step i of each device in the round's order, then step i + 1; each device on its own copy
    // of the adapters below the cut (all from the round's start), the server's part carried on from batch to batch;
    // at the end the copies averaged by their rows.
    const t = handTrainer(0);
    const isBelow = (k: string) => Number(k.split('.')[1]) < spec.cut;
    const part = () => {
      const w = t.exportAdapter();
      return { a: new Map([...w.a].filter(([k]) => isBelow(k))), b: new Map([...w.b].filter(([k]) => isBelow(k))) };
    };
    const load = (p: ReturnType<typeof part>) => {
      const w = t.exportAdapter();
      t.loadAdapter({ ...w, a: new Map([...w.a, ...p.a]), b: new Map([...w.b, ...p.b]) });
    };
    const copies = d.devices.map(part);
    const lists = d.devices.map((dev) => roundBatches(dev, 0, spec.seed));
    for (let i = 0; i < Math.max(...lists.map((l) => l.length)); i++)
      for (const [k, list] of lists.entries()) {
        if (!list[i]) continue;
        load(copies[k]!);
        await stepByHand(t, list[i]!, 0);
        copies[k] = part();
      }
    const rows = d.devices.map((dev) => dev.rows);
    const key = 'h.0.attn.c_attn';
    const want = copies[0]!.b.get(key)!.map((x, i) => (x * rows[0]! + copies[1]!.b.get(key)![i]! * rows[1]!) / (rows[0]! + rows[1]!));
    const got = ran.final.b.get(key)!;
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 6);
    // The server's part is the one trained batch after batch.
    expect(ran.final.b.get('h.2.attn.c_attn')).toEqual(t.exportAdapter().b.get('h.2.attn.c_attn'));
    t.dispose();
  });

  it('SplitFrozen interleaved trains one batch of each device in turn (the same steps by hand), by-device device after device', async () => {
    const d = data(3);
    const order = ['device-2', 'device-0', 'device-1'];
    const s = { ...spec, ordering: { kind: 'fixed' as const, order } };
    const byHand = async (turns: Array<[number, number]>) => {
      const t = handTrainer(spec.cut);
      const lists = d.devices.map((dev) => roundBatches(dev, 0, spec.seed));
      for (const [device, i] of turns) await stepByHand(t, lists[device]![i]!, spec.cut);
      const w = t.exportAdapter();
      t.dispose();
      return w;
    };
    const devices = order.map((id) => Number(id.split('-')[1]));
    const counts = d.devices.map((dev) => dev.batches.length);
    const rounds = Math.max(...counts);
    const interleavedTurns = Array.from({ length: rounds }, (_, i) => devices.filter((k) => i < counts[k]!).map((k) => [k, i] as [number, number])).flat();
    const byDeviceTurns = devices.flatMap((k) => Array.from({ length: counts[k]! }, (_, i) => [k, i] as [number, number]));
    const interleaved = await runMethod('splitfrozen', model, d, { ...s, batchOrder: 'interleaved' });
    const byDevice = await runMethod('splitfrozen', model, d, s);
    expect(interleaved.final.head).toEqual((await byHand(interleavedTurns)).head);
    expect(byDevice.final.head).toEqual((await byHand(byDeviceTurns)).head);
    expect(interleaved.final.head).not.toEqual(byDevice.final.head);
    await expect(runMethod('splitfrozen', model, d, { ...s, ordering: { kind: 'grab' }, batchOrder: 'interleaved' })).rejects.toThrow(/GraB/);
  });

  it('SplitFrozen learns the generated task: train loss falls every round, held-out accuracy ends above the majority class, the same seed gives the same run', async () => {
    const d = data(2);
    const run = await runMethod('splitfrozen', model, d, { ...spec, rounds: 3 });
    const trainLoss = run.rounds.map((r) => r.trainLoss);
    for (let i = 1; i < trainLoss.length; i++) expect(trainLoss[i]).toBeLessThan(trainLoss[i - 1]);
    const labels = d.evaluation.flatMap((b) => [...b.labels]);
    const majority = Math.max(...[0, 1].map((c) => labels.filter((l) => l === c).length)) / labels.length;
    expect(run.rounds.at(-1)!.accuracy).toBeGreaterThan(majority + 0.05);
    const again = await runMethod('splitfrozen', model, d, { ...spec, rounds: 3 });
    expect(again.rounds.map(({ wallMs: _, ...r }) => r)).toEqual(run.rounds.map(({ wallMs: _, ...r }) => r));
    expect(again.final.b).toEqual(run.final.b);
  });

  it('the FLOP accounting equals a count of the matrix multiplications a training step runs', async () => {
    const t = new Trainer(model, { lora: spec.lora, optimizer: {}, schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' }, seed: 0 }, 1);
    const [b] = tokenBatches(new GPT2Tokenizer(), rows.slice(0, 8), 8, 16, config.padTokenId);
    const hidden = tf.tidy(
      () => t.net.hidden(tf.tensor2d(b.ids, [b.rows, b.seqLen], 'int32'), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32'), 1).dataSync() as Float32Array,
    );
    const counted = await countMatmulFlops(() => t.trainStep({ cut: 1, rows: b.rows, seqLen: b.seqLen, hidden, mask: b.mask, labels: b.labels }));
    const f = flopsPerToken({ config, seqLen: b.seqLen, cut: 1, lora: { rank: 4, targets: ['attn.c_attn'], from: 1 } });
    const accounted = (f.server.forward + f.server.backward) * b.rows * b.seqLen;
    expect(counted / accounted).toBeCloseTo(1, 6);
    t.dispose();
  });
});
