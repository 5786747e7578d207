/**
 * One round on this device, as a Durable Object named by (run, round). The request is answered at once; the work
 * runs in bounded pieces, a few batches per alarm, each piece persisting its progress, until the shard is done.
 * Then, and only then, the completion manifest is written.
 *
 * Storage holds one small value for the job, and one value per upload URL and per stored batch, so nothing written
 * after a batch grows with the round (a Durable Object value has a size limit).
 */
import { DurableObject } from 'cloudflare:workers';
import { sha256Hex } from '../../../core/auth/signing.ts';
import type { ActivationManifest, ManifestBatch, RoundRequest, RoundStatus } from '../../../core/wire/round.ts';
import type { Bindings } from './bindings.ts';
import { deviceSettings } from './settings.ts';
import type { TokenTable } from '../../../core/onnx/embedding.ts';
import { encodeCalibration, encodeRows, type EncodedRows, type Row } from './encode.ts';
import { forwardBatch, roundTokenizer, segmentClip } from './forward.ts';
import { session, shardTokenTable, tableShape, wasmMemoryBytes } from './onnx.ts';
import { roundPolicy } from './policy-store.ts';
import { addsNoise, canonicalDefence, type Defence } from '../../../core/privacy/defence.ts';
import { groupMechanism, groupsContext } from '../../../core/privacy/groups.ts';
import { sanitiser } from '../../../core/privacy/sanitise.ts';
import { loadGroups } from './groups-store.ts';
import { defenceKey } from '../../../core/privacy/stream.ts';
import { listShards, loadShard, shardChanged, shardsGone } from './shard-store.ts';
import { putWithRetry } from './upload.ts';
import { reportable, RoundError, step } from './errors.ts';

interface Job {
  /** The request without its upload URLs, which are stored one per key. */
  request: Omit<RoundRequest, 'uploads'>;
  /** How many batch URLs the request held. */
  urls: number;
  /** Identifies the work (not the URLs): a second trigger of the same work does not redo it. */
  workHash: string;
  status: RoundStatus;
  /** The defence the stored batches were uploaded under (canonicalDefence), and the segment's clip norm. */
  defence?: string;
  clip?: number;
  /** The shards the round reads, each with its version when first read: a pair, as shard names may look like numbers. */
  shards?: Array<[string, string]>;
}

/** Failed attempts kept in the status: the newest ones. */
const MAX_FAILURES = 50;
/** Keys per storage call (the Durable Object storage API takes at most 128). */
const KEYS_PER_CALL = 128;
const urlKey = (b: number) => `url:${b}`;
const batchKey = (b: number) => `batch:${b}`;

/** Everything that decides which objects a round produces; presigned URLs may differ between triggers. */
export function workHash(r: RoundRequest): Promise<string> {
  const { uploads: _uploads, model, tokenTable, weights, tokenizer, ...rest } = r;
  const tokens = tokenizer && { sha256: tokenizer.sha256, bos: tokenizer.bos ?? null, eos: tokenizer.eos };
  return sha256Hex(
    JSON.stringify({ ...rest, model: model.sha256, tokenTable: tokenTable?.sha256 ?? null, weights: weights?.sha256 ?? null, tokenizer: tokens ?? null }),
  );
}

export class RoundRunner extends DurableObject<Bindings> {
  private rows: Row[] | undefined;
  /**
   * The shard's batches as token ids, made once per round before the model segment is loaded: a large tokenizer
   * (Llama 3's holds ~70 MB of JS heap) is then let go and never shares the Worker's 128 MB with the session.
   */
  private batches: EncodedRows[] | undefined;
  /** The batches as they enter the prefix under the defence `inputsFor` names: sanitised, or the batches themselves. */
  private inputs: EncodedRows[] | undefined;
  private inputsFor: string | undefined;
  /** The token rows of the whole shard, taken from one pass over the whole table (see shardTokenTable). */
  private table: TokenTable | undefined;
  /** The calibration text, encoded with the round's tokenizer: fixes the segment's clip norm. */
  private calibration: EncodedRows | undefined;

  /** Starts the round; for the same work again, returns its status (or resumes it, if it failed). */
  async start(request: RoundRequest): Promise<{ status: RoundStatus } | { conflict: string }> {
    const hash = await workHash(request);
    const job = await this.ctx.storage.get<Job>('job');
    if (job) {
      if (job.workHash !== hash) return { conflict: `run ${request.runId} round ${request.round} was already started with different settings` };
      if (job.status.state !== 'failed') return { status: job.status };
      // A failed round triggered again resumes after its last stored batch, with the fresh upload URLs.
      await this.storeUrls(request);
      Object.assign(job, { request: withoutUploads(request), urls: request.uploads.batches.length });
      job.status = { ...job.status, state: 'running', error: undefined };
      await this.save(job);
      return { status: job.status };
    }
    await this.storeUrls(request);
    const fresh: Job = {
      request: withoutUploads(request),
      urls: request.uploads.batches.length,
      workHash: hash,
      status: {
        device: this.env.DEVICE_ID,
        runId: request.runId,
        round: request.round,
        state: 'running',
        batchesDone: 0,
        batchesTotal: 0,
        failures: [],
        tokens: 0,
        forwardMs: 0,
      },
    };
    await this.save(fresh);
    return { status: fresh.status };
  }

