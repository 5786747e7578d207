import { mkdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevice, type RunningDevice } from '../../../infra/local/device.ts';

describe('device worker under workerd', () => {
  let device: RunningDevice;
  beforeAll(async () => {
    await mkdir('.local', { recursive: true });
    device = await startDevice({ env: 'device-eu-1' });
  });
  afterAll(() => device?.stop());

  it('answers health checks with its own device id', async () => {
    const res = await fetch(new URL('/health', device.url));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, device: 'device-eu-1', role: 'splitfrozen-device' });
  });

  it('answers 404 for an unknown path', async () => {
    expect((await fetch(new URL('/nope', device.url))).status).toBe(404);
  });
});
