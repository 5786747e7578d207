/**
 * What made an experiment's results: the base model's weights, the task's rows, the partition, the methods and
 * every setting, each by value or SHA-256, and one key over them all. Results are kept only under the same key: any
 * difference runs the experiment again (never relabels old numbers).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Model } from '../core/model/family.ts';
import type { ExperimentOptions } from './experiment-options.ts';

export type Provenance = Record<string, unknown>;

const modelHashes = new WeakMap<Model, string>();
const dataHashes = new WeakMap<ExperimentOptions['task'], string>();

/** The SHA-256 of a model's config and weights (names in order, then their bytes), hashed in place (no copy). */
function modelSha256(model: Model): string {
  let h = modelHashes.get(model);
  if (!h) {
    const names = [...model.params.keys()].sort();
    const hash = createHash('sha256').update(JSON.stringify({ config: model.config, names, sizes: names.map((n) => model.params.get(n)!.length) }));
    for (const n of names) hash.update(model.params.get(n)!);
    modelHashes.set(model, (h = hash.digest('hex')));
  }
  return h;
}

/** The SHA-256 of a task's rows, once per task (compare asks for it for every experiment). */
function dataSha256(task: ExperimentOptions['task']): string {
  let h = dataHashes.get(task);
  if (!h)
    dataHashes.set(
      task,
      (h = createHash('sha256')
        .update(JSON.stringify({ name: task.name, train: task.train, eval: task.eval }))
        .digest('hex')),
    );
  return h;
}

export async function provenance(o: ExperimentOptions): Promise<{ key: string; provenance: Provenance }> {
  const p: Provenance = {
    model: modelSha256(o.model),
    data: dataSha256(o.task),
    partition: o.partition,
    methods: o.methods,
    settings: {
      devices: o.devices,
      rounds: o.rounds,
      trainRows: o.trainRows,
      evalRows: o.evalRows,
      batchSize: o.batchSize,
      seqLen: o.seqLen,
      cut: o.cut,
      lr: o.lr,
      rank: o.rank,
      ordering: o.ordering,
      batchOrder: o.batchOrder,
      avgEvery: o.avgEvery,
      seed: o.seed,
    },
  };
  return { key: createHash('sha256').update(JSON.stringify(p)).digest('hex'), provenance: p };
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
