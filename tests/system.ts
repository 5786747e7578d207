/** The whole local system for end-to-end tests: S3 server, device workers with private shards, a small GPT-2. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { writeModelFolder } from '../gpu-server/model-folder/folder.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { startStack, type RunningStack } from '../infra/local/stack.ts';

export interface TestSystem {
  dir: string;
  stack: RunningStack;
  modelDir: string;
  evalRows: Array<{ text: string; label: string }>;
  /** A run spec for this system; fields given replace the defaults. */
  spec(overrides?: Record<string, unknown>): Record<string, unknown>;
  close(): Promise<void>;
}

export async function startSystem(name: string, { devices = 2, rowsPerDevice = 48, evalCount = 32 } = {}): Promise<TestSystem> {
  const dir = await localTempDir(name);
  // Owners here allow cut 1 (MIN_CUT, default 2), so a 3-block model still gives devices different cuts.
  const stack = await startStack({ dir: join(dir, 'stack'), devices, deviceVars: { PIECE_BATCHES: '4', MIN_CUT: '1' } });
  const modelDir = join(dir, 'tiny-gpt2');
  const model = initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 0 });
  await writeModelFolder(modelDir, model);
  await stack.approveSegments(model, 'tiny-gpt2', [1, 2]);
  const rows = syntheticSentiment(devices * rowsPerDevice + evalCount, 3);
  const evalRows = rows.slice(0, evalCount);
  for (const [i, d] of stack.devices.entries()) {
    await d.uploadShard('data', rows.slice(evalCount + i * rowsPerDevice, evalCount + (i + 1) * rowsPerDevice), ['0', '1']);
  }
  return {
    dir,
    stack,
    modelDir,
    evalRows,
    spec: (overrides = {}) => ({
      model: modelDir,
      task: { labels: ['0', '1'], evalRows },
      devices: stack.devices.map((d, i) => ({ id: d.id, url: d.url.href, profile: { memoryMB: 256, gflops: 10, maxBatchSeconds: 10 }, cut: i + 1 })),
      ordering: { kind: 'random-reshuffle' },
      lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['attn.c_attn'] },
      optimizer: { lr: 0.01, warmupSteps: 2, schedule: 'linear' },
      training: { batchSize: 8, seqLen: 24, dtype: 'fp32', seed: 1, rounds: 2 },
      ...overrides,
    }),
    close: async () => {
      await stack.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
