/**
 * The whole local system's infrastructure in one call: the embedded S3 server and N device workers under workerd,
 * each with its own id, secrets and private state, all on 127.0.0.1 and under one project-local folder.
 * `stop()` ends every part; nothing keeps running.
 */
import { join, resolve } from 'node:path';
import type { Model } from '../../core/model/family.ts';
import type { PrefixWeights } from '../../core/onnx/prefix.ts';
import { startDevice, type DeviceOptions, type RunningDevice } from './device.ts';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { startS3, type RunningS3 } from './s3.ts';

export interface StackOptions {
  /** Everything the stack stores lives here. */
  dir?: string;
  devices: number;
  /** The training server's master secret: each device's own secret is derived from it. */
  roundSecret?: string;
  s3Port?: number;
  deviceVars?: DeviceOptions['vars'];
  /** Put a fault proxy in front of the S3 server (drills): devices may use both origins; `storage` is the proxy's. */
  faultProxy?: boolean;
}

export interface RunningStack {
  s3: RunningS3;
  /** Where the training server should connect: the S3 server, or the fault proxy in front of it. */
  storage: RunningS3['config'];
  proxy?: FaultProxy;
  devices: RunningDevice[];
  roundSecret: string;
  /** Every device's owner approves the segments of these cuts of `model` (RunningDevice.approveSegment). */
  approveSegments(
    model: Model,
    modelName: string,
    cuts: number[],
    weights?: PrefixWeights,
    also?: Parameters<RunningDevice['approveSegment']>[4],
  ): Promise<void>;
  stop(): Promise<void>;
}

function token(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function startStack({
  dir = '.local/stack',
  devices: count,
  roundSecret = token(),
  s3Port = 0,
  deviceVars,
  faultProxy,
}: StackOptions): Promise<RunningStack> {
  const root = resolve(dir);
  const started: Array<{ stop(): Promise<void> }> = [];
  const stop = async () => {
    // Stop in reverse order; one part failing to stop does not keep the others running.
    const results = await Promise.allSettled(started.reverse().map((p) => p.stop()));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw new Error(`stopping the stack: ${failed.map((f) => String((f as PromiseRejectedResult).reason)).join('; ')}`);
  };
  try {
    const s3 = await startS3({ directory: join(root, 's3'), port: s3Port });
    started.push(s3);
    const proxy = faultProxy ? await startFaultProxy(s3.config.endpoint!) : undefined;
    if (proxy) started.push({ stop: () => proxy.close() });
    const storageOrigins = [s3.config.endpoint!, ...(proxy ? [proxy.url] : [])].map((u) => new URL(u).origin);
    const devices: RunningDevice[] = [];
    for (let i = 0; i < count; i++) {
      const id = `device-${i + 1}`;
      const device = await startDevice({
        id,
        ownerToken: token(),
        masterSecret: roundSecret,
        storageOrigins,
        stateDir: join(root, 'devices', id),
        vars: deviceVars,
      });
      started.push(device);
      devices.push(device);
    }
    const approveSegments: RunningStack['approveSegments'] = async (model, modelName, cuts, weights = 'fp32', also) => {
      for (const d of devices) for (const cut of cuts) await d.approveSegment(model, modelName, cut, weights, also);
    };
    const storage = proxy ? { ...s3.config, endpoint: proxy.url } : s3.config;
    return { s3, storage, proxy, devices, roundSecret, approveSegments, stop };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}
