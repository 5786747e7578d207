/**
 * Runs and their rounds. A round: plan (cuts, order, activation cache), make sure each device's model segment is in
 * storage, ask the devices that must compute to start (all at once: they work in parallel), then train device after
 * device in the plan's order while the later ones are still computing (pipeline), checkpointing as it goes;
 * evaluate; write the PEFT adapter and the round's metrics. Everything a round needs is in storage, so a restarted
 * server resumes an unfinished round where its checkpoint says.
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { TOKENIZER_FILE } from '../../core/tokenizer/hf.ts';
import type { GenerationExample } from '../../core/data/generation.ts';
import type { Example } from '../../core/data/shard.ts';
import { blockLinears, type Model } from '../../core/model/family.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import { adapterFiles, ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../../core/peft/adapter.ts';
import { Random } from '../../core/random.ts';
import { getJson, putJson } from '../../core/storage/json.ts';
import { checkId, keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { sha256Hex } from '../../core/auth/signing.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { DeviceClient } from '../../core/wire/device-client.ts';
import { readModelFolder, readTokenizer } from '../model/folder.ts';
import { permutation } from '../ordering/ordering.ts';
import { buildRoundRequest } from '../rounds/request.ts';
import { activationFeed, DeviceRoundFailed, maxBatchBytes } from '../rounds/feed.ts';
import { Trainer, type PendingStep } from '../train/trainer.ts';
import { loadCheckpoint, saveCheckpoint, type CheckpointMeta, type DeviceStart } from './checkpoint.ts';
import { planCut } from './cuts.ts';
import { evaluationRows, generationEvalRows } from './data.ts';
import { evaluateClassification, evaluateGeneration, type GenerationSample } from './evaluate.ts';
import { checkDataPath } from './data-dirs.ts';
import { planRound, type DeviceView, type RoundPlan } from './plan.ts';
import type { RunSpec } from './spec.ts';

export interface RunRecord {
  id: string;
  spec: RunSpec;
  createdAt: string;
  /** Each device's cut, and how the planner chose it. */
  cuts: Record<string, { cut: number; memoryMB?: number; batchSeconds?: number; planned: boolean }>;
  deepestCut: number;
  modelName: string;
  /** Optimizer steps the learning-rate schedule spans: rounds x batches, fixed at the first round. */
  totalSteps?: number;
}

export interface DeviceProgress {
  cut: number;
  state: 'waiting' | 'training' | 'trained' | 'failed' | 'skipped';
  reused: boolean;
  batches: number;
  trained: number;
  bytes: number;
  forwardMs?: number;
  error?: string;
}

export interface RoundProgress {
  round: number;
  phase: 'planning' | 'training' | 'evaluating' | 'done' | 'failed';
  order: string[];
  batchesTotal: number;
  batchesTrained: number;
  lastLoss?: number;
  /** Every trained batch's loss, with the milliseconds since the round started: the dashboard's live curve. */
  losses: Array<{ ms: number; loss: number }>;
  devices: Record<string, DeviceProgress>;
  /** Objects the poller refused, with the reason: never trained on. */
  rejected: string[];
  error?: string;
}

export interface RoundMetrics {
  round: number;
  order: string[];
  steps: number;
  trainLoss: number;
  evalLoss?: number;
  /** Classification accuracy, or generation's exact match on the generated samples. */
  evalAccuracy?: number;
  evalRows: number;
  /** Generation: the held-out prompts the model completed, what it wrote and whether its final number was right. */
  samples?: GenerationSample[];
  devices: Array<{ id: string; cut: number; batches: number; reused: boolean; forwardMs?: number; bytes: number; error?: string }>;
  serverTrainMs: number;
  serverIdleMs: number;
  bytesMoved: number;
  wallMs: number;
  rejected: number;
}

export class NotFound extends Error {}
export class Conflict extends Error {}

export interface ManagerOptions {
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
}