  /** The batches as the owner's defence lets them enter the prefix: each token replaced within its group, or as they are. */
  private async sanitised(defence: Defence, batches: EncodedRows[]): Promise<EncodedRows[]> {
    if (defence.mechanism !== 'groups') return batches;
    const table = await loadGroups(this.env, defence.groups);
    if (!table) throw new RoundError(`the owner's groups ${defence.groups} are no longer on this device`);
    const sanitise = sanitiser(groupMechanism(table, defence.epsilon), defenceKey(this.env.DEFENCE_SECRET!), groupsContext(defence));
    return batches.map((b) => ({ ...b, ids: sanitise(b.ids, b.attentionMask, b.rows, b.seqLen) }));
  }

  private async storeUrls(r: RoundRequest): Promise<void> {
    const entries: Array<[string, string]> = [...r.uploads.batches.map((u, b): [string, string] => [urlKey(b), u]), ['url:manifest', r.uploads.manifest]];
    for (let i = 0; i < entries.length; i += KEYS_PER_CALL) await this.ctx.storage.put(Object.fromEntries(entries.slice(i, i + KEYS_PER_CALL)));
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
      job.status.error = reportable(e);
      await this.save(job);
    }
  }

  /** Processes up to PIECE_BATCHES batches, then schedules the next piece or finishes the round. */
  private async piece(job: Job): Promise<void> {
    const r = job.request;
    const url = async (key: string) => (await this.ctx.storage.get<string>(key)) ?? '';
    // The owner may have revoked an approval, raised MIN_CUT or changed the defence since the round began; every
    // fetch and upload is checked against the storage origins as they are now.
    const { refusal, defence } = await roundPolicy(this.env, r);
    if (refusal) throw new RoundError(refusal);
    const { storageOrigins: origins, uploadAttempts: attempts, uploadBackoffMs: backoffMs, pieceBatches } = deviceSettings(this.env);
    if (job.defence !== canonicalDefence(defence)) {
      // Every batch of a round carries one setting, the owner's current one: what went up under another goes again.
      Object.assign(job, { defence: canonicalDefence(defence), clip: undefined });
      Object.assign(job.status, { batchesDone: 0, tokens: 0, forwardMs: 0 });
    }
    const rows = (this.rows ??= await this.loadRows(r, job));
    // Before every upload: the owner may have deleted or replaced a shard since (its rows stay in memory here).
    const shardsKept = async () => {
      const gone = await shardsGone(this.env, job.shards!);
      if (gone) throw new RoundError(gone);
    };
    if (!this.batches) {
      const tokenizer = await step('the tokenizer', () => roundTokenizer(r, origins));
      const batches: EncodedRows[] = [];
      for (let b = 0; b * r.batchSize < rows.length; b++) {
        const slice = rows.slice(b * r.batchSize, (b + 1) * r.batchSize);
        batches.push(await step(`tokenizing batch ${b}`, () => encodeRows(tokenizer, slice, r)));
      }
      this.calibration = await step('tokenizing the calibration text', () => encodeCalibration(tokenizer, r));
      this.batches = batches;
    }
    if (this.inputsFor !== job.defence) {
      this.inputs = await step("the owner's sanitisation", () => this.sanitised(defence, this.batches!));
      Object.assign(this, { inputsFor: job.defence, table: undefined });
    }
    const encoded = this.inputs!;
    const total = Math.ceil(rows.length / r.batchSize);
    job.status.batchesTotal = total;
    if (job.urls < total) throw new RoundError(`the shard makes ${total} batches but the request holds ${job.urls} upload URLs`);
    // The segment is the server's own bytes: what onnxruntime says of them quotes nothing of the owner's.
    const model = await session(origins, r.model.sha256, r.model.url, r.weights).catch((e) => {
      throw e instanceof RoundError ? e : new RoundError(`model segment: ${(e as Error).message}`);
    });
    const tokenTable = r.tokenTable;
    const shape = tableShape(model);
    if (shape && tokenTable && !this.table) {
      const ids = [...encoded, this.calibration!].flatMap((e) => Array.from(e.ids));
      this.table = await step("the shard's token table rows", () => shardTokenTable(origins, tokenTable, ids, shape));
    }
    job.clip ??= await step('the calibration text through the segment', () => segmentClip(model, this.calibration!, this.table));
    const defenceRun = {
      defence,
      clip: job.clip,
      segment: r.model.sha256,
      key: defence.mechanism === 'none' ? new Uint8Array(0) : defenceKey(this.env.DEFENCE_SECRET!),
    };
    const onFailure = (what: string) => (attempt: number, reason: string) => {
      job.status.failures = [...job.status.failures, `${what}, attempt ${attempt}: ${reason}`].slice(-MAX_FAILURES);
    };
    const end = Math.min(total, job.status.batchesDone + pieceBatches);
    for (let b = job.status.batchesDone; b < end; b++) {
      const {
        bytes,
        rows: n,
        seqLen,
        tokens,
        forwardMs,
      } = await step(`batch ${b}`, () => forwardBatch(model, encoded[b]!, r, this.env.DEVICE_ID, b, this.table, defenceRun));
      await shardsKept();
      await putWithRetry(`uploads.batches[${b}]`, await url(urlKey(b)), bytes, { origins, attempts, backoffMs, onFailure: onFailure(`batch ${b}`) }).catch(
        (e) => {
          throw new RoundError(`upload of batch ${b}: ${(e as Error).message}`);
        },
      );
      const entry: ManifestBatch = { index: b, rows: n, seqLen, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) };
      job.status.batchesDone = b + 1;
      job.status.tokens += tokens;
      job.status.forwardMs += forwardMs;
      job.status.wasmMemoryBytes = wasmMemoryBytes();
      // One write for the batch's entry and the job: both or neither.
      await this.ctx.storage.put({ [batchKey(b)]: entry, job });
    }
    if (job.status.batchesDone < total) return this.save(job);
    const batches: ManifestBatch[] = [];
    for (let i = 0; i < total; i += KEYS_PER_CALL) {
      const got = await this.ctx.storage.get<ManifestBatch>(Array.from({ length: Math.min(KEYS_PER_CALL, total - i) }, (_, k) => batchKey(i + k)));
      for (let k = i; k < Math.min(total, i + KEYS_PER_CALL); k++) batches.push(got.get(batchKey(k))!);
    }
    const manifest: ActivationManifest = {
      version: 1,
      device: this.env.DEVICE_ID,
      runId: r.runId,
      round: r.round,
      cut: r.cut,
      dtype: r.dtype,
      modelSha256: r.model.sha256,
      rows: rows.length,
      defence,
      ...(addsNoise(defence) ? { clip: job.clip } : {}),
      batches,
    };
    await shardsKept();
    await putWithRetry('uploads.manifest', await url('url:manifest'), JSON.stringify(manifest), {
      origins,
      attempts,
      backoffMs,
      onFailure: onFailure('manifest'),
    }).catch((e) => {
      throw new RoundError(`upload of the manifest: ${(e as Error).message}`);
    });
    job.status.state = 'complete';
    await this.save(job);
  }

  /**
   * The rows of the round's shards (those it names, by default every shard of its task), in order; the first read
   * records which shards and their versions (`job.shards`).
   */
  private async loadRows(r: Job['request'], job: Job): Promise<Row[]> {
    // Read again (a restarted object): the same shards, though a new one of the task may have come since.
    const names =
      job.shards?.map(([name]) => name) ??
      r.shards ??
      (await step("the list of this device's shards", () => listShards(this.env)))
        .filter((s) => s.task === r.task)
        .map((s) => s.name)
        .sort();
    if (names.length === 0) throw new RoundError(`this device holds no ${r.task} shards`);
    const rows: Row[] = [];
    const read: Array<[string, string]> = [];
    for (const name of names) {
      const shard = await step(`reading shard '${name}'`, () => loadShard(this.env, name));
      if (!shard) throw new RoundError(`no shard named '${name}' on this device`);
      read.push([name, shard.version]);
      if (shard.task !== r.task) throw new RoundError(`shard '${name}' is a ${shard.task} shard; the round is ${r.task}`);
      // Labels are no secret: the shard listing the server reads holds them.
      if (shard.labels.join('\n') !== r.labels.join('\n')) {
        throw new RoundError(`shard '${name}' has labels ${JSON.stringify(shard.labels)}, the round expects ${JSON.stringify(r.labels)}`);
      }
      rows.push(...shard.rows);
    }
    const replaced = job.shards?.find(([, version], i) => read[i]![1] !== version);
    if (replaced) throw new RoundError(shardChanged(replaced[0], 'replaced'));
    job.shards ??= read;
    return rows;
  }
}

function withoutUploads(r: RoundRequest): Job['request'] {
  const { uploads: _uploads, ...rest } = r;
  return rest;
}
