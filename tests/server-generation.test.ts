/**
 * A generation run end to end: a tiny Llama with Llama 3's tokenizer, two device workers under workerd holding
 * generation shards, the real S3 server, and the training server driven over HTTP. Rounds must train on the
 * completions (loss falls), evaluate by generating, and write a CAUSAL_LM PEFT adapter.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../core/auth/signing.ts';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, parseAdapter } from '../core/peft/adapter.ts';
import { ApiError, ServerClient } from '../gpu-server/api/client.ts';
import { readTokenizer, writeTokenizer, writeModelFolder } from '../gpu-server/model-folder/folder.ts';
import { fewshotContexts } from '../core/data/fewshot.ts';
import { gsm8kExample, promptIds } from '../core/data/generation.ts';
import { startServer, type RunningServer } from '../gpu-server/server.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { startStack, type RunningStack } from '../infra/local/stack.ts';

const model = initLlama(llamaConfig({ nLayer: 3, nEmbd: 32, nHead: 4, nKvHead: 2, headDim: 8, nInner: 48, nPositions: 128 }), { seed: 1 });
/** Small sums written the way GSM8K answers are. */
const problem = (i: number) => ({
  question: `What is ${i} plus ${i + 3}?`,
  answer: `${i} + ${i + 3} = <<${i}+${i + 3}=${2 * i + 3}>>${2 * i + 3}\n#### ${2 * i + 3}`,
});

let dir: string;
let stack: RunningStack;
let server: RunningServer;
let client: ServerClient;
let modelDir: string;
let evalPath: string;

beforeAll(async () => {
  dir = await localTempDir('test-generation-run');
  stack = await startStack({ dir: join(dir, 'stack'), devices: 2, deviceVars: { PIECE_BATCHES: '4', MIN_CUT: '1' } });
  modelDir = join(dir, 'tiny-llama');
  await writeModelFolder(modelDir, model);
  await writeTokenizer(modelDir, model.config);
  const tokenizer = await sha256Hex(await readFile(join(modelDir, 'tokenizer.json')));
  await stack.approveSegments(model, 'tiny-llama', [1, 2], 'int8', { tokenizer, generation: true, seqLen: 48 });
  for (const [i, d] of stack.devices.entries())
    await d.uploadShard(
      'sums',
      Array.from({ length: 12 }, (_, k) => problem(20 * i + k)),
      'generation',
    );
  evalPath = join(dir, 'heldout.jsonl');
  await writeFile(evalPath, Array.from({ length: 4 }, (_, k) => JSON.stringify(problem(90 + k))).join('\n'));
  server = await startServer({
    host: '127.0.0.1',
    port: 0,
    operatorToken: 'op',
    roundSecret: stack.roundSecret,
    s3: stack.s3.config,
    backend: 'wasm',
    dataDirs: [dir],
    log: () => {},
  });
  client = new ServerClient(server.url, 'op');
});

afterAll(async () => {
  await server?.close();
  await stack?.stop();
});

const spec = (over: Record<string, unknown> = {}) => ({
  model: modelDir,
  task: { kind: 'generation', eval: { path: evalPath }, generate: { maxNewTokens: 6, limit: 2, fewshot: { count: 2 } } },
  devices: stack.devices.map((d, i) => ({
    id: d.id,
    url: d.url.href,
    profile: { memoryMB: 256, gflops: 10, maxBatchSeconds: 10, weights: 'int8' },
    cut: i + 1,
  })),
  ordering: { kind: 'fixed', order: stack.devices.map((d) => d.id) },
  lora: { rank: 4, alpha: 8, dropout: 0, targets: ['self_attn.q_proj', 'self_attn.v_proj', 'self_attn.o_proj'] },
  optimizer: { lr: 0.05, warmupSteps: 0, schedule: 'constant' },
  training: { batchSize: 4, seqLen: 48, dtype: 'fp32', seed: 0, rounds: 3 },
  ...over,
});

