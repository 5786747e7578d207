/**
 * The privacy report: how many of a text's tokens a curious server recovers from the activations at each cut, by
 * the nearest-neighbour inversion attack of core/privacy/inversion.ts. The attacker's reference is text it could
 * have (not the victims'); the victims' hidden states come from the same prefix the devices run (fp32 here: int8
 * prefixes stay within 1% of it).
 */
import * as ort from 'onnxruntime-node';
import type { Model } from '../core/model/family.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { majorityRate, nearestTokens, recoveryRate, type Reference } from '../core/privacy/inversion.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import type { TextInput, Tokenizer } from '../core/tokenizer/tokenizer.ts';

export interface CutPrivacy {
  cut: number;
  /** Share of the victims' real tokens the attack recovers. */
  recovery: number;
  /** Share recovered by always guessing the attacker's most frequent token. */
  majority: number;
  /** Real tokens attacked. */
  tokens: number;
}

/** Hidden states at the prefix's cut for every real token of `texts` (not the start token every row begins with), with the tokens. */
async function hiddenStates(session: ort.InferenceSession, tokenizer: Tokenizer, texts: readonly TextInput[], seqLen: number, d: number): Promise<Reference> {
  const vectors: number[] = [];
  const tokens: number[] = [];
  for (let i = 0; i < texts.length; i += 16) {
    const enc = tokenizer.encodeBatch(texts.slice(i, i + 16), { maxLength: seqLen });
    const shape = [enc.batch, enc.seq];
    const out = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape),
    });
    const hidden = out[PREFIX_OUTPUT].data as Float32Array;
    for (let p = 0; p < enc.ids.length; p++) {
      if (!enc.attentionMask[p] || enc.ids[p] === tokenizer.special.bos) continue;
      tokens.push(enc.ids[p]);
      for (let k = 0; k < d; k++) vectors.push(hidden[p * d + k]);
    }
  }
  return { vectors: Float32Array.from(vectors), tokens: Int32Array.from(tokens), d };
}

/** `tokenizer`: the model's (GPT-2's BPE by default). */
export async function inversionReport(model: Model, cuts: readonly number[], attacker: readonly TextInput[], victims: readonly TextInput[], { seqLen = 48, tokenizer = new GPT2Tokenizer() as Tokenizer } = {}): Promise<CutPrivacy[]> {
  const d = model.config.nEmbd;
  const out: CutPrivacy[] = [];
  for (const cut of cuts) {
    const session = await ort.InferenceSession.create(exportPrefix(model, { cut }), { logSeverityLevel: 3 });
    const reference = await hiddenStates(session, tokenizer, attacker, seqLen, d);
    const target = await hiddenStates(session, tokenizer, victims, seqLen, d);
    await session.release();
    out.push({ cut, recovery: recoveryRate(nearestTokens(reference, target.vectors), target.tokens), majority: majorityRate(reference, target.tokens), tokens: target.tokens.length });
  }
  return out;
}

export const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
