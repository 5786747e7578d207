/**
 * An owner who drops a storage origin while a round runs on it: the device, deployed again with its state (R2 bucket,
 * Durable Objects) and the new STORAGE_ORIGINS, fetches and uploads nothing more there. Real parts: workerd, the
 * s3rver S3 server behind the fault proxy (which records every request), a tiny GPT-2's prefix.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../core/auth/signing.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { exportPrefix } from '../core/onnx/prefix.ts';
import { LEVELS } from '../core/privacy/defence.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { DeviceClient } from '../core/wire/device-client.ts';
import { buildRoundRequest } from '../gpu-server/rounds/request.ts';
import { startDevice, type RunningDevice } from '../infra/local/device.ts';
import { startFaultProxy, type FaultProxy } from '../infra/local/fault-proxy.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../infra/local/s3.ts';

const SECRET = 'round-secret';
const LABELS = ['a', 'b'];
const ROWS = 60;

let dir: string;
let s3: RunningS3;
let proxy: FaultProxy;
let device: RunningDevice | undefined;

beforeAll(async () => {
  dir = await localTempDir('test-origins');
  s3 = await startS3({ directory: join(dir, 's3') });
  proxy = await startFaultProxy(s3.config.endpoint!);
});

afterAll(async () => {
  await device?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The device as its owner deploys it, on one state folder whatever its origins. */
const deploy = (storageOrigins: string[]) =>
  startDevice({
    id: 'dev-o',
    ownerToken: 'owner',
    masterSecret: SECRET,
    storageOrigins,
    stateDir: join(dir, 'dev-o'),
    vars: { PIECE_BATCHES: '1', LABELS: LABELS.join(',') },
    defenceSecret: 'an owner secret of at least thirty-two characters',
  });

describe('a storage origin its owner drops mid-round', () => {
  it('gets no more fetches or uploads of the running round: the round fails naming the origin', async () => {
    const origin = new URL(proxy.url).origin;
    device = await deploy([origin]);
    const store = new S3Store(s3.config);
    const model = initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 64, numLabels: 2 }), { seed: 4, paramNoise: 0.1 });
    const onnx = exportPrefix(model, { cut: 2 });
    const sha = await sha256Hex(onnx);
    await store.put(keys.devicePrefix(sha, 2), onnx);
    await device.approve({ sha256: sha, model: 'tiny-gpt2', cut: 2, defence: LEVELS.off });
    await device.uploadShard(
      'diary',
      Array.from({ length: ROWS }, (_, i) => ({ text: `private diary entry ${i}`, label: LABELS[i % 2] })),
      LABELS,
    );
    const request = await buildRoundRequest(new S3Store({ ...s3.config, endpoint: proxy.url }), {
      runId: 'run-o',
      round: 0,
      deviceId: 'dev-o',
      modelSha256: sha,
      cut: 2,
      rows: ROWS,
      batchSize: 1,
      seqLen: 16,
      dtype: 'fp32',
      labels: LABELS,
      padTokenId: 50256,
    });
    await new DeviceClient(device.url, 'dev-o', SECRET).startRound(request);
    while ((await new DeviceClient(device.url, 'dev-o', SECRET).roundStatus('run-o', 0)).batchesDone < 2);

    // Deployed again without that origin: the round goes on from its state, as it would after any restart.
    await device.stop();
    const before = proxy.seen.length;
    device = await deploy(['https://storage.example']);
    const status = await new DeviceClient(device.url, 'dev-o', SECRET).waitForRound('run-o', 0);
    expect(status.state).toBe('failed');
    expect(status.error).toContain(`is on ${origin}, not on this device's storage origins (https://storage.example)`);
    // Before, the round went on to its end there: 58 more uploads after the origin was dropped.
    expect(proxy.seen.slice(before)).toEqual([]);
    expect(status.batchesDone).toBeLessThan(ROWS);
  });
});
