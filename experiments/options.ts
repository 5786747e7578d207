/** Command-line settings shared by `npm run experiment` and `npm run compare`. */
import type { PartitionSpec } from '../core/data/partition.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { familyNames, familyOf, type Model } from '../core/model/family.ts';
import { llamaConfig, TINY_LLAMA } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { llama3TokenizerFiles } from '../core/tokenizer/llama3.ts';
import { HfTokenizer, specialTokens } from '../core/tokenizer/hf.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import { readModelFolder, readTokenizer } from '../gpu-server/model-folder/folder.ts';
import { METHODS, type MethodName } from './sim/accounting.ts';
import type { Participation } from './sim/participation.ts';
import { fail } from '../infra/cli.ts';

export function parsePartition(text: string): PartitionSpec {
  const [kind, value] = text.split(':');
  if (kind === 'iid' || kind === 'extreme') return { kind };
  if ((kind === 'dirichlet' || kind === 'quantity') && Number(value) > 0) return { kind, alpha: Number(value) };
  throw new Error(`partition '${text}' is not iid, extreme, dirichlet:ALPHA or quantity:ALPHA`);
}

/** --participation (a share in (0, 1]) and --dropout (a share in [0, 1)). */
export function parseParticipation(fraction: string, dropout: string): Participation {
  const share = (name: string, text: string, zeroAllowed: boolean) => {
    const x = Number(text);
    if (!(zeroAllowed ? x >= 0 && x < 1 : x > 0 && x <= 1)) fail(`--${name} must be a number in ${zeroAllowed ? '[0, 1)' : '(0, 1]'}, got '${text}'`);
    return x;
  };
  return { fraction: share('participation', fraction, false), dropout: share('dropout', dropout, true) };
}

export function parseMethods(text: string): MethodName[] {
  const names = text.split(',');
  for (const n of names) if (!METHODS.includes(n as MethodName)) throw new Error(`unknown method '${n}': use ${METHODS.join(', ')}`);
  return names as MethodName[];
}

/**
 * A model folder of any family and its tokenizer, or 'random' for a randomly initialised small model (what tests
 * use): a GPT-2, or, where the task needs `generation`, a Llama with Llama 3's vocabulary and tokenizer (the server
 * generates with the families that say so).
 */
export async function loadBaseModel(spec: string, needs?: 'generation'): Promise<{ model: Model; name: string; tokenizer?: Tokenizer }> {
  if (spec === 'random' && needs === 'generation') {
    const model = initLlama(llamaConfig(TINY_LLAMA), { seed: 0 });
    const { json, config } = llama3TokenizerFiles();
    return { model, name: 'random', tokenizer: new HfTokenizer(json, config, specialTokens(model.config)) };
  }
  if (spec === 'random') return { model: initModel(gpt2Config({ nLayer: 4, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 }), name: 'random' };
  let model: Model;
  try {
    model = await readModelFolder(spec);
  } catch (e) {
    throw new Error(`${(e as Error).message} (make a pretrained base model with: npm run pretrain -- --out ${spec})`);
  }
  if (needs === 'generation' && !familyOf(model.config).generation) {
    throw new Error(
      `${spec} is a ${familyOf(model.config).name} model; a generation task needs a ${familyNames((f) => f.generation)} model (every family runs the classification tasks)`,
    );
  }
  return { model, name: spec, tokenizer: await readTokenizer(spec, model.config) };
}
