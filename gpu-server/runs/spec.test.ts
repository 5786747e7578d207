import { describe, expect, it } from 'vitest';
import { parseRunSpec } from './spec.ts';

const base = { model: 'm', task: { labels: ['0', '1'] }, devices: [{ id: 'd1', url: 'http://d1' }] };
const refusal = (v: unknown) => {
  try {
    parseRunSpec(v);
    return 'accepted';
  } catch (e) {
    return (e as Error).message;
  }
};

describe('run spec', () => {
  it('fills in every default, the LoRA alpha from the rank and the eval format from the file name', () => {
    const s = parseRunSpec({ ...base, lora: { rank: 4 }, task: { labels: ['0', '1'], eval: { path: 'dev.tsv' } } });
    expect(s.lora).toEqual({ rank: 4, alpha: 8, dropout: 0.05 });
    expect(s.task).toEqual({
      kind: 'classification',
      labels: ['0', '1'],
      eval: { path: 'dev.tsv', format: 'tsv' },
      generate: { maxNewTokens: 96, limit: 8, fewshot: { count: 5, seed: 1234 } },
    });
    expect(s.devices[0].profile).toEqual({ memoryMB: 128, gflops: 10, maxBatchSeconds: 30, weights: 'fp32' });
    expect([s.ordering, s.optimizer, s.training]).toEqual([
      { kind: 'random-reshuffle' },
      { lr: 2e-3, weightDecay: 0.01, clipNorm: 1, warmupSteps: 0, schedule: 'linear' },
      { batchSize: 16, seqLen: 64, dtype: 'fp32', seed: 0, rounds: 3, batchOrder: 'by-device' },
    ]);
    expect(parseRunSpec({ ...base, task: { kind: 'generation', eval: { path: 'gsm8k.jsonl' } } }).task.eval?.format).toBe('jsonl');
  });

  it('refuses keys it does not know, naming the key most likely meant', () => {
    // Stripped silently before: the run trained on the defaults (fp32 where fp16 was asked).
    expect(refusal({ ...base, trainig: { dtype: 'fp16' } })).toBe("field 'trainig': unknown key; did you mean 'training'?");
    expect(refusal({ ...base, lora: { rnak: 4 } })).toBe("field 'lora.rnak': unknown key; did you mean 'rank'?");
    expect(refusal({ ...base, devices: [{ ...base.devices[0], profile: { memoryMb: 64 } }] })).toBe(
      "field 'devices[0].profile.memoryMb': unknown key; did you mean 'memoryMB'?",
    );
    expect(refusal({ ...base, task: { labels: ['0', '1'], generate: { fewshot: { shots: 3 } } } })).toBe(
      "field 'task.generate.fewshot.shots': unknown key; known keys here: count, path, seed",
    );
    expect(refusal({ ...base, ordering: { kind: 'fixed', order: ['d1'], oder: [] } })).toBe("field 'ordering.oder': unknown key; did you mean 'order'?");
  });

  it('refuses each wrong field by name, with what it got', () => {
    const cases: Array<[unknown, string]> = [
      [{ ...base, model: '' }, 'field \'model\': must be the path of a model folder (GPT-2 or Llama) on the server, got ""'],
      [{ ...base, devices: [] }, "field 'devices': must list at least one device, got []"],
      [{ ...base, devices: [base.devices[0], base.devices[0]] }, "field 'devices': device 'd1' is listed twice"],
      [
        { ...base, devices: [{ id: 'd/1', url: 'http://x' }] },
        "field 'devices[0].id': device 'd/1' is not a valid id: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
      ],
      [
        { ...base, devices: [{ id: 'd1', url: 'http://x', profile: { weights: 'int4' } }] },
        'field \'devices[0].profile.weights\': Invalid option: expected one of "fp32"|"int8", got "int4"',
      ],
      [{ ...base, task: { labels: ['0'] } }, "field 'task.labels': must list at least two distinct labels"],
      [{ ...base, task: { kind: 'generation', labels: ['a', 'b'] } }, "field 'task.labels': must be empty for a generation task"],
      [{ ...base, task: { kind: 'generation', eval: { path: 'x', format: 'tsv' } } }, "field 'task.eval.format': must be jsonl for a generation task"],
      [{ ...base, task: { labels: ['0', '1'], evalRows: [{ text: 'a', label: '2' }] } }, "field 'task.evalRows[0].label': '2' is not one of task.labels"],
      [{ ...base, ordering: { kind: 'fixed' } }, "field 'ordering.order': Invalid input: expected array, received undefined"],
      [{ ...base, ordering: { kind: 'grab', order: ['ghost'] } }, "field 'ordering.order': unknown device 'ghost'"],
      [
        { ...base, ordering: { kind: 'grab' }, training: { batchOrder: 'interleaved' } },
        "field 'training.batchOrder': cannot be interleaved with GraB, which orders the devices by each one's own update to the adapters: use by-device",
      ],
      [{ ...base, lora: { dropout: 1 } }, "field 'lora.dropout': must be in [0, 1), got 1"],
      [{ ...base, optimizer: { schedule: 'step' } }, 'field \'optimizer.schedule\': Invalid option: expected one of "constant"|"linear"|"cosine", got "step"'],
      [{ ...base, training: { rounds: 1.5 } }, "field 'training.rounds': must be a positive integer, got 1.5"],
      [[], "field 'run': Invalid input: expected object, received array, got []"],
    ];
    for (const [spec, message] of cases) expect(refusal(spec)).toBe(message);
  });
});