interface RunState {
  record: RunRecord;
  model?: Model;
  tokenizer?: Tokenizer;
  /** The model folder's tokenizer.json in storage, for devices (families whose tokenizer devices do not hold). */
  tokenizerRef?: { sha256: string; bos?: number; eos: number } | null;
  trainer?: Trainer;
  evalRows?: Example[] | GenerationExample[];
  /** GraB: what training on each device did to the adapters in the last round. */
  updates: Map<string, Float32Array>;
  checkpoint?: CheckpointMeta;
  /** From the checkpoint: the device that was in training and the adapters it started from. */
  deviceStart?: DeviceStart;
  running?: Promise<void>;
  progress?: RoundProgress;
  segments: Map<string, { modelSha256: string; tokenTableSha256?: string; weightsSha256?: string }>;
}

export class RunManager {
  private readonly runs = new Map<string, RunState>();
  private readonly log: (m: string) => void;

  constructor(private readonly opts: ManagerOptions) {
    this.log = opts.log ?? ((m) => console.log(`[server] ${m}`));
  }

  /** Loads the runs in storage and resumes any round a previous server left unfinished. */
  async init(): Promise<void> {
    for await (const o of this.opts.store.list(keys.runs())) {
      if (!o.key.endsWith('/run.json')) continue;
      const record = await getJson<RunRecord>(this.opts.store, o.key);
      if (!record) continue;
      const state: RunState = { record, updates: new Map(), segments: new Map() };
      this.runs.set(record.id, state);
      const round = await this.unfinishedRound(record.id);
      if (round !== undefined) {
        this.log(`run ${record.id}: resuming round ${round}`);
        this.start(state, round);
      }
    }
  }

  private async unfinishedRound(runId: string): Promise<number | undefined> {
    let last: number | undefined;
    for await (const o of this.opts.store.list(`runs/${runId}/rounds/`)) {
      const m = /rounds\/(\d+)\/plan\.json$/.exec(o.key);
      if (m) last = Math.max(last ?? -1, Number(m[1]));
    }
    if (last === undefined) return undefined;
    return (await this.opts.store.head(keys.roundDone(runId, last))) ? undefined : last;
  }

  async create(spec: RunSpec, id = `run-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${Math.random().toString(36).slice(2, 6)}`): Promise<RunRecord> {
    checkId('run', id);
    if (this.runs.has(id)) throw new Conflict(`run ${id} exists`);
    const dirs = this.opts.dataDirs ?? [process.cwd()];
    await checkDataPath(spec.model, dirs, 'model');
    if (spec.task.eval) await checkDataPath(spec.task.eval.path, dirs, 'task.eval.path');
    const model = await readModelFolder(spec.model);
    const c = model.config;
    const generation = spec.task.kind === 'generation';
    if (!generation && spec.task.labels.length !== c.numLabels && model.params.has('score.weight')) {
      throw new Error(`the model's classification head has ${c.numLabels} labels, the task ${spec.task.labels.length}`);
    }
    if (!generation) model.config = { ...c, numLabels: spec.task.labels.length };
    if (generation && c.modelType !== 'llama') throw new Error(`generation tasks run on Llama models; ${spec.model} is ${c.modelType}`);
    // LoRA targets: the family's linears; PEFT's defaults for the family when not given.
    const linears = blockLinears(c);
    const targets = spec.lora.targets ?? (c.modelType === 'llama' ? ['self_attn.q_proj', 'self_attn.v_proj'] : ['attn.c_attn']);
    const unknown = targets.find((t) => !linears.includes(t));
    if (unknown) throw new Error(`lora.targets: '${unknown}' is not a ${c.modelType} block linear; use some of ${linears.join(', ')}`);
    spec = { ...spec, lora: { ...spec.lora, targets } };
    const tokenizer = await readTokenizer(spec.model, c);
    const cuts: RunRecord['cuts'] = {};
    for (const d of spec.devices) {
      if (d.cut !== undefined) {
        if (d.cut >= c.nLayer) throw new Error(`device ${d.id}: cut ${d.cut} leaves the server no block (the model has ${c.nLayer})`);
        cuts[d.id] = { cut: d.cut, planned: false };
      } else {
        const e = planCut(c, d.profile, spec.training.batchSize, spec.training.seqLen, d.id);
        cuts[d.id] = { cut: e.cut, memoryMB: Math.round(e.memoryMB), batchSeconds: Number(e.batchSeconds.toPrecision(3)), planned: true };
      }
    }
    const record: RunRecord = {
      id,
      spec,
      createdAt: new Date().toISOString(),
      cuts,
      deepestCut: Math.max(...Object.values(cuts).map((x) => x.cut)),
      modelName: basename(spec.model),
    };
    await putJson(this.opts.store, keys.run(id), record);
    this.runs.set(id, { record, model, tokenizer, updates: new Map(), segments: new Map() });
    this.log(`run ${id}: created; cuts ${JSON.stringify(Object.fromEntries(Object.entries(cuts).map(([k, v]) => [k, v.cut])))}, adapters on blocks ${record.deepestCut}..${c.nLayer - 1}`);
    return record;
  }

