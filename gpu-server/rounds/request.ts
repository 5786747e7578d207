/** Builds what a device needs for one round: its settings and short-lived presigned URLs into the run's storage. */
import type { ObjectStore } from '../../core/storage/store.ts';
import { keys } from '../../core/storage/keys.ts';
import type { RoundRequest } from '../../core/wire/round.ts';

export interface DeviceRoundPlan {
  runId: string;
  round: number;
  deviceId: string;
  /** The device prefix, already stored under keys.devicePrefix(modelSha256, cut). */
  modelSha256: string;
  /** The token table, stored under keys.tokenTable(sha256), for a prefix that takes inputs_embeds. */
  tokenTableSha256?: string;
  /** The segment's weights as external data, stored under keys.segmentWeights(sha256). */
  weightsSha256?: string;
  /** The model's tokenizer.json, stored under keys.tokenizer(sha256), with its start and end tokens (Llama). */
  tokenizer?: { sha256: string; bos?: number; eos: number };
  /** 'classification' unless said. */
  task?: RoundRequest['task'];
  cut: number;
  /** Rows the device holds (from its shard listing): decides how many upload URLs it needs. */
  rows: number;
  batchSize: number;
  seqLen: number;
  dtype: RoundRequest['dtype'];
  labels: string[];
  padTokenId: number;
  shards?: string[];
  /** How long the URLs stay valid (default an hour: a round that outlives them fails and, triggered again, resumes
   * with fresh ones). */
  expiresInSeconds?: number;
}

export async function buildRoundRequest(store: ObjectStore, p: DeviceRoundPlan): Promise<RoundRequest> {
  const expires = p.expiresInSeconds ?? 3600;
  const batches = Math.ceil(p.rows / p.batchSize);
  return {
    runId: p.runId,
    round: p.round,
    model: { sha256: p.modelSha256, url: await store.presignGet(keys.devicePrefix(p.modelSha256, p.cut), expires) },
    tokenTable: p.tokenTableSha256 ? { sha256: p.tokenTableSha256, url: await store.presignGet(keys.tokenTable(p.tokenTableSha256), expires) } : undefined,
    ...(p.weightsSha256 ? { weights: { sha256: p.weightsSha256, url: await store.presignGet(keys.segmentWeights(p.weightsSha256), expires) } } : {}),
    ...(p.tokenizer ? { tokenizer: { ...p.tokenizer, url: await store.presignGet(keys.tokenizer(p.tokenizer.sha256), expires) } } : {}),
    task: p.task ?? 'classification',
    cut: p.cut,
    batchSize: p.batchSize,
    seqLen: p.seqLen,
    dtype: p.dtype,
    labels: p.labels,
    padTokenId: p.padTokenId,
    shards: p.shards,
    uploads: {
      batches: await Promise.all(Array.from({ length: batches }, (_, b) => store.presignPut(keys.activationBatch(p.runId, p.deviceId, p.round, b), expires))),
      manifest: await store.presignPut(keys.activationManifest(p.runId, p.deviceId, p.round), expires),
    },
  };
}
