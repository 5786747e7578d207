/**
 * A new run from the operator's spec: the files it names checked against the server's data folders, the model folder
 * read, LoRA targets checked against the family's linears, and each device's cut planned from its profile and
 * checked against its owner's approvals.
 */
import { familyNames, familyOf, blockLinears, type Model } from '../../core/model/family.ts';
import { StorageError } from '../../core/storage/store.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { readModelFolder, readTokenizer } from '../model-folder/folder.ts';
import { checkApprovedCuts, type PolicyOf } from './approved-cuts.ts';
import { planCut } from './cuts.ts';
import { checkDataPath } from './data-dirs.ts';
import { generationEval } from './data.ts';
import { SpecError } from './errors.ts';
import type { RunSpec } from './spec.ts';
import type { RunRecord } from './types.ts';

export interface NewRun {
  record: RunRecord;
  model: Model;
  tokenizer: Tokenizer;
}

export function newRunId(): string {
  return `run-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${Math.random().toString(36).slice(2, 6)}`;
}

/** Every failure here is the spec's (a path, a model folder, a target, a cut): thrown as SpecError. */
export async function newRun(id: string, spec: RunSpec, dataDirs: readonly string[], policyOf: PolicyOf): Promise<NewRun> {
  try {
    return await build(id, spec, dataDirs, policyOf);
  } catch (e) {
    if (e instanceof StorageError || e instanceof SpecError) throw e;
    throw new SpecError((e as Error).message);
  }
}

async function build(id: string, spec: RunSpec, dataDirs: readonly string[], policyOf: PolicyOf): Promise<NewRun> {
  await checkDataPath(spec.model, dataDirs, 'model');
  if (spec.task.eval) await checkDataPath(spec.task.eval.path, dataDirs, 'task.eval.path');
  const shotsFrom = spec.task.generate.fewshot.path;
  if (shotsFrom) await checkDataPath(shotsFrom, dataDirs, 'task.generate.fewshot.path');
  // Held-out rows and the shots drawn for them, read now so that a bad file or too few rows fail here, not in a round.
  if (spec.task.kind === 'generation') await generationEval(spec);
  const model = await readModelFolder(spec.model);
  const c = model.config;
  const generation = spec.task.kind === 'generation';
  if (!generation && spec.task.labels.length !== c.numLabels && model.params.has('score.weight')) {
    throw new Error(`the model's classification head has ${c.numLabels} labels, the task ${spec.task.labels.length}`);
  }
  if (!generation) model.config = { ...c, numLabels: spec.task.labels.length };
  if (generation && !familyOf(c).generation)
    throw new Error(`generation tasks run on ${familyNames((f) => f.generation)} models; ${spec.model} is ${familyOf(c).name}`);
  // LoRA targets: the family's linears; PEFT's defaults for the family when not given.
  const linears = blockLinears(c);
  const targets = spec.lora.targets ?? [...familyOf(c).defaultTargets];
  const unknown = targets.find((t) => !linears.includes(t));
  if (unknown) throw new Error(`lora.targets: '${unknown}' is not a ${familyOf(c).name} block linear; use some of ${linears.join(', ')}`);
  spec = { ...spec, lora: { ...spec.lora, targets } };
  const tokenizer = await readTokenizer(spec.model, c);
  const planned: RunRecord['cuts'] = {};
  for (const d of spec.devices) {
    if (d.cut !== undefined) {
      if (d.cut >= c.nLayer) throw new Error(`device ${d.id}: cut ${d.cut} leaves the server no block (the model has ${c.nLayer})`);
      planned[d.id] = { cut: d.cut, planned: false };
    } else {
      const e = planCut(c, d.profile, spec.training.batchSize, spec.training.seqLen, d.id);
      planned[d.id] = { cut: e.cut, memoryMB: Math.round(e.memoryMB), batchSeconds: Number(e.batchSeconds.toPrecision(3)), planned: true };
    }
  }
  // Checked against what the owners approved, so that a cut no owner would run fails here, not at a round.
  const cuts = await checkApprovedCuts(spec, c, planned, policyOf);
  const record: RunRecord = {
    id,
    spec,
    createdAt: new Date().toISOString(),
    cuts,
    deepestCut: Math.max(...Object.values(cuts).map((x) => x.cut)),
    // What PEFT loads as the adapters' base: the name the operator gave, or the folder as the spec names it.
    modelName: spec.baseModel ?? spec.model,
  };
  return { record, model, tokenizer };
}
