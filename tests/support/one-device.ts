/** One device worker under workerd beside an S3 server, with the owner's shard loaded: the setting of a device test. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DeviceClient } from '../../core/wire/device-client.ts';
import { S3Store } from '../../core/storage/s3.ts';
import { startDevice, type DeviceOptions, type RunningDevice } from '../../infra/local/device.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../../infra/local/s3.ts';

export interface OneDevice {
  s3: RunningS3;
  store: S3Store;
  device: RunningDevice;
  /** The server's signed calls to the device. */
  client: DeviceClient;
  stop(): Promise<void>;
}

/** Starts the S3 server and device `id`, and has its owner upload `shard` (PUT /shards/<path and query>). */
export async function startOneDevice(
  id: string,
  masterSecret: string,
  shard: { path: string; body: string },
  options: Pick<DeviceOptions, 'vars' | 'defenceSecret'> = {},
): Promise<OneDevice> {
  const dir = await localTempDir(`test-${id}`);
  const s3 = await startS3({ directory: join(dir, 's3') });
  const device = await startDevice({
    id,
    ownerToken: 'owner',
    masterSecret,
    storageOrigins: [new URL(s3.config.endpoint!).origin],
    stateDir: join(dir, id),
    ...options,
  });
  const stop = async () => {
    await device.stop();
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  };
  const up = await fetch(new URL(`/shards/${shard.path}`, device.url), { method: 'PUT', headers: { authorization: 'Bearer owner' }, body: shard.body });
  if (up.status !== 201) {
    await stop();
    throw new Error(`uploading the shard: HTTP ${up.status} ${await up.text()}`);
  }
  return { s3, store: new S3Store(s3.config), device, client: new DeviceClient(device.url, id, masterSecret), stop };
}
