/**
 * Many devices uploading at once: N device workers, each asked for a round at the same moment, all writing their
 * activations and manifests into the same bucket. Every object each manifest lists must be there, whole.
 */
import { join } from 'node:path';
import { sha256Hex } from '../../core/auth/signing.ts';
import type { GPT2Model } from '../../core/model/gpt2/weights.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import { keys } from '../../core/storage/keys.ts';
import type { S3Config } from '../../core/storage/s3.ts';
import { S3Store } from '../../core/storage/s3.ts';
import { DeviceClient } from '../../core/wire/device-client.ts';
import type { ActivationManifest } from '../../core/wire/round.ts';
import { buildRoundRequest } from '../../gpu-server/rounds/request.ts';
import { startDevice, type RunningDevice } from '../../infra/local/device.ts';

export interface ConcurrentResult {
  devicesConcurrent: number;
  objectsExpected: number;
  objectsLost: number;
  wallSeconds: number;
}

export async function concurrentDrill(o: {
  storage: S3Config;
  masterSecret: string;
  model: GPT2Model;
  rows: Array<{ text: string; label: string }>;
  count: number;
  dir: string;
  log: (m: string) => void;
}): Promise<ConcurrentResult> {
  const store = new S3Store(o.storage);
  const cut = 2;
  const segment = await deviceSegment(o.model, cut, 'fp32');
  await store.put(keys.devicePrefix(segment.sha256, cut), segment.onnx);
  const devices: RunningDevice[] = [];
  // wrangler adds an exit listener per worker it starts.
  process.setMaxListeners(o.count + 16);
  try {
    for (let i = 0; i < o.count; i++) {
      const id = `crowd-${i}`;
      const d = await startDevice({
        id,
        ownerToken: `owner-${i}`,
        masterSecret: o.masterSecret,
        storageOrigins: [new URL(o.storage.endpoint!).origin],
        stateDir: join(o.dir, id),
        vars: { PIECE_BATCHES: '4' },
      });
      devices.push(d);
      await d.uploadShard('private', o.rows, ['0', '1']);
      await d.approve({ sha256: segment.sha256, model: 'drill-model', cut });
    }
    o.log(`${o.count} devices started; all asked for a round at once`);
    const started = performance.now();
    const batchSize = 8;
    const clients = devices.map((d) => new DeviceClient(d.url, d.id, o.masterSecret));
    await Promise.all(
      devices.map(async (d, i) =>
        clients[i].startRound(
          await buildRoundRequest(store, {
            runId: 'crowd',
            round: 0,
            deviceId: d.id,
            modelSha256: segment.sha256,
            cut,
            rows: o.rows.length,
            batchSize,
            seqLen: 24,
            dtype: 'fp32',
            labels: ['0', '1'],
            padTokenId: o.model.config.padTokenId,
          }),
        ),
      ),
    );
    await Promise.all(devices.map((d, i) => clients[i].waitForRound('crowd', 0, { timeoutMs: 600_000 })));
    const wallSeconds = Math.round((performance.now() - started) / 1000);
    o.log(`all ${o.count} rounds ended in ${wallSeconds} s; checking what storage holds`);
    // Every batch each device reported, and its manifest, must be in storage with the bytes the manifest lists.
    const perDevice = Math.ceil(o.rows.length / batchSize);
    let lost = 0;
    for (const d of devices) {
      const bytes = await store.get(keys.activationManifest('crowd', d.id, 0));
      if (!bytes) {
        lost += perDevice + 1;
        continue;
      }
      const manifest = JSON.parse(new TextDecoder().decode(bytes)) as ActivationManifest;
      lost += perDevice - manifest.batches.length;
      for (const b of manifest.batches) {
        const got = await store.get(keys.activationBatch('crowd', d.id, 0, b.index));
        if (!got || (await sha256Hex(got)) !== b.sha256) lost++;
      }
    }
    return { devicesConcurrent: o.count, objectsExpected: o.count * (perDevice + 1), objectsLost: lost, wallSeconds };
  } finally {
    await Promise.allSettled(devices.map((d) => d.stop()));
  }
}