describe('a generation run over HTTP', () => {
  it('refuses what a generation run cannot be, naming the field', async () => {
    const message = (p: Promise<unknown>) =>
      p.then(
        () => '',
        (e: ApiError) => e.message,
      );
    expect(await message(client.createRun(spec({ lora: { rank: 4, targets: ['attn.c_attn'] } })))).toMatch(
      /HTTP 400: lora.targets: 'attn.c_attn' is not a Llama block linear; use some of self_attn.q_proj, /,
    );
    expect(await message(client.createRun(spec({ task: { kind: 'generation', labels: ['a', 'b'] } })))).toMatch(
      /HTTP 400: field 'task.labels': must be empty for a generation task/,
    );
    expect(await message(client.createRun(spec({ task: { kind: 'generation', eval: { path: evalPath, format: 'tsv' } } })))).toMatch(
      /HTTP 400: field 'task.eval.format': must be jsonl/,
    );
    // The harness's 5 shots, drawn from the 4 held-out rows themselves (each row's own left out): too few.
    expect(await message(client.createRun(spec({ task: { kind: 'generation', eval: { path: evalPath } } })))).toMatch(
      /HTTP 400: task.generate.fewshot: 5 few-shot examples need a pool of at least 6 rows; it has 4/,
    );
  });

  it('trains on the completions round after round, evaluates by generating, and writes a CAUSAL_LM adapter', async () => {
    const record = await client.createRun(spec());
    expect(record.cuts).toMatchObject({ 'device-1': { cut: 1 }, 'device-2': { cut: 2 } });
    for (let r = 0; r < 3; r++) {
      await client.trigger(record.id);
      const view = await client.waitIdle(record.id);
      expect(view.progress?.phase, view.progress?.error).toBe('done');
    }
    const metrics = await client.metrics(record.id);
    expect(
      metrics.map((m) => m.steps),
      JSON.stringify(metrics[0]!.devices),
    ).toEqual([6, 6, 6]);
    // A random model's tied head starts near uniform over 128,256 tokens (ln = 11.76) and HF's init keeps its logits
    // small: the loss moves slowly (seen 11.67 -> 11.64). Without gradients it would not move at all: same data,
    // same order every round.
    expect(metrics[2]!.trainLoss, JSON.stringify(metrics.map((m) => [m.trainLoss, m.evalLoss]))).toBeLessThan(metrics[0]!.trainLoss - 0.02);
    expect(metrics[2]!.evalLoss).toBeLessThan(Math.log(128256) + 0.5);
    const samples = metrics[2]!.samples!;
    expect(samples.map((s) => s.prompt)).toEqual([0, 1].map((k) => `Question: ${problem(90 + k).question}\nAnswer:`));
    expect(samples.map((s) => s.expected)).toEqual(['183', '185']);
    // Each prompt came after two shots drawn as the harness draws them (the held-out file is the pool, a row never
    // its own shot), cut at the start to leave maxNewTokens of the model's 128 positions.
    const tokenizer = await readTokenizer(modelDir, model.config);
    const held = Array.from({ length: 4 }, (_, k) => gsm8kExample(problem(90 + k).question, problem(90 + k).answer));
    const contexts = fewshotContexts(held.slice(0, 2), held, 2);
    expect(samples.map((s) => s.promptTokens)).toEqual(held.slice(0, 2).map((r, i) => Math.min(promptIds(tokenizer, contexts[i] + r.prompt).length, 128 - 6)));
    expect(samples.every((s) => s.promptTokens! > promptIds(tokenizer, s.prompt).length)).toBe(true);
    expect(metrics[2]!.evalExactMatch?.shots).toBe(2);
    expect(typeof samples[0]!.generated).toBe('string');
    expect(metrics[2]!.evalAccuracy).toBe(samples.filter((s) => s.correct).length / 2);
    const files = {
      [ADAPTER_CONFIG]: await client.adapterFile(record.id, 'latest', ADAPTER_CONFIG),
      [ADAPTER_WEIGHTS]: await client.adapterFile(record.id, 'latest', ADAPTER_WEIGHTS),
    };
    expect(JSON.parse(new TextDecoder().decode(files[ADAPTER_CONFIG]))).toMatchObject({
      task_type: 'CAUSAL_LM',
      fan_in_fan_out: false,
      target_modules: ['q_proj', 'v_proj', 'o_proj'],
      layers_to_transform: [2],
    });
    expect([...parseAdapter(files, model.config).a.keys()]).toEqual(['layers.2.self_attn.q_proj', 'layers.2.self_attn.v_proj', 'layers.2.self_attn.o_proj']);
  });
});
