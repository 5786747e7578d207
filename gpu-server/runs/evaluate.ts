/**
 * A round's evaluation on the operator's held-out rows, through the whole model with the adapters (the server holds
 * every block). Classification: cross-entropy and accuracy. Generation: the completions' loss, and greedy
 * completions of the first prompts scored by exact match of the final number (GSM8K's rule), with the texts kept so
 * that people can read what the model writes.
 */
import { encodeGenerationBatch, finalNumber, type GenerationExample } from '../../core/data/generation.ts';
import { textInput, type Example } from '../../core/data/shard.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { scoreLogits, type Trainer } from '../train/trainer.ts';

export interface GenerationSample {
  prompt: string;
  generated: string;
  expected?: string;
  predicted?: string;
  correct: boolean;
}

export interface Evaluation {
  loss: number;
  /** Classification accuracy, or generation's exact-match rate over the generated samples. */
  accuracy: number;
  samples?: GenerationSample[];
}

export function evaluateClassification(trainer: Trainer, tokenizer: Tokenizer, rows: readonly Example[], batchSize: number, seqLen: number): Evaluation {
  const classes = trainer.net.config.numLabels;
  const logits = new Float32Array(rows.length * classes);
  for (let i = 0; i < rows.length; i += batchSize) {
    const enc = tokenizer.encodeBatch(rows.slice(i, i + batchSize).map(textInput), { maxLength: seqLen, padTokenId: trainer.net.config.padTokenId });
    logits.set(trainer.predictTokens(enc.ids, enc.attentionMask, enc.batch, enc.seq), i * classes);
  }
  const { loss, accuracy } = scoreLogits(logits, rows.map((r) => r.label), classes);
  return { loss, accuracy };
}

export function evaluateGeneration(trainer: Trainer, tokenizer: Tokenizer, rows: readonly GenerationExample[], o: { batchSize: number; seqLen: number; maxNewTokens: number; limit: number }): Evaluation {
  let lossSum = 0;
  let tokens = 0;
  for (let i = 0; i < rows.length; i += o.batchSize) {
    const enc = encodeGenerationBatch(tokenizer, rows.slice(i, i + o.batchSize), o.seqLen);
    const labelled = enc.labels.reduce((a, l) => a + (l >= 0 ? 1 : 0), 0);
    lossSum += trainer.tokenLoss(enc.ids, enc.attentionMask, enc.labels, enc.batch, enc.seq) * labelled;
    tokens += labelled;
  }
  const stop = [tokenizer.special.eos];
  const samples = rows.slice(0, o.limit).map((row): GenerationSample => {
    const prompt = [...(tokenizer.special.bos === undefined ? [] : [tokenizer.special.bos]), ...tokenizer.encode(row.prompt)];
    const generated = tokenizer.decode(trainer.generate(prompt, { maxNewTokens: o.maxNewTokens, stop }).filter((id) => !stop.includes(id)));
    const expected = finalNumber(row.completion);
    const predicted = finalNumber(generated);
    return { prompt: row.prompt, generated, expected, predicted, correct: predicted !== undefined && predicted === expected };
  });
  return { loss: lossSum / Math.max(tokens, 1), accuracy: samples.length ? samples.filter((s) => s.correct).length / samples.length : NaN, samples };
}
