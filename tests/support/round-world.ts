/**
 * For tests of rounds without servers: a run's world in one process. Storage is a MemoryStore whose presigned URLs
 * are served on 127.0.0.1; a device is an in-process stand-in (not a device worker: those are tested under workerd in
 * tests/) that answers as one would and uploads its batches through the round request's presigned URLs, with
 * deterministic hidden states instead of a forward pass (training here needs their shapes, not their meaning).
 */
import { serve } from '@hono/node-server';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../../core/auth/signing.ts';
import { familyOf, makeModel, type ModelType } from '../../core/model/family.ts';
import type { ShapeOptions } from '../../core/model/shape.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import { Random } from '../../core/random.ts';
import { MemoryStore } from '../../core/storage/memory.ts';
import { encodeActivationBatch } from '../../core/wire/activations.ts';
import type { ShardSummary } from '../../core/wire/device-client.ts';
import type { DevicePolicy } from '../../core/wire/policy.ts';
import type { ActivationManifest, RoundRequest, RoundStatus } from '../../core/wire/round.ts';
import { writeModelFolder, writeTokenizer } from '../../gpu-server/model-folder/folder.ts';
import { approvedSpecialTokens } from '../../infra/local/device.ts';
import type { RunSpecInput } from '../../gpu-server/runs/spec.ts';
import type { DeviceApi, RoundOptions } from '../../gpu-server/rounds/context.ts';
import { RunRegistry } from '../../gpu-server/runs/registry.ts';

/** The fixture models' width (by default): the in-process devices' hidden states have it. */
const WIDTH = 32;
/** Each family's tiny shape: 3 blocks of width 32. */
const TINY: Record<ModelType, ShapeOptions> = {
  gpt2: { layers: 3, embd: WIDTH, heads: 4, positions: 32 },
  llama: { layers: 3, embd: WIDTH, heads: 4, kvHeads: 2, inner: 64, positions: 64 },
};
const HIDDEN_SCALE = 0.2;

export class InProcessDevice implements DeviceApi {
  /** Round requests received, newest last, with when each came and when its manifest was uploaded. */
  readonly requests: RoundRequest[] = [];
  readonly requestedAt: number[] = [];
  readonly completedAt: number[] = [];
  private readonly statuses = new Map<string, RoundStatus>();
  /** Set to make the device unreachable. */
  down = false;
  /** Set to make it accept rounds and then upload nothing, its status 'running' for ever (a stalling device). */
  stalls = false;
  /** Its rounds in progress: a test ends only after them. */
  readonly working: Array<Promise<unknown>> = [];

  constructor(
    readonly id: string,
    private readonly rows: number,
    private readonly approvals: DevicePolicy['approvals'],
    /**
     * The device's pace: batch i is uploaded (i + 1) x batchDelayMs after the round starts. A slow device, so that a
     * round can be watched (and cancelled) mid-way, or one of a declared speed (bench:pipeline).
     */
    public batchDelayMs = 0,
    private readonly width = WIDTH,
  ) {}

  private reach(): void {
    if (this.down) throw new Error(`device ${this.id}: connection refused`);
  }

  async shards(): Promise<ShardSummary[]> {
    this.reach();
    return [{ name: 'data', rows: this.rows, task: 'classification', labels: ['0', '1'], etag: 'v1' }];
  }

  async policy(): Promise<DevicePolicy> {
    this.reach();
    return { minCut: 1, approvals: this.approvals, defence: { mechanism: 'none' } };
  }

  async startRound(r: RoundRequest): Promise<RoundStatus> {
    this.reach();
    this.requests.push(r);
    this.requestedAt.push(performance.now());
    const status: RoundStatus = {
      device: this.id,
      runId: r.runId,
      round: r.round,
      state: 'running',
      batchesDone: 0,
      batchesTotal: r.uploads.batches.length,
      failures: [],
      tokens: 0,
      forwardMs: 0,
    };
    this.statuses.set(`${r.runId}/${r.round}`, status);
    this.working.push(this.compute(r, status).catch((e: Error) => Object.assign(status, { state: 'failed', error: e.message })));
    return { ...status };
  }

  async roundStatus(runId: string, round: number): Promise<RoundStatus> {
    this.reach();
    const s = this.statuses.get(`${runId}/${round}`);
    if (!s) throw new Error(`device ${this.id}: no round ${round} of ${runId}`);
    return { ...s };
  }

