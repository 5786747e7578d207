/** Command-line settings shared by `npm run experiment` and `npm run compare`. */
import type { PartitionSpec } from '../core/data/partition.ts';
import { initModel } from '../core/model/init.ts';
import { gpt2Config } from '../core/model/config.ts';
import type { GPT2Model } from '../core/model/weights.ts';
import { asGpt2 } from '../core/model/family.ts';
import { readModelFolder } from '../gpu-server/model/folder.ts';
import { METHODS, type MethodName } from './sim/accounting.ts';

export function parsePartition(text: string): PartitionSpec {
  const [kind, value] = text.split(':');
  if (kind === 'iid' || kind === 'extreme') return { kind };
  if ((kind === 'dirichlet' || kind === 'quantity') && Number(value) > 0) return { kind, alpha: Number(value) };
  throw new Error(`partition '${text}' is not iid, extreme, dirichlet:ALPHA or quantity:ALPHA`);
}

export function parseMethods(text: string): MethodName[] {
  const names = text.split(',');
  for (const n of names) if (!METHODS.includes(n as MethodName)) throw new Error(`unknown method '${n}': use ${METHODS.join(', ')}`);
  return names as MethodName[];
}

/** A model folder, or 'random' for a randomly initialised small GPT-2 (what tests use). */
export async function loadBaseModel(spec: string): Promise<{ model: GPT2Model; name: string }> {
  if (spec === 'random') return { model: initModel(gpt2Config({ nLayer: 4, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 }), name: 'random' };
  try {
    return { model: asGpt2(await readModelFolder(spec), 'the experiments'), name: spec };
  } catch (e) {
    throw new Error(`${(e as Error).message} (make a pretrained base model with: npm run pretrain -- --out ${spec})`);
  }
}
