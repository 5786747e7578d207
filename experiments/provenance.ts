/**
 * What made an experiment's results: the base model's weights, the task's rows, the partition, the methods and
 * every setting, each by value or SHA-256, and one key over them all. Results are kept only under the same key: any
 * difference runs the experiment again (never relabels old numbers).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../core/auth/signing.ts';
import type { Model } from '../core/model/family.ts';
import type { ExperimentOptions } from './experiment.ts';

export type Provenance = Record<string, unknown>;

const modelHashes = new WeakMap<Model, Promise<string>>();

/** The SHA-256 of a model's config and weights (names in order, then their bytes). */
function modelSha256(model: Model): Promise<string> {
  let h = modelHashes.get(model);
  if (!h) {
    const names = [...model.params.keys()].sort();
    const header = new TextEncoder().encode(JSON.stringify({ config: model.config, names, sizes: names.map((n) => model.params.get(n)!.length) }));
    const parts = [header, ...names.map((n) => new Uint8Array(model.params.get(n)!.buffer, model.params.get(n)!.byteOffset, model.params.get(n)!.byteLength))];
    const all = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.byteLength;
    }
    modelHashes.set(model, (h = sha256Hex(all)));
  }
  return h;
}

export async function provenance(o: ExperimentOptions): Promise<{ key: string; provenance: Provenance }> {
  const p: Provenance = {
    model: await modelSha256(o.model),
    data: await sha256Hex(JSON.stringify({ name: o.task.name, train: o.task.train, eval: o.task.eval })),
    partition: o.partition,
    methods: o.methods,
    settings: { devices: o.devices, rounds: o.rounds, trainRows: o.trainRows, evalRows: o.evalRows, batchSize: o.batchSize, seqLen: o.seqLen, cut: o.cut, lr: o.lr, rank: o.rank, ordering: o.ordering, avgEvery: o.avgEvery, seed: o.seed },
  };
  return { key: await sha256Hex(JSON.stringify(p)), provenance: p };
}

/** The results in `dir` if they were made under `key`, else why they must be made again. */
export async function keptResults<T>(dir: string, key: string, now: Provenance): Promise<{ kept: T } | { rerun: string }> {
  let previous: T & { key?: string; provenance?: Provenance };
  try {
    previous = JSON.parse(await readFile(join(dir, 'results.json'), 'utf8'));
  } catch {
    return { rerun: 'no results yet' };
  }
  if (previous.key === key) return { kept: previous };
  if (!previous.provenance) return { rerun: 'results made before they were keyed by what made them' };
  const differ = Object.keys(now).filter((k) => JSON.stringify(now[k]) !== JSON.stringify(previous.provenance![k]));
  return { rerun: `made with a different ${differ.join(', ') || 'key'}` };
}
