/**
 * Devices that die mid-round: each time, a fresh run (so its devices must compute) is triggered, one device is
 * stopped while it works and started again with its state, and the round must complete with every one of its
 * batches, the device resuming after its last stored batch.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceClient } from '../../core/wire/device-client.ts';
import { ServerClient } from '../../gpu-server/api/client.ts';
import type { RunningDevice } from '../../infra/local/device.ts';

export interface DeviceKillResult {
  deviceKills: number;
  roundsCompleted: number;
  /** Batches of the killed devices that were never trained. */
  batchesLost: number;
}

export async function deviceKillDrill(o: {
  server: ServerClient;
  devices: RunningDevice[];
  masterSecret: string;
  spec: (id: string) => Record<string, unknown>;
  kills: number;
  log: (m: string) => void;
}): Promise<DeviceKillResult> {
  let roundsCompleted = 0;
  let batchesLost = 0;
  for (let k = 0; k < o.kills; k++) {
    const runId = `device-kill-${k}`;
    const victim = o.devices[k % o.devices.length];
    await o.server.createRun({ ...o.spec(runId), training: { ...(o.spec(runId).training as object), rounds: 1 } });
    await o.server.trigger(runId);
    // Stop the device once it has stored a batch or two of its round, before it is done.
    const device = new DeviceClient(victim.url, victim.id, o.masterSecret);
    for (let i = 0; i < 400; i++) {
      const status = await device.roundStatus(runId, 0).catch(() => undefined);
      if (status && status.batchesDone >= 1) break;
      await sleep(10);
    }
    await victim.restart();
    o.log(`device kill ${k + 1}/${o.kills}: ${victim.id} stopped mid-round and started again`);
    const view = await o.server.waitIdle(runId, undefined, 100);
    const metrics = view.metrics[0];
    if (view.progress?.phase === 'done' && metrics) roundsCompleted++;
    const planned = (await o.server.round(runId, 0)).plan.devices[victim.id]?.batches ?? 0;
    const trained = metrics?.devices.find((d) => d.id === victim.id)?.batches ?? 0;
    batchesLost += Math.max(0, planned - trained);
  }
  return { deviceKills: o.kills, roundsCompleted, batchesLost };
}
