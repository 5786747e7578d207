import type { NonceGuard } from './nonces.ts';
import type { RoundRunner } from './runner.ts';

/** The device worker's bindings (wrangler.toml) and secrets (`wrangler secret put`). */
export interface Env {
  DEVICE_ID: string;
  /** The device owner's token: uploads, lists and deletes shards. */
  OWNER_TOKEN: string;
  /**
   * This device's own secret, derived from the training server's master secret and DEVICE_ID
   * (`npm run cli -- device-secret --device ID`); the server signs this device's requests with it.
   */
  ROUND_SECRET?: string;
  /** Private: shards live here and nowhere else. */
  SHARDS: R2Bucket;
  ROUNDS: DurableObjectNamespace<RoundRunner>;
  NONCES: DurableObjectNamespace<NonceGuard>;
  /** The owner's minimum cut: rounds below it are refused (default 2; at least 1). */
  MIN_CUT?: string;
  /** Segments the owner approves at deploy time: a JSON list of {sha256, model, cut, tokenTable?}. */
  APPROVED_SEGMENTS?: string;
  /** Comma-separated origins of the object storage this device may fetch from and upload to (https). */
  STORAGE_ORIGINS?: string;
  /** Comma-separated default label set of uploaded shards ("0,1"). */
  LABELS?: string;
  MAX_SHARD_BYTES?: string;
  MAX_SHARD_ROWS?: string;
  /** Batches per Durable Object alarm: the bounded piece of work one invocation does. */
  PIECE_BATCHES?: string;
  /** Tries per activation upload before the round fails. */
  UPLOAD_ATTEMPTS?: string;
  /** First retry delay in ms; doubles on each retry. */
  UPLOAD_BACKOFF_MS?: string;
}

export function intVar(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && Number.isSafeInteger(n) && n > 0 ? n : fallback;
}
