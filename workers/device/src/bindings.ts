import type { DeviceVars } from './settings.ts';

/** The device worker's plain bindings and secrets: everything but its Durable Objects (env.ts adds them). */
export interface Bindings extends DeviceVars {
  /**
   * This device's own secret, derived from the training server's master secret and DEVICE_ID
   * (`npm run cli -- device-secret --device ID`); the server signs this device's requests with it.
   */
  ROUND_SECRET?: string;
  /**
   * The key of this device's defence noise (core/privacy/stream.ts), known to no one but the device: not derived
   * from the server's secret, or the server could subtract the noise. Set once by the owner and kept.
   */
  DEFENCE_SECRET?: string;
  /** Private: shards live here and nowhere else. */
  SHARDS: R2Bucket;
}
