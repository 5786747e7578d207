/** What a round works with: the server's options, and the calls it makes to a run's devices. */
import type { ObjectStore } from '../../core/storage/store.ts';
import { DeviceClient } from '../../core/wire/device-client.ts';
import type { RunState } from '../runs/state.ts';
import { DEFAULT_PREFETCH } from './feed.ts';
import { NotFound } from '../runs/errors.ts';
import type { DeviceSpec } from '../runs/spec.ts';
import type { OrtOptions } from '../backends/onnxruntime/blocks.ts';

/** The calls a round makes to a device (DeviceClient over HTTP; tests may give an in-process one). */
export type DeviceApi = Pick<DeviceClient, 'shards' | 'policy' | 'startRound' | 'roundStatus'>;

export interface RoundOptions {
  store: ObjectStore;
  /** Shared with the device workers: signs round requests. */
  roundSecret: string;
  log?: (message: string) => void;
  prefetch?: number;
  pollMs?: number;
  /** Presigned URL lifetime. */
  urlSeconds?: number;
  /**
   * 'pipelined' (the default) asks every device to start at once and trains on each while the later ones compute;
   * 'stop-and-wait' asks the next device only after training on the previous one (the baseline of bench:pipeline).
   */
  schedule?: 'pipelined' | 'stop-and-wait';
  /** Seconds between checkpoints within a device's batches (default 30; 0: after every batch). */
  checkpointSeconds?: number;
  /** Folders a run spec may name files in (model, evaluation file); default: the working directory. */
  dataDirs?: string[];
  /** The adapted blocks on onnxruntime-node (backends ort-cpu, ort-webgpu); default: on TensorFlow.js. */
  blocks?: OrtOptions;
  /** How the server reaches a device; default: signed HTTP (DeviceClient). */
  device?: (d: DeviceSpec, roundSecret: string, timeoutMs: number) => DeviceApi;
}

/** Round options with their defaults filled in. */
export type ResolvedRoundOptions = RoundOptions &
  Required<Pick<RoundOptions, 'prefetch' | 'urlSeconds' | 'schedule' | 'checkpointSeconds' | 'dataDirs' | 'device'>>;

/** Fills in every default of the round options, once: RunRegistry resolves its options when it is made. */
export function resolveRoundOptions(given: RoundOptions): ResolvedRoundOptions {
  const set = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as RoundOptions;
  return {
    prefetch: DEFAULT_PREFETCH,
    // Presigned URLs outlive a round's uploads (limits.uploadSeconds is 900 by default).
    urlSeconds: 3600,
    schedule: 'pipelined',
    checkpointSeconds: 30,
    dataDirs: [process.cwd()],
    device: (d, secret, timeoutMs) => new DeviceClient(d.url, d.id, secret, timeoutMs),
    ...set,
  };
}

export function deviceApi(s: RunState, opts: ResolvedRoundOptions, deviceId: string): DeviceApi {
  const d = s.record.spec.devices.find((x) => x.id === deviceId);
  if (!d) throw new NotFound(`run ${s.record.id} has no device '${deviceId}'; its devices are ${s.record.spec.devices.map((x) => x.id).join(', ')}`);
  // A device's answer may take the run's limits.callSeconds at most.
  const timeoutMs = s.record.spec.limits.callSeconds * 1000;
  return opts.device(d, opts.roundSecret, timeoutMs);
}
