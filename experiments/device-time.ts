/**
 * A round's wall time from a device-time model: each device produces its batches at its own pace (compute and
 * upload), the server trains them device after device in the client order, one batch at a time. Pipelined, every
 * device starts at once; stop-and-wait, a device starts only when the server has trained the previous one. The
 * server trains a device's batches once the device's manifest has landed, after its last batch (it checks every
 * batch against the manifest's SHA-256s before training on it: gpu-server/rounds/feed.ts), so a device's compute
 * overlaps the server's work on the devices before it, never on itself.
 */

export interface DeviceWork {
  id: string;
  batches: number;
  /** Seconds the device takes to produce one batch (forward pass and upload). */
  secondsPerBatch: number;
}

export interface Makespan {
  seconds: number;
  /** Time the server trained, and the rest of the round, when it waited for a batch. */
  serverBusySeconds: number;
  serverIdleSeconds: number;
}

/** The round's makespan: devices in `order`, the server's step `serverSecondsPerBatch`. */
export function roundMakespan(devices: readonly DeviceWork[], serverSecondsPerBatch: number, schedule: 'pipelined' | 'stop-and-wait'): Makespan {
  let t = 0;
  for (const d of devices) {
    const ready = (schedule === 'pipelined' ? 0 : t) + d.batches * d.secondsPerBatch;
    t = Math.max(t, ready) + d.batches * serverSecondsPerBatch;
  }
  const busy = devices.reduce((a, d) => a + d.batches, 0) * serverSecondsPerBatch;
  return { seconds: t, serverBusySeconds: busy, serverIdleSeconds: t - busy };
}