  list(): RunRecord[] {
    return [...this.runs.values()].map((s) => s.record);
  }

  state(id: string): RunState {
    const s = this.runs.get(id);
    if (!s) throw new NotFound(`no run '${id}'`);
    return s;
  }

  progress(id: string): RoundProgress | undefined {
    return this.state(id).progress;
  }

  /** Starts the run's next round in the background; returns its number. */
  async trigger(id: string): Promise<number> {
    const s = this.state(id);
    if (s.running) throw new Conflict(`run ${id} is already running round ${s.progress?.round}`);
    const unfinished = await this.unfinishedRound(id);
    let round = unfinished;
    if (round === undefined) {
      round = 0;
      while (await this.opts.store.head(keys.roundDone(id, round))) round++;
    }
    this.start(s, round);
    return round;
  }

  /** Resolves when the run has no round in progress. */
  async idle(id: string): Promise<void> {
    await this.state(id).running;
  }

  private start(s: RunState, round: number): void {
    s.running = this.runRound(s, round)
      .catch((e) => {
        if (s.progress) Object.assign(s.progress, { phase: 'failed', error: (e as Error).message });
        this.log(`run ${s.record.id} round ${round} failed: ${(e as Error).message}`);
        // The trainer holds the steps taken since the last checkpoint: the next trigger resumes from that
        // checkpoint instead, so no batch is trained twice.
        s.trainer?.dispose();
        Object.assign(s, { trainer: undefined, checkpoint: undefined, deviceStart: undefined, updates: new Map() });
      })
      .finally(() => (s.running = undefined));
  }

  async metrics(id: string): Promise<RoundMetrics[]> {
    this.state(id);
    const bytes = await this.opts.store.get(keys.metrics(id));
    if (!bytes) return [];
    // A line cut short by a crash mid-write is dropped; its round rewrites it when it resumes.
    return new TextDecoder()
      .decode(bytes)
      .split('\n')
      .flatMap((l) => {
        try {
          return l ? [JSON.parse(l) as RoundMetrics] : [];
        } catch {
          return [];
        }
      });
  }

  async adapterFile(id: string, round: number | 'latest', file: string): Promise<Uint8Array> {
    this.state(id);
    if (file !== ADAPTER_CONFIG && file !== ADAPTER_WEIGHTS) throw new NotFound(`no adapter file '${file}': there are ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS}`);
    const r = round === 'latest' ? (await this.metrics(id)).at(-1)?.round : round;
    const bytes = r === undefined ? undefined : await this.opts.store.get(keys.adapter(id, r, file));
    if (!bytes) throw new NotFound(`run ${id} has no adapter for round ${round} yet`);
    return bytes;
  }

