import type { NonceGuard } from './nonces.ts';
import type { RoundRunner } from './runner.ts';

/** The device worker's bindings (wrangler.toml) and secrets (`wrangler secret put`). */
export interface Env {
  DEVICE_ID: string;
  /** The device owner's token: uploads, lists and deletes shards. */
  OWNER_TOKEN: string;
  /** Shared with the training server, which signs round requests with it. */
  ROUND_SECRET: string;
  /** Private: shards live here and nowhere else. */
  SHARDS: R2Bucket;
  ROUNDS: DurableObjectNamespace<RoundRunner>;
  NONCES: DurableObjectNamespace<NonceGuard>;
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
