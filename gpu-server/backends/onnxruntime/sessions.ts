/**
 * One onnxruntime session per graph of a family (forward, backward, inference, LM head), created on first use with
 * the provider's options and shared by every block (weights are inputs); its profile, read from onnxruntime's
 * profiler files.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { BlockFamily } from './families.ts';
import type { OpTime, OrtOptions } from './types.ts';

export type Graph =
  | 'forward'
  | 'backward'
  | 'backward-lowest'
  | 'forward-pooled'
  | 'backward-pooled'
  | 'backward-lowest-pooled'
  | 'infer-adapted'
  | 'infer-frozen'
  | 'lm-loss'
  | 'lm-logits';

export class GraphSessions {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(
    private readonly family: BlockFamily,
    private readonly options: OrtOptions,
  ) {}

  private graph(kind: Graph): Uint8Array {
    const f = this.family;
    if (kind === 'lm-loss' || kind === 'lm-logits') {
      if (!f.lmHead) throw new Error('this family has no LM head graph on onnxruntime (GPT-2 runs train classifiers)');
      return f.lmHead.graph(kind === 'lm-loss' ? 'loss' : 'logits');
    }
    if (kind === 'infer-adapted' || kind === 'infer-frozen') return f.inferenceGraph(kind === 'infer-adapted');
    const pooled = kind.endsWith('-pooled');
    return kind.startsWith('forward') ? f.forwardGraph(pooled) : f.backwardGraph(!kind.startsWith('backward-lowest'), pooled);
  }

  session(kind: Graph): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      const bytes = this.graph(kind);
      s = ort.InferenceSession.create(bytes, {
        executionProviders: [this.options.provider],
        intraOpNumThreads: this.options.threads ?? availableParallelism(),
        graphOptimizationLevel: 'all',
        // No spin-waiting between runs: the step's JS and TF.js's wasm threads (the head, AdamW) run between them, and
        // on few cores onnxruntime's spinning threads took their time (2 cores: steps 5-10% faster without).
        ...(this.options.provider === 'cpu' ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
        ...(this.options.profile ? { enableProfiling: true, profileFilePrefix: join(tmpdir(), `splitfrozen-ort-${process.pid}-${kind}`) } : {}),
      });
      this.sessions.set(kind, s);
    }
    return s;
  }

  feeds(session: ort.InferenceSession, values: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    for (const name of session.inputNames) {
      const v = values[name];
      if (!v) throw new Error(`onnxruntime block graph: no value for input '${name}'`);
      out[name] = v;
    }
    return out;
  }

  /**
   * Ends profiling: kernel time a step by graph and operator, largest first, over the last `steps` of `warmUp + steps`
   * steps run alike (each runs every session as often), so that warm-up is left out. The profiler's files are removed.
   */
  async profile({ steps = 1, warmUp = 0 } = {}): Promise<OpTime[]> {
    if (!this.options.profile) throw new Error('profile() needs OrtBlocks created with { profile: true }');
    const byOp = new Map<string, number>();
    for (const [graph, s] of this.sessions) {
      (await s).endProfiling();
      const dir = tmpdir();
      for (const file of (await readdir(dir)).filter((f) => f.startsWith(`splitfrozen-ort-${process.pid}-${graph}_`))) {
        const events = JSON.parse(await readFile(join(dir, file), 'utf8')) as Array<{
          cat?: string;
          name: string;
          ts: number;
          dur: number;
          args?: { op_name?: string };
        }>;
        const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
        const from = runs[Math.floor((runs.length * warmUp) / (warmUp + steps))]?.ts ?? Infinity;
        for (const e of events)
          if (e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= from)
            byOp.set(`${graph}\t${e.args?.op_name}`, (byOp.get(`${graph}\t${e.args?.op_name}`) ?? 0) + e.dur / 1000 / steps);
        await rm(join(dir, file));
      }
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    return [...byOp]
      .map(([key, ms]) => ({ graph: key.split('\t')[0]!, op: key.split('\t')[1]!, ms: Math.round(ms), share: Number((ms / total).toFixed(3)) }))
      .sort((a, b) => b.ms - a.ms);
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
