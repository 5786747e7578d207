/**
 * npm run bench:pipeline — one round of the same work done two ways on the real local system: pipelined (every device
 * starts at once; the server trains on device i while the later ones compute) and stop-and-wait (the next device is
 * asked only after the server has trained on the previous one). Wall time of each, the ratio, and the server's idle
 * fraction (time waiting for activations / training-phase wall time). JSON on stdout, progress on stderr.
 */
import { printReport } from './report.ts';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { writeModelFolder } from '../gpu-server/model/folder.ts';
import { startServer } from '../gpu-server/server.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { startStack } from '../infra/local/stack.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
process.env.WRANGLER_LOG ??= 'warn';
const log = (m: string) => process.stderr.write(`[bench:pipeline] ${m}\n`);
const DEVICES = 3;
const ROWS = 96;
const config = gpt2Config({ nLayer: 6, nEmbd: 192, nHead: 6, nPositions: 64 });

const dir = await localTempDir('bench-pipeline');
const stack = await startStack({ dir: join(dir, 'stack'), devices: DEVICES });
const modelDir = join(dir, 'model');
const model = initModel(config, { seed: 0 });
await writeModelFolder(modelDir, model);
await stack.approveSegments(model, 'bench', [2, 3, 4]);
const rows = syntheticSentiment(DEVICES * ROWS, 1);
for (const [i, d] of stack.devices.entries()) {
  await d.uploadShard('data', rows.slice(i * ROWS, (i + 1) * ROWS));
}

const results: Record<string, { wallMs: number; serverTrainMs: number; serverIdleMs: number; idleFraction: number; steps: number }> = {};
try {
  // The first round warms up what each process compiles once (onnxruntime-web in every device isolate, TF.js kernels);
  // then each schedule runs twice, alternating, and the faster of its two runs counts.
  for (const [n, schedule] of (['warmup', 'pipelined', 'stop-and-wait', 'pipelined', 'stop-and-wait'] as const).entries()) {
    log(`${schedule}: ${DEVICES} devices x ${ROWS} rows, cuts 2/3/4 of a 6-block model (n_embd ${config.nEmbd})`);
    const server = await startServer({ host: '127.0.0.1', port: 0, operatorToken: 't', roundSecret: stack.roundSecret, s3: stack.s3.config, backend: 'auto', log: () => {}, schedule: schedule === 'warmup' ? 'pipelined' : schedule });
    try {
      const client = new ServerClient(server.url, 't');
      const id = `bench-${n}-${schedule}`;
      await client.createRun({
        id,
        model: modelDir,
        task: { labels: ['0', '1'] },
        devices: stack.devices.map((d, i) => ({ id: d.id, url: d.url.href, cut: 2 + i })),
        lora: { rank: 8, targets: ['attn.c_attn'] },
        training: { batchSize: 16, seqLen: 48, seed: 0, rounds: 1 },
      });
      const started = performance.now();
      await client.trigger(id);
      const view = await client.waitIdle(id, undefined, 50);
      const wallMs = performance.now() - started;
      const m = view.metrics[0];
      if (!m) throw new Error(`${schedule} round failed: ${view.progress?.error}`);
      if (schedule === 'warmup' || (results[schedule] && results[schedule].wallMs < wallMs)) continue;
      results[schedule] = { wallMs: Math.round(wallMs), serverTrainMs: m.serverTrainMs, serverIdleMs: m.serverIdleMs, idleFraction: Number((m.serverIdleMs / (m.serverIdleMs + m.serverTrainMs)).toFixed(3)), steps: m.steps };
    } finally {
      await server.close();
    }
  }
} finally {
  await stack.stop();
  await rm(dir, { recursive: true, force: true });
}
printReport('pipeline', {
  work: { devices: DEVICES, rowsPerDevice: ROWS, batchSize: 16, seqLen: 48, model: { nLayer: config.nLayer, nEmbd: config.nEmbd }, cuts: [2, 3, 4] },
  ...results,
  ratioStopAndWaitToPipelined: Number((results['stop-and-wait'].wallMs / results.pipelined.wallMs).toFixed(3)),
  note: `the device workers and the server share this machine's ${cpus().length} cores, so overlapping them saves wall time only where a core would otherwise be idle; on separate devices the overlap is the whole of the devices' compute`,
});
