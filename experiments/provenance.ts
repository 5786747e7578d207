/**
 * What made an experiment's results: the base model's weights, the task's rows, the partition, the methods, every
 * training setting the methods ran with, and the code that ran them, each by value or SHA-256, and one key over them
 * all. Results are kept only under the same key: any difference runs the experiment again (never relabels old
 * numbers). The code is keyed by its content (the sources experiments load, not their tests or docs, nor the rest of
 * the server), and the commit is recorded beside it: results are committed after the commit that made them, so a commit cannot be the key.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { createHash } from 'node:crypto';
import ts from 'typescript';
import type { Model } from '../core/model/family.ts';
import { simSpec, type ExperimentOptions } from './experiment-options.ts';

/** Where experiments run from: the sources these load, following their imports, are what the numbers depend on. */
export const CODE_ENTRIES = ['experiments/compare.ts', 'experiments/experiment-cli.ts'];
/** Where those sources live: a change under them marks the recorded commit '+changes'. */
const CODE_DIRS = ['core', 'gpu-server', 'experiments', 'infra'];
/** Sources that only lay out numbers already made (compare's report), not what makes them: a new table or plot keeps results. */
const PRESENTATION = new Set(['experiments/compare.ts', 'experiments/compare-report.ts']);
const codeHashes = new Map<string, Promise<string>>();

/**
 * The files a source loads when it runs, by relative path: its imports and re-exports (not `import type` or `export
 * type`, which load nothing), its dynamic imports of a literal path, and the files it opens as `new URL('./...',
 * import.meta.url)` (a worker script, package.json). Packages are not followed: the lockfile keys them.
 */
function loadedBy(file: string, text: string): string[] {
  const found: string[] = [];
  const relative = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node) && node.text.startsWith('.')) found.push(normalize(join(dirname(file), node.text)));
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) relative(node.moduleSpecifier);
    else if (ts.isExportDeclaration(node) && !node.isTypeOnly) relative(node.moduleSpecifier);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) relative(node.arguments[0]);
    else if (ts.isNewExpression(node) && node.expression.getText() === 'URL' && node.arguments?.[1]?.getText() === 'import.meta.url')
      relative(node.arguments[0]);
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true));
  return found;
}

/** The files experiments load from `entries`, followed through their imports, by path, with their bytes. */
export async function codeFiles(root = '.', entries = CODE_ENTRIES): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const todo = [...entries];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    const bytes = await readFile(join(root, file)).catch(() => {
      throw new Error(`${file}: not found, yet an experiment's source loads it (experiments/provenance.ts follows the imports)`);
    });
    files.set(file, bytes);
    if (/\.(ts|mts|js|mjs)$/.test(file)) todo.push(...loadedBy(file, bytes.toString('utf8')));
  }
  return files;
}

/**
 * The SHA-256 over what experiments run: the files they load (codeFiles: not tests or docs, nor the server's rounds
 * and API, which no experiment loads), by path and content, and the lockfile; once per process. compare's report is
 * left out, but what it imports is followed.
 */
export function codeSha256(root = '.', entries = CODE_ENTRIES): Promise<string> {
  const id = JSON.stringify([root, entries]);
  let h = codeHashes.get(id);
  if (!h) {
    h = (async () => {
      const files = [...(await codeFiles(root, entries))].filter(([f]) => !PRESENTATION.has(f)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const lockfile = await readFile(join(root, 'package-lock.json')).catch(() => undefined);
      if (lockfile) files.push(['package-lock.json', lockfile]);
      const hash = createHash('sha256');
      for (const [f, bytes] of files) hash.update(`${f}\0${bytes.byteLength}\0`).update(bytes);
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