  private async compute(r: RoundRequest, status: RoundStatus): Promise<void> {
    if (this.stalls) return;
    const { width: nEmbd } = this;
    const { seqLen } = r;
    const rng = new Random(r.round * 1000 + this.id.length);
    const batches = [];
    const started = performance.now();
    for (let i = 0; i < r.uploads.batches.length; i++) {
      const rows = Math.min(r.batchSize, this.rows - i * r.batchSize);
      const labels = Int32Array.from({ length: rows }, (_, j) => (i + j) % 2);
      // Hidden states that carry the label, so that training has something to learn, at norms within what the server
      // accepts of the fixture models at their cuts (about 8x their own) and not so small that onnxruntime's backward
      // slows down (at a quarter of this scale a step took twice as long in bench:pipeline, most likely subnormal floats).
      const hidden = Float32Array.from(
        { length: rows * seqLen * nEmbd },
        (_, k) => HIDDEN_SCALE * (rng.normal() * 0.5 + (labels[Math.floor(k / (seqLen * nEmbd))] ? 0.5 : -0.5)),
      );
      const bytes = encodeActivationBatch(
        {
          device: this.id,
          runId: r.runId,
          round: r.round,
          cut: r.cut,
          index: i,
          rows,
          seqLen,
          nEmbd,
          hidden,
          mask: new Int32Array(rows * seqLen).fill(1),
          labels,
        },
        r.dtype,
      );
      // Batch i is uploaded (i + 1) x batchDelayMs after the start: making it counts towards the device's pace.
      const wait = started + (i + 1) * this.batchDelayMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await fetch(r.uploads.batches[i], { method: 'PUT', body: bytes as Uint8Array<ArrayBuffer> });
      batches.push({ index: i, rows, seqLen, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
      status.batchesDone++;
    }
    const manifest: ActivationManifest = {
      version: 1,
      device: this.id,
      runId: r.runId,
      round: r.round,
      cut: r.cut,
      dtype: r.dtype,
      modelSha256: r.model.sha256,
      rows: this.rows,
      defence: { mechanism: 'none' },
      batches,
    };
    await fetch(r.uploads.manifest, { method: 'PUT', body: JSON.stringify(manifest) });
    status.state = 'complete';
    this.completedAt.push(performance.now());
  }
}

export interface World {
  store: MemoryStore;
  dir: string;
  modelDir: string;
  devices: Map<string, InProcessDevice>;
  spec(overrides?: Partial<RunSpecInput>): RunSpecInput;
  /** A server's run registry on this world: its devices, a 5 ms poll, a checkpoint after each device. */
  registry(options?: Partial<RoundOptions>): RunRegistry;
  /** Waits for the runs of its registries and the devices' rounds, then stops its storage. */
  close(): Promise<void>;
}

/**
 * Storage, a tiny model folder (3 blocks, width 32: GPT-2, or a Llama with Llama 3's vocabulary and tokenizer; a
 * GPT-2 of other sizes on request) and a device per cut (device-1, device-2, ...: by default at cuts 1 and 2), each
 * holding `rows` rows.
 */
export async function world({
  rows = 16,
  batchDelayMs = 0,
  family = 'gpt2',
  cuts = [1, 2],
  shape = {},
}: { rows?: number; batchDelayMs?: number; family?: ModelType; cuts?: number[]; shape?: ShapeOptions } = {}): Promise<World> {
  const store = new MemoryStore();
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: store.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  store.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = await mkdtemp(join(tmpdir(), 'splitfrozen-rounds-'));
  const modelDir = join(dir, `tiny-${family}`);
  const model = makeModel(family, { ...TINY[family], ...shape });
  await writeModelFolder(modelDir, model);
  await writeTokenizer(modelDir, model.config);
  // Owners approve the tokenizer a device fetches (none where the device holds its own).
  const tokenizer = familyOf(family).builtinTokenizer
    ? {}
    : { tokenizer: await sha256Hex(await readFile(join(modelDir, 'tokenizer.json'))), specialTokens: approvedSpecialTokens(model.config) };
  const devices = new Map<string, InProcessDevice>();
  for (const [i, cut] of cuts.entries()) {
    const seg = await deviceSegment(model, cut, 'fp32');
    devices.set(
      `device-${i + 1}`,
      new InProcessDevice(`device-${i + 1}`, rows, [{ sha256: seg.sha256, model: `tiny-${family}`, cut, ...tokenizer }], batchDelayMs, model.config.nEmbd),
    );
  }
  const registries: RunRegistry[] = [];
  return {
    store,
    dir,
    modelDir,
    devices,
    registry: (options = {}) => {
      const r = new RunRegistry({
        store,
        roundSecret: 'secret',
        log: () => {},
        pollMs: 5,
        dataDirs: [dir],
        device: (d) => devices.get(d.id)!,
        checkpointSeconds: 0,
        ...options,
      });
      registries.push(r);
      return r;
    },
    spec: (overrides = {}) => ({
      model: modelDir,
      task: { labels: ['0', '1'] },
      devices: [...devices.keys()].map((id, i) => ({ id, url: `http://${id}.invalid`, cut: cuts[i]! })),
      lora: { rank: 2, alpha: 4, dropout: 0, targets: [...familyOf(family).defaultTargets] },
      optimizer: { lr: 0.01, schedule: 'constant' },
      training: { batchSize: 4, seqLen: 6, rounds: 2, seed: 1 },
      ...overrides,
    }),
    close: async () => {
      for (const r of registries) for (const run of r.list()) await r.idle(run.id);
      await Promise.all([...devices.values()].flatMap((d) => d.working));
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
