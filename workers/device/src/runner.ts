/**
 * One round on this device, as a Durable Object named by (run, round). The request is answered at once; the work
 * runs in bounded pieces, a few batches per alarm, each piece persisting its progress, until the shard is done.
 * Then, and only then, the completion manifest is written.
 */
import { DurableObject } from 'cloudflare:workers';
import { sha256Hex } from '../../../core/auth/signing.ts';
import type { Example } from '../../../core/data/shard.ts';
import type { ActivationManifest, ManifestBatch, RoundRequest, RoundStatus } from '../../../core/wire/round.ts';
import { intVar, type Env } from './env.ts';
import type { TokenTable } from '../../../core/onnx/embedding.ts';
import { encodeRows, forwardBatch } from './forward.ts';
import { ModelHashMismatch, session, shardTokenTable } from './onnx.ts';
import { refusalOf } from './policy.ts';
import { listShards, loadShard } from './shards.ts';
import { putWithRetry } from './upload.ts';

interface Job {
  request: RoundRequest;
  /** Identifies the work (not the URLs): a second trigger of the same work does not redo it. */
  workHash: string;
  status: RoundStatus;
  batches: ManifestBatch[];
}

/** Everything that decides which objects a round produces; presigned URLs may differ between triggers. */
export function workHash(r: RoundRequest): Promise<string> {
  const { uploads: _uploads, model, tokenTable, ...rest } = r;
  return sha256Hex(JSON.stringify({ ...rest, model: model.sha256, tokenTable: tokenTable?.sha256 ?? null }));
}

export class RoundRunner extends DurableObject<Env> {
  private rows: Example[] | undefined;
  /** The token rows of the whole shard, taken from one pass over the whole table (see shardTokenTable). */
  private table: TokenTable | undefined;

  /** Starts the round; for the same work again, returns its status (or resumes it, if it failed). */
  async start(request: RoundRequest): Promise<{ status: RoundStatus } | { conflict: string }> {
    const hash = await workHash(request);
    const job = await this.ctx.storage.get<Job>('job');
    if (job) {
      if (job.workHash !== hash) return { conflict: `run ${request.runId} round ${request.round} was already started with different settings` };
      if (job.status.state !== 'failed') return { status: job.status };
      // A failed round triggered again resumes after its last stored batch, with the fresh upload URLs.
      job.request = request;
      job.status = { ...job.status, state: 'running', error: undefined };
      await this.save(job);
      return { status: job.status };
    }
    const fresh: Job = {
      request,
      workHash: hash,
      batches: [],
      status: { device: this.env.DEVICE_ID, runId: request.runId, round: request.round, state: 'running', batchesDone: 0, batchesTotal: 0, failures: [], tokens: 0, forwardMs: 0 },
    };
    await this.save(fresh);
    return { status: fresh.status };
  }

  async status(): Promise<RoundStatus | undefined> {
    return (await this.ctx.storage.get<Job>('job'))?.status;
  }

  private async save(job: Job, alarm = job.status.state === 'running'): Promise<void> {
    await this.ctx.storage.put('job', job);
    if (alarm) await this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    const job = await this.ctx.storage.get<Job>('job');
    if (!job || job.status.state !== 'running') return;
    try {
      await this.piece(job);
    } catch (e) {
      job.status.state = 'failed';
      job.status.error = (e as Error).message;
      await this.save(job);
    }
  }

  /** Processes up to PIECE_BATCHES batches, then schedules the next piece or finishes the round. */
  private async piece(job: Job): Promise<void> {
    const r = job.request;
    // The owner may have revoked an approval (or raised MIN_CUT) since the round began.
    const refusal = await refusalOf(this.env, r);
    if (refusal) throw new Error(refusal);
    const rows = (this.rows ??= await this.loadRows(r));
    const total = Math.ceil(rows.length / r.batchSize);
    job.status.batchesTotal = total;
    if (r.uploads.batches.length < total) throw new Error(`the shard makes ${total} batches but the request holds ${r.uploads.batches.length} upload URLs`);
    const model = await session(r.model.sha256, r.model.url).catch((e) => {
      throw e instanceof ModelHashMismatch ? e : new Error(`model segment: ${(e as Error).message}`);
    });
    if (model.inputNames.includes('inputs_embeds') && r.tokenTable) {
      this.table ??= await shardTokenTable(r.tokenTable, encodeRows(rows, r).ids);
    }
    const attempts = intVar(this.env.UPLOAD_ATTEMPTS, 4);
    const backoffMs = intVar(this.env.UPLOAD_BACKOFF_MS, 200);
    const onFailure = (what: string) => (attempt: number, reason: string) => job.status.failures.push(`${what}, attempt ${attempt}: ${reason}`);
    const end = Math.min(total, job.batches.length + intVar(this.env.PIECE_BATCHES, 4));
    for (let b = job.batches.length; b < end; b++) {
      const slice = rows.slice(b * r.batchSize, (b + 1) * r.batchSize);
      const { bytes, rows: n, seqLen, tokens, forwardMs } = await forwardBatch(model, slice, r, this.env.DEVICE_ID, b, this.table);
      await putWithRetry(r.uploads.batches[b], bytes, { attempts, backoffMs, onFailure: onFailure(`batch ${b}`) }).catch((e) => {
        throw new Error(`upload of batch ${b}: ${(e as Error).message}`);
      });
      job.batches.push({ index: b, rows: n, seqLen, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
      job.status.batchesDone = job.batches.length;
      job.status.tokens += tokens;
      job.status.forwardMs += forwardMs;
      await this.save(job, false);
    }
    if (job.batches.length < total) return this.save(job);
    const manifest: ActivationManifest = {
      version: 1,
      device: this.env.DEVICE_ID,
      runId: r.runId,
      round: r.round,
      cut: r.cut,
      dtype: r.dtype,
      modelSha256: r.model.sha256,
      rows: rows.length,
      batches: job.batches,
    };
    await putWithRetry(r.uploads.manifest, JSON.stringify(manifest), { attempts, backoffMs, onFailure: onFailure('manifest') }).catch((e) => {
      throw new Error(`upload of the manifest: ${(e as Error).message}`);
    });
    job.status.state = 'complete';
    await this.save(job);
  }

  private async loadRows(r: RoundRequest): Promise<Example[]> {
    const names = r.shards ?? (await listShards(this.env)).map((s) => s.name).sort();
    if (names.length === 0) throw new Error('this device holds no shards');
    const rows: Example[] = [];
    for (const name of names) {
      const shard = await loadShard(this.env, name);
      if (!shard) throw new Error(`no shard named '${name}' on this device`);
      if (shard.labels.join('\n') !== r.labels.join('\n')) {
        throw new Error(`shard '${name}' has labels ${JSON.stringify(shard.labels)}, the round expects ${JSON.stringify(r.labels)}`);
      }
      rows.push(...shard.rows);
    }
    return rows;
  }
}
