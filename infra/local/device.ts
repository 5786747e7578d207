/**
 * Starts a device worker under real workerd through wrangler's programmatic API, offline and on 127.0.0.1, with its
 * own id, secrets and private R2/Durable Object state under the project's .local folder.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { deviceSecret } from '../../core/auth/signing.ts';
import { familyOf, type Model, type ModelConfig } from '../../core/model/family.ts';
import type { PrefixWeights } from '../../core/onnx/prefix.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import type { SegmentApproval, SpecialTokenIds } from '../../core/wire/policy.ts';
import type { TokenGroups } from '../../core/privacy/groups.ts';
import { LOCAL_DIR } from './paths.ts';

export interface DeviceOptions {
  id: string;
  ownerToken: string;
  /** The training server's master secret: the device gets its own secret derived from it (deviceSecret). */
  masterSecret: string;
  /** Origins the device may fetch from and upload to (its STORAGE_ORIGINS): the local S3 server's. */
  storageOrigins: string[];
  /** Where this device's R2 bucket and Durable Objects persist. */
  stateDir: string;
  /** wrangler.toml vars to override (PIECE_BATCHES, UPLOAD_ATTEMPTS, LABELS, ...). */
  vars?: Record<string, string>;
  /** The owner's key of the defence's randomness: random unless a test must reproduce what the device draws. */
  defenceSecret?: string;
}

export interface RunningDevice {
  id: string;
  url: URL;
  ownerToken: string;
  /** Approves a model segment as this device's owner (PUT /approvals/{sha256}). */
  approve(approval: SegmentApproval): Promise<void>;
  /** Loads public groups of similar tokens for the groups defence, as the owner would; returns their SHA-256. */
  putGroups(groups: TokenGroups): Promise<string>;
  /** Approves the segment the server exports for `cut` of `model`, exported here as its owner would. */
  approveSegment(
    model: Model,
    modelName: string,
    cut: number,
    weights: PrefixWeights,
    also?: Partial<Pick<SegmentApproval, 'tokenizer' | 'specialTokens' | 'generation' | 'seqLen' | 'defence'>>,
  ): Promise<SegmentApproval>;
  /**
   * Uploads JSON-lines rows as this device's owner: a classification shard with its label set, or a generation
   * shard ('generation'); throws with the worker's message unless it is stored.
   */
  uploadShard(name: string, rows: readonly object[], labels?: readonly string[] | 'generation'): Promise<void>;
  /** Stops the worker and starts it again on the same port with the same state, as a device that died would. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The start and end token ids an owner approves with a model's tokenizer: its config.json's bos_token_id and eos_token_id. */
export function approvedSpecialTokens(config: ModelConfig): SpecialTokenIds {
  const { bos, eos } = familyOf(config).specialTokens(config);
  return bos === undefined ? { eos } : { bos, eos };
}

const LOCAL = resolve(LOCAL_DIR, 'wrangler');

/** Wrangler must not phone home, and must not write outside the project. Set before wrangler loads. */
export function offlineWranglerEnv(): void {
  Object.assign(process.env, {
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_SEND_ERROR_REPORTS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    XDG_CONFIG_HOME: resolve(LOCAL, 'config'),
    TMPDIR: resolve(LOCAL, 'tmp'),
  });
}

export async function startDevice(options: DeviceOptions): Promise<RunningDevice> {
  offlineWranglerEnv();
  await mkdir(process.env.TMPDIR!, { recursive: true });
  const { unstable_startWorker } = await import('wrangler');
  const text = (value: string) => ({ type: 'plain_text' as const, value });
  const secret = (value: string) => ({ type: 'secret_text' as const, value });
  const bindings = {
    DEVICE_ID: text(options.id),
    OWNER_TOKEN: secret(options.ownerToken),
    ROUND_SECRET: secret(await deviceSecret(options.masterSecret, options.id)),
    // The owner's own key of the defence noise: random here, as an owner would make it, and never the server's.
    DEFENCE_SECRET: secret(options.defenceSecret ?? Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, '0')).join('')),
    STORAGE_ORIGINS: text(options.storageOrigins.join(',')),
    ...Object.fromEntries(Object.entries(options.vars ?? {}).map(([k, v]) => [k, text(v)])),
  };
  const start = async (port: number) => {
    const w = await unstable_startWorker({
      config: resolve('wrangler.toml'),
      bindings,
      dev: { server: { hostname: '127.0.0.1', port }, inspector: false, persist: resolve(options.stateDir), watch: false },
    });
    await w.ready;
    return w;
  };
  let worker = await start(0);
  const url = await worker.url;
  const approve = async ({ sha256, ...approval }: SegmentApproval) => {
    const res = await fetch(new URL(`/approvals/${sha256}`, url), {
      method: 'PUT',
      headers: { authorization: `Bearer ${options.ownerToken}` },
      body: JSON.stringify(approval),
    });
    if (res.status !== 201) throw new Error(`approving segment ${sha256} on ${options.id}: HTTP ${res.status} ${await res.text()}`);
  };
  return {
    id: options.id,
    url,
    ownerToken: options.ownerToken,
    approve,
    putGroups: async (groups) => {
      const res = await fetch(new URL('/groups', url), {
        method: 'PUT',
        headers: { authorization: `Bearer ${options.ownerToken}` },
        body: JSON.stringify(groups),
      });
      if (res.status !== 201) throw new Error(`loading groups on ${options.id}: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { sha256: string }).sha256;
    },
    approveSegment: async (model, modelName, cut, weights, also = {}) => {
      const segment = await deviceSegment(model, cut, weights);
      // With a tokenizer, its start and end tokens as the owner reads them from config.json.
      const special = also.tokenizer ? { specialTokens: approvedSpecialTokens(model.config) } : {};
      const approval = {
        sha256: segment.sha256,
        model: modelName,
        cut,
        tokenTable: segment.tokenTable?.sha256,
        weights: segment.weights?.sha256,
        ...special,
        ...also,
      };
      await approve(approval);
      return approval;
    },
    uploadShard: async (name, rows, labels) => {
      const query = labels === 'generation' ? 'task=generation' : `format=jsonl${labels ? `&labels=${labels.map(encodeURIComponent).join(',')}` : ''}`;
      const body = rows.map((r) => JSON.stringify(r)).join('\n');
      const res = await fetch(new URL(`/shards/${encodeURIComponent(name)}?${query}`, url), {
        method: 'PUT',
        headers: { authorization: `Bearer ${options.ownerToken}` },
        body,
      });
      if (res.status !== 201) throw new Error(`uploading shard '${name}' to ${options.id}: HTTP ${res.status} ${await res.text()}`);
    },
    restart: async () => {
      await worker.dispose();
      worker = await start(Number(url.port));
    },
    stop: () => worker.dispose(),
  };
}
