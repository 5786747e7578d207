/**
 * The device's settings, read from its bindings (wrangler.toml vars and secrets) in one place into one typed object.
 * A bad value is refused with its name and the fix, never replaced by a default behind the owner's back: the worker
 * then answers every request with that message until the owner corrects it.
 */
import { checkId } from '../../../core/storage/keys.ts';
import { DEFAULT_LIMITS, type ShardLimits } from '../../../core/data/shard.ts';
import { parseApproval, parseMinCut, parseStorageOrigins, type SegmentApproval } from '../../../core/wire/policy.ts';
import { DEFAULT_LEVEL, LEVELS, parseDefence, type Defence } from '../../../core/privacy/defence.ts';

/** The bindings settings are read from: plain strings (wrangler.toml [vars] and secrets). */
export interface DeviceVars {
  DEVICE_ID: string;
  /** The device owner's token: uploads, lists and deletes shards. */
  OWNER_TOKEN: string;
  /** The owner's minimum cut: rounds below it are refused (default 2; at least 1). */
  MIN_CUT?: string;
  /** Segments the owner approves at deploy time: a JSON list of {sha256, model, cut, tokenTable?}. */
  APPROVED_SEGMENTS?: string;
  /**
   * The defence on what leaves the device, for segments approved without one: a level (off, low, medium, high;
   * default medium) or a JSON setting ({"mechanism": "gaussian", "epsilon": 16, "delta": 1e-5}).
   */
  DEFENCE?: string;
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

/** The settings a deployment gives as plain vars, and those it must give as secrets (checked by deploy:device). */
export const DEVICE_VARS = [
  'DEVICE_ID',
  'MIN_CUT',
  'APPROVED_SEGMENTS',
  'DEFENCE',
  'STORAGE_ORIGINS',
  'LABELS',
  'MAX_SHARD_BYTES',
  'MAX_SHARD_ROWS',
  'PIECE_BATCHES',
  'UPLOAD_ATTEMPTS',
  'UPLOAD_BACKOFF_MS',
] as const satisfies ReadonlyArray<keyof DeviceVars>;
export const DEVICE_SECRETS = ['OWNER_TOKEN', 'ROUND_SECRET', 'DEFENCE_SECRET'] as const;

export interface DeviceSettings {
  deviceId: string;
  minCut: number;
  /** The defence of segments whose approval names none. */
  defence: Defence;
  /** Approvals listed at deploy time (the owner adds more with PUT /approvals/{sha256}). */
  approvedSegments: SegmentApproval[];
  storageOrigins: string[];
  /** The label set a shard is uploaded with when the upload names none. */
  labels: string[];
  shardLimits: ShardLimits;
  pieceBatches: number;
  uploadAttempts: number;
  uploadBackoffMs: number;
}

export class SettingsError extends Error {}

function positive(
  env: DeviceVars,
  name: 'MAX_SHARD_BYTES' | 'MAX_SHARD_ROWS' | 'PIECE_BATCHES' | 'UPLOAD_ATTEMPTS' | 'UPLOAD_BACKOFF_MS',
  fallback: number,
): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new SettingsError(`${name} is ${JSON.stringify(v)}: set a positive integer (default ${fallback}), or remove it`);
  return n;
}

export function deviceSettings(env: DeviceVars): DeviceSettings {
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw e instanceof SettingsError ? e : new SettingsError((e as Error).message);
    }
  };
  if (!env.DEVICE_ID) throw new SettingsError('DEVICE_ID is not set: give each device its own id in wrangler.toml [vars]');
  wrap(() => checkId('DEVICE_ID', env.DEVICE_ID));
  if (!env.OWNER_TOKEN) throw new SettingsError("OWNER_TOKEN is not set: wrangler secret put OWNER_TOKEN (the owner's token for shards and approvals)");
  const minCut = wrap(() => parseMinCut(env.MIN_CUT));
  const defence = wrap(() => {
    const v = env.DEFENCE?.trim();
    if (!v) return LEVELS[DEFAULT_LEVEL];
    try {
      return parseDefence(v.startsWith('{') ? JSON.parse(v) : v, 'DEFENCE');
    } catch (e) {
      throw new SettingsError(
        `${(e as Error).message}: set DEFENCE to ${Object.keys(LEVELS).join(', ')} or a JSON setting (default ${DEFAULT_LEVEL}), or remove it`,
      );
    }
  });
  const approvedSegments = wrap(() => {
    if (!env.APPROVED_SEGMENTS) return [];
    let listed: unknown;
    try {
      listed = JSON.parse(env.APPROVED_SEGMENTS);
    } catch {
      throw new SettingsError('APPROVED_SEGMENTS is not JSON: set a JSON list of {sha256, model, cut, ...}, or remove it');
    }
    if (!Array.isArray(listed)) throw new SettingsError('APPROVED_SEGMENTS must be a JSON list of approvals');
    return listed.map((a, i) => {
      try {
        return parseApproval(a, minCut);
      } catch (e) {
        throw new SettingsError(`APPROVED_SEGMENTS[${i}]: ${(e as Error).message}`);
      }
    });
  });
  const labels = (env.LABELS ?? '0,1').split(',').map((l) => l.trim());
  if (labels.length < 2 || labels.some((l) => !l) || new Set(labels).size !== labels.length)
    throw new SettingsError(`LABELS is ${JSON.stringify(env.LABELS)}: list two or more distinct labels, comma-separated (default 0,1)`);
  return {
    deviceId: env.DEVICE_ID,
    minCut,
    defence,
    approvedSegments,
    storageOrigins: wrap(() => parseStorageOrigins(env.STORAGE_ORIGINS)),
    labels,
    shardLimits: {
      ...DEFAULT_LIMITS,
      maxBytes: positive(env, 'MAX_SHARD_BYTES', DEFAULT_LIMITS.maxBytes),
      maxRows: positive(env, 'MAX_SHARD_ROWS', DEFAULT_LIMITS.maxRows),
    },
    pieceBatches: positive(env, 'PIECE_BATCHES', 4),
    uploadAttempts: positive(env, 'UPLOAD_ATTEMPTS', 4),
    uploadBackoffMs: positive(env, 'UPLOAD_BACKOFF_MS', 200),
  };
}
