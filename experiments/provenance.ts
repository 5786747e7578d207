/**
 * What made an experiment's results: the base model's weights, the task's rows, the partition, the methods, every
 * training setting the methods ran with, and the code that ran them, each by value or SHA-256, and one key over them
 * all. Results are kept only under the same key: any difference runs the experiment again (never relabels old
 * numbers). The code is keyed by its content (the sources the methods run, not their tests or docs), and the commit
 * is recorded beside it: results are committed after the commit that made them, so a commit cannot be the key.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Model } from '../core/model/family.ts';
import { simSpec, type ExperimentOptions } from './experiment-options.ts';

/** The sources an experiment's numbers depend on: the model, the trainer and the methods, and the locked packages. */
export const CODE_DIRS = ['core', 'gpu-server', 'experiments'];
/** Sources that only lay out numbers already made (compare's report), not what makes them: a new table or plot keeps results. */
const PRESENTATION = new Set(['experiments/compare.ts', 'experiments/compare-report.ts']);
const SOURCE = /\.(ts|js|mjs)$/;
const codeHashes = new Map<string, Promise<string>>();

/** The SHA-256 over the code under `dirs` (sources, not tests) and the lockfile, by path and content; once per process. */
export function codeSha256(root = '.', dirs = CODE_DIRS): Promise<string> {
  const id = JSON.stringify([root, dirs]);
  let h = codeHashes.get(id);
  if (!h) {
    h = (async () => {
      const files: string[] = [];
      for (const dir of dirs)
        for (const f of await readdir(join(root, dir), { recursive: true }))
          if (SOURCE.test(f) && !f.endsWith('.test.ts') && !f.split(/[\\/]/).includes('node_modules') && !PRESENTATION.has(join(dir, f)))
            files.push(join(dir, f));
      const hash = createHash('sha256');
      for (const f of [...files.sort(), 'package-lock.json']) {
        const bytes = await readFile(join(root, f)).catch(() => undefined);
        if (bytes) hash.update(`${f}\0${bytes.byteLength}\0`).update(bytes);
      }
      return hash.digest('hex');
    })();
    codeHashes.set(id, h);
  }
  return h;
}

/** The commit checked out, with '+changes' when the code differs from it; 'unknown' outside a git checkout. */
export function commitOf(root = '.'): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const changed = git('status', '--porcelain', '--', ...CODE_DIRS, 'package-lock.json');
    return `${git('rev-parse', 'HEAD')}${changed ? '+changes' : ''}`;
  } catch {
    return 'unknown';
  }
}

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
      trainRows: o.trainRows,
      evalRows: o.evalRows,
      batchSize: o.batchSize,
      seqLen: o.seqLen,
      ...simSpec(o),
      lrByMethod: o.lrByMethod ?? {},
    },
    code: await codeSha256(),
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