  async plan(id: string, round: number): Promise<RoundPlan> {
    this.state(id);
    const plan = await getJson<RoundPlan>(this.opts.store, keys.plan(id, round));
    if (!plan) throw new NotFound(`run ${id} has no round ${round}`);
    return plan;
  }

  client(s: RunState, deviceId: string): DeviceClient {
    const d = s.record.spec.devices.find((x) => x.id === deviceId);
    if (!d) throw new NotFound(`run ${s.record.id} has no device '${deviceId}'`);
    return new DeviceClient(d.url, d.id, this.opts.roundSecret);
  }

  private async prepare(s: RunState): Promise<{ model: Model; trainer: Trainer; tokenizer: Tokenizer }> {
    const { record } = s;
    const generation = record.spec.task.kind === 'generation';
    if (!s.model) {
      s.model = await readModelFolder(record.spec.model);
      if (!generation) s.model.config = { ...s.model.config, numLabels: record.spec.task.labels.length };
    }
    s.tokenizer ??= await readTokenizer(record.spec.model, s.model.config);
    s.evalRows ??= generation ? await generationEvalRows(record.spec) : await evaluationRows(record.spec);
    if (!s.trainer) {
      const { lora, optimizer, training } = record.spec;
      s.trainer = new Trainer(
        s.model,
        {
          lora: { ...lora, targets: lora.targets! },
          optimizer: { weightDecay: optimizer.weightDecay, clipNorm: optimizer.clipNorm },
          schedule: { lr: optimizer.lr, warmupSteps: optimizer.warmupSteps, kind: optimizer.schedule, totalSteps: record.totalSteps },
          seed: training.seed,
        },
        record.deepestCut,
        { task: generation ? 'causal-lm' : 'classification' },
      );
      const loaded = await loadCheckpoint(this.opts.store, record.id, s.trainer, this.log);
      if (loaded) {
        s.checkpoint = loaded.meta;
        s.updates = loaded.updates;
        s.deviceStart = loaded.start;
      }
    }
    return { model: s.model, trainer: s.trainer, tokenizer: s.tokenizer };
  }

  /**
   * The model folder's tokenizer.json in storage (content-addressed), for devices that do not hold the family's
   * tokenizer; null for GPT-2, whose BPE devices hold.
   */
  private async tokenizerRef(s: RunState, model: Model): Promise<RunState['tokenizerRef']> {
    if (s.tokenizerRef !== undefined) return s.tokenizerRef;
    if (model.config.modelType !== 'llama') return (s.tokenizerRef = null);
    const bytes = await readFile(join(s.record.spec.model, TOKENIZER_FILE));
    const sha256 = await sha256Hex(bytes);
    if (!(await this.opts.store.head(keys.tokenizer(sha256)))) await this.opts.store.put(keys.tokenizer(sha256), bytes, 'application/json');
    return (s.tokenizerRef = { sha256, bos: model.config.bosTokenId, eos: model.config.eosTokenIds[0]! });
  }

  /** The device's model segment (and token table) in storage, exported once per cut and weight type. */
  private async segment(s: RunState, model: Model, cut: number, weights: 'fp32' | 'int8') {
    const key = `${cut}:${weights}`;
    let seg = s.segments.get(key);
    if (!seg) {
      const exported = await deviceSegment(model, cut, weights);
      // Content-addressed: what is stored under a hash never changes, so an existing object is left as it is.
      const putOnce = async (key: string, bytes: Uint8Array) => {
        if (!(await this.opts.store.head(key))) await this.opts.store.put(key, bytes);
      };
      await putOnce(keys.devicePrefix(exported.sha256, cut), exported.onnx);
      if (exported.tokenTable) await putOnce(keys.tokenTable(exported.tokenTable.sha256), exported.tokenTable.bytes);
      if (exported.weights) await putOnce(keys.segmentWeights(exported.weights.sha256), exported.weights.bytes);
      s.segments.set(key, (seg = { modelSha256: exported.sha256, tokenTableSha256: exported.tokenTable?.sha256, weightsSha256: exported.weights?.sha256 }));
    }
    return seg;
  }

