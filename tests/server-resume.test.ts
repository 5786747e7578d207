/**
 * Kill -9 the training server in the middle of a round and start it again: it resumes the round from its checkpoint
 * and ends with exactly the adapter an uninterrupted run gets: no batch trained twice, none skipped, and GraB's
 * per-device updates (which order the next round) as they would have been.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_WEIGHTS } from '../core/peft/adapter.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { parseSafetensors } from '../core/tensors/safetensors.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { stopChild } from '../infra/local/s3.ts';
import { startSystem, type TestSystem } from './system.ts';

let sys: TestSystem;
let child: ChildProcess | undefined;

/** The server as its own process (npm run server's entry point), on the system's storage. */
async function startServerProcess(): Promise<ServerClient> {
  const { config } = sys.stack.s3;
  child = spawn(process.execPath, ['--import', 'tsx', 'gpu-server/main.ts'], {
    env: {
      ...process.env,
      SPLITFROZEN_PORT: '0',
      SPLITFROZEN_OPERATOR_TOKEN: 'op',
      SPLITFROZEN_ROUND_SECRET: sys.stack.roundSecret,
      SPLITFROZEN_S3_ENDPOINT: config.endpoint,
      SPLITFROZEN_S3_BUCKET: config.bucket,
      SPLITFROZEN_S3_ACCESS_KEY_ID: config.accessKeyId,
      SPLITFROZEN_S3_SECRET_ACCESS_KEY: config.secretAccessKey,
      SPLITFROZEN_BACKEND: 'wasm',
      // A checkpoint after every batch, so the kill lands between checkpoints of a round in progress.
      SPLITFROZEN_CHECKPOINT_SECONDS: '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child!.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: child!.stdout! }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  return new ServerClient(url, 'op');
}

beforeAll(async () => {
  sys = await startSystem('test-resume', { rowsPerDevice: 96 });
});
afterAll(async () => {
  if (child) await stopChild(child);
  await sys?.close();
});

describe('server restart', () => {
  it('resumes a round after a kill and ends with the adapter and the GraB updates of an uninterrupted run', async () => {
    const spec = sys.spec({ training: { batchSize: 4, seqLen: 24, dtype: 'fp32', seed: 1, rounds: 1 }, ordering: { kind: 'grab' } });
    let client = await startServerProcess();

    await client.createRun({ ...spec, id: 'uninterrupted' });
    await client.trigger('uninterrupted');
    const whole = await client.waitIdle('uninterrupted', undefined, 100);
    expect(whole.progress?.phase).toBe('done');
    const total = whole.metrics[0].steps;
    expect(total).toBe(2 * 24);

    await client.createRun({ ...spec, id: 'killed' });
    await client.trigger('killed');
    // Into the second device of round 0: the first one's GraB update was measured before the kill.
    let trained = 0;
    while (trained < 30) {
      trained = (await client.run('killed')).progress?.batchesTrained ?? 0;
      await new Promise((r) => setTimeout(r, 20));
    }
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    expect(trained).toBeLessThan(total);

    client = await startServerProcess();
    const resumed = await client.waitIdle('killed', undefined, 100);
    expect(resumed.progress?.phase, resumed.progress?.error).toBe('done');
    expect(resumed.metrics).toHaveLength(1);
    expect(resumed.metrics[0].steps).toBe(total);
    expect(resumed.metrics[0].trainLoss).toBe(whole.metrics[0].trainLoss);
    const a = await client.adapterFile('uninterrupted', 0, ADAPTER_WEIGHTS);
    const b = await client.adapterFile('killed', 0, ADAPTER_WEIGHTS);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);

    // GraB orders the next round by each device's update in this one: one measured before the kill, one across it.
    const updates = async (runId: string) => {
      const store = new S3Store(sys.stack.s3.config);
      const files = await Promise.all([0, 1].map(async (slot) => parseSafetensors((await store.get(keys.checkpoint(runId, slot)))!)));
      const newest = files.reduce((a, b) => (JSON.parse(b.metadata.meta).seq > JSON.parse(a.metadata.meta).seq ? b : a));
      return Object.fromEntries([...newest.tensors].filter(([name]) => name.startsWith('update.')).map(([name, t]) => [name, Array.from(t.data as Float32Array)]));
    };
    const [w, k] = [await updates('uninterrupted'), await updates('killed')];
    expect(Object.keys(w).sort()).toEqual(['update.device-1', 'update.device-2']);
    expect(k).toEqual(w);
  });
});
