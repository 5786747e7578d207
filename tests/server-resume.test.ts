/**
 * Kill -9 the training server in the middle of a round and start it again: it resumes the round from its checkpoint
 * and ends with exactly the adapter an uninterrupted run gets: no batch trained twice, none skipped, and GraB's
 * per-device updates (which order the next round) as they would have been.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_WEIGHTS } from '../core/peft/adapter.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { parseSafetensors } from '../core/tensors/safetensors.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { startServerProcess, type ServerProcess } from '../infra/local/server-process.ts';
import { startSystem, type TestSystem } from './system.ts';

let sys: TestSystem;
let server: ServerProcess | undefined;

/** The server as its own process, on the system's storage: killed with SIGKILL, then started again. */
async function startServer(): Promise<ServerClient> {
  // A checkpoint after every batch, so the kill lands between checkpoints of a round in progress.
  server = await startServerProcess({
    s3: sys.stack.s3.config,
    roundSecret: sys.stack.roundSecret,
    operatorToken: 'op',
    env: { SPLITFROZEN_BACKEND: 'wasm', SPLITFROZEN_CHECKPOINT_SECONDS: '0' },
  });
  return new ServerClient(server.url, 'op');
}

beforeAll(async () => {
  sys = await startSystem('test-resume', { rowsPerDevice: 96 });
});
afterAll(async () => {
  await server?.stop();
  await sys?.close();
});

describe('server restart', () => {
  it('resumes a round after a kill and ends with the adapter and the GraB updates of an uninterrupted run', async () => {
    const spec = sys.spec({ training: { batchSize: 4, seqLen: 24, dtype: 'fp32', seed: 1, rounds: 1 }, ordering: { kind: 'grab' } });
    let client = await startServer();

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
    await server!.kill();
    expect(trained).toBeLessThan(total);

    client = await startServer();
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
      return Object.fromEntries(
        [...newest.tensors].filter(([name]) => name.startsWith('update.')).map(([name, t]) => [name, Array.from(t.data as Float32Array)]),
      );
    };
    const [w, k] = [await updates('uninterrupted'), await updates('killed')];
    expect(Object.keys(w).sort()).toEqual(['update.device-1', 'update.device-2']);
    expect(k).toEqual(w);
  });
});