  private async runRound(s: RunState, round: number): Promise<void> {
    const { record } = s;
    const { spec } = record;
    const started = performance.now();
    const progress: RoundProgress = { round, phase: 'planning', order: [], batchesTotal: 0, batchesTrained: 0, losses: [], devices: {}, rejected: [] };
    s.progress = progress;
    const { model, trainer, tokenizer } = await this.prepare(s);
    const store = this.opts.store;
    const tokenizerRef = (await this.tokenizerRef(s, model)) ?? undefined;

    // Plan, or read the plan of the round being resumed.
    let plan = await getJson<RoundPlan>(store, keys.plan(record.id, round));
    if (!plan) {
      const views: DeviceView[] = await Promise.all(
        spec.devices.map(async (d) => {
          const cut = record.cuts[d.id].cut;
          const seg = await this.segment(s, model, cut, d.profile.weights);
          const client = this.client(s, d.id);
          const [shards, policy] = await Promise.all([client.shards().catch((e: Error) => e), client.policy().catch((e: Error) => e)]);
          return { id: d.id, cut, ...seg, tokenizerSha256: tokenizerRef?.sha256, shards, policy };
        }),
      );
      plan = await planRound(store, record.id, spec, round, views, model.config.padTokenId, s.updates);
      if (plan.order.length === 0) throw new Error(`no device can take part in round ${round}: ${JSON.stringify(plan.skipped)}`);
      if (record.totalSteps === undefined) {
        record.totalSteps = spec.training.rounds * Object.values(plan.devices).reduce((a, d) => a + d.batches, 0);
        trainer.spec.schedule.totalSteps = record.totalSteps;
        await putJson(store, keys.run(record.id), record);
      }
      await putJson(store, keys.plan(record.id, round), plan);
    }
    progress.order = plan.order;
    for (const [id, reason] of Object.entries(plan.skipped)) progress.devices[id] = { cut: record.cuts[id].cut, state: 'skipped', reused: false, batches: 0, trained: 0, bytes: 0, error: reason };
    for (const id of plan.order) {
      const d = plan.devices[id];
      progress.devices[id] = { cut: d.cut, state: 'waiting', reused: d.sourceRound !== round, batches: d.batches, trained: 0, bytes: 0 };
    }
    progress.batchesTotal = plan.order.reduce((a, id) => a + plan!.devices[id].batches, 0);
    this.log(`run ${record.id} round ${round}: order ${plan.order.join(' > ')}${Object.keys(plan.skipped).length ? `; skipped ${JSON.stringify(plan.skipped)}` : ''}`);

    const startDevice = async (id: string) => {
      const d = plan!.devices[id];
      if (d.sourceRound !== round) return;
      const request = await buildRoundRequest(store, {
        runId: record.id,
        round,
        deviceId: id,
        modelSha256: d.modelSha256,
        tokenTableSha256: d.tokenTableSha256,
        weightsSha256: d.weightsSha256,
        tokenizer: tokenizerRef,
        task: spec.task.kind,
        cut: d.cut,
        rows: d.rows,
        batchSize: spec.training.batchSize,
        seqLen: spec.training.seqLen,
        dtype: spec.training.dtype,
        labels: spec.task.labels,
        padTokenId: model.config.padTokenId,
        shards: d.shards,
        expiresInSeconds: this.opts.urlSeconds,
      });
      await this.client(s, id)
        .startRound(request)
        .catch((e: Error) => Object.assign(progress.devices[id], { state: 'failed', error: e.message }));
    };
    const pipelined = (this.opts.schedule ?? 'pipelined') === 'pipelined';
    // Pipelined: every device that must compute starts now and works while the server trains on the ones before it.
    if (pipelined) await Promise.all(plan.order.map(startDevice));

    // Train device after device. A resumed round skips what its checkpoint says was trained; a round whose training
    // had finished goes straight to its evaluation and outputs.
    const previous = s.checkpoint?.round === round ? s.checkpoint : undefined;
    const consumed = new Set(previous?.consumed ?? []);
    const losses = [...(previous?.losses ?? [])];
    const finished = new Set(previous?.finished ?? []);
    let current: DeviceStart | undefined = previous ? s.deviceStart : undefined;
    let seq = s.checkpoint?.seq ?? 0;
    // Checkpoints cost a readback of the adapters and optimizer state and a PUT: at most one per checkpointSeconds
    // within a device's batches, and one after each device.
    const checkpointMs = (this.opts.checkpointSeconds ?? 30) * 1000;
    let lastCheckpoint = performance.now();
    const checkpoint = (complete: boolean) => {
      lastCheckpoint = performance.now();
      s.checkpoint = { seq: ++seq, round, complete, consumed: [...consumed], losses, finished: [...finished] };
      return saveCheckpoint(store, record.id, trainer, s.checkpoint, s.updates, current);
    };
    progress.batchesTrained = consumed.size;
    progress.phase = 'training';
    let trainMs = 0;
    const trainStart = performance.now();
    for (const id of previous?.complete ? [] : plan.order) {
      const d = plan.devices[id];
      const dp = progress.devices[id];
      if (finished.has(id)) {
        // Trained before the server was restarted: its batches and its GraB update are in the checkpoint.
        Object.assign(dp, { state: 'trained', trained: [...consumed].filter((k) => k.startsWith(keys.activations(record.id, id, d.sourceRound))).length });
        continue;
      }
      if (!pipelined) await startDevice(id);
      if (dp.state === 'failed') continue;
      dp.state = 'training';
      // GraB's update for this device is measured from the adapters it started from, which a resumed round reads
      // from its checkpoint rather than from the adapters as they are now.
      if (spec.ordering.kind === 'grab' && current?.device !== id) current = { device: id, adapters: trainer.flatAdapters() };
      const before = spec.ordering.kind === 'grab' ? current!.adapters : undefined;
      const shuffle = (batches: unknown[]) => permutation(batches.map((_, i) => String(i)), new Random(spec.training.seed * 31 + round * 7 + hashString(id))).map(Number);
      // One step in flight: the next batch's step is issued before the last one's loss is read, so a GPU never
      // waits for JavaScript. A checkpoint first waits for the step in flight, so what it saves is what it lists.
      let inFlight: { key: string; step: PendingStep } | undefined;
      const settle = async () => {
        if (!inFlight) return;
        const { key, step } = inFlight;
        inFlight = undefined;
        const t0 = performance.now();
        // On CPU backends a step runs synchronously and its result is ready at once: without this turn of the event
        // loop, API requests and prefetch downloads would wait until the feed itself has to wait.
        await new Promise((resolve) => setImmediate(resolve));
        const { loss } = await step.result();
        trainMs += performance.now() - t0;
        consumed.add(key);
        losses.push(loss);
        dp.trained++;
        progress.batchesTrained++;
        progress.lastLoss = loss;
        progress.losses.push({ ms: Math.round(performance.now() - started), loss });
      };
      let failure: unknown;
      try {
        for await (const batch of activationFeed(
          store,
          {
            runId: record.id,
            deviceId: id,
            round: d.sourceRound,
            cut: d.cut,
            nEmbd: model.config.nEmbd,
            // Generation: a next-token id (or IGNORE_INDEX) per position; classification: a class per row.
            labels: spec.task.kind === 'generation' ? { perToken: true, classes: model.config.vocabSize } : { perToken: false, classes: spec.task.labels.length },
            batches: d.batches,
            maxBatchBytes: maxBatchBytes(spec.training.batchSize, spec.training.seqLen, model.config.nEmbd),
          },
          {
            prefetch: this.opts.prefetch,
            pollMs: this.opts.pollMs,
            order: shuffle,
            skip: consumed,
            deviceStatus: d.sourceRound === round ? () => this.client(s, id).roundStatus(record.id, round) : undefined,
            onReject: (key, why) => {
              progress.rejected.push(`${key}: ${why}`);
              this.log(`run ${record.id}: rejected ${key}: ${why}`);
            },
            onManifest: (m) => (dp.bytes = m.batches.reduce((a, b) => a + b.bytes, 0)),
          },
        )) {
          const t0 = performance.now();
          const step = trainer.step(batch);
          trainMs += performance.now() - t0;
          await settle();
          inFlight = { key: batch.key, step };
          if (performance.now() - lastCheckpoint >= checkpointMs) {
            await settle();
            await checkpoint(false);
          }
        }
      } catch (e) {
        failure = e;
      }
      await settle();
      if (failure === undefined) dp.state = 'trained';
      else if (failure instanceof DeviceRoundFailed) {
        Object.assign(dp, { state: 'failed', error: failure.message });
        this.log(`run ${record.id}: ${failure.message}`);
      } else throw failure;
      if (before) {
        const after = trainer.flatAdapters();
        s.updates.set(id, after.map((x, i) => x - before[i]));
      }
      finished.add(id);
      current = undefined;
      if (dp.trained > 0) await checkpoint(false);
      if (d.sourceRound === round) dp.forwardMs = (await this.client(s, id).roundStatus(record.id, round).catch(() => undefined))?.forwardMs;
    }
    const trainWall = performance.now() - trainStart;
    if (!previous?.complete) await checkpoint(true);

    // Outputs. Each write is idempotent, so a server killed here redoes them on resume without duplicates.
    progress.phase = 'evaluating';
    const evaluation = this.evaluate(s, trainer, tokenizer);
    const files = adapterFiles(trainer.exportAdapter(), model.config, record.modelName);
    for (const [file, bytes] of Object.entries(files)) await store.put(keys.adapter(record.id, round, file), bytes);
    const metrics: RoundMetrics = {
      round,
      order: plan.order,
      steps: losses.length,
      trainLoss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN,
      evalLoss: evaluation?.loss,
      evalAccuracy: evaluation?.accuracy,
      evalRows: s.evalRows?.length ?? 0,
      samples: evaluation?.samples,
      devices: Object.entries(progress.devices).map(([id, p]) => ({ id, cut: p.cut, batches: p.trained, reused: p.reused, forwardMs: p.forwardMs, bytes: p.bytes, error: p.error })),
      serverTrainMs: Math.round(trainMs),
      serverIdleMs: Math.round(trainWall - trainMs),
      bytesMoved: Object.values(progress.devices).reduce((a, p) => a + p.bytes, 0),
      wallMs: Math.round(performance.now() - started),
      rejected: progress.rejected.length,
    };
    const lines = (await this.metrics(record.id)).filter((m) => m.round !== round);
    await store.put(keys.metrics(record.id), [...lines, metrics].map((m) => JSON.stringify(m) + '\n').join(''), 'application/x-ndjson');
    await putJson(store, keys.roundDone(record.id, round), metrics);
    progress.phase = 'done';
    this.log(`run ${record.id} round ${round}: trained ${losses.length} batches, loss ${metrics.trainLoss.toFixed(4)}${evaluation ? `, eval accuracy ${(evaluation.accuracy * 100).toFixed(1)}%` : ''}`);
  }

  private evaluate(s: RunState, trainer: Trainer, tokenizer: Tokenizer) {
    const rows = s.evalRows ?? [];
    if (rows.length === 0) return undefined;
    const { spec } = s.record;
    const { batchSize, seqLen } = spec.training;
    if (spec.task.kind === 'generation') return evaluateGeneration(trainer, tokenizer, rows as GenerationExample[], { batchSize, seqLen, ...spec.task.generate });
    return evaluateClassification(trainer, tokenizer, rows as Example[], batchSize, seqLen);
  }
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h % 100_000;
}
