/**
 * A round's evaluation on the operator's held-out rows, through the whole model with the adapters (the server holds
 * every block). Classification: cross-entropy and accuracy. Generation: the completions' loss, and greedy
 * completions of the first prompts scored as lm-evaluation-harness scores GSM8K (strict-match and flexible-extract
 * exact match, core/data/gsm8k.ts), with the texts kept so that people can read what the model writes.
 */
import { encodeGenerationBatch, promptIds, type GenerationExample } from '../../core/data/generation.ts';
import { exactMatch, flexibleExtract, GSM8K_UNTIL, openaiAnswer, strictMatch, untilStop } from '../../core/data/gsm8k.ts';
import { textInput, type Example } from '../../core/data/shard.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { scoreLogits } from '../train/score.ts';
import type { Trainer } from '../train/trainer.ts';
import type { GenerationSample } from './types.ts';

export interface Evaluation {
  loss: number;
  /** Classification accuracy, or generation's exact match by lm-evaluation-harness's strict-match filter. */
  accuracy: number;
  /** Generation: exact match by each of the harness's gsm8k filters, and the shots before each prompt. */
  exactMatch?: { strict: number; flexible: number; shots: number };
  samples?: GenerationSample[];
}

export async function evaluateClassification(
  trainer: Trainer,
  tokenizer: Tokenizer,
  rows: readonly Example[],
  batchSize: number,
  seqLen: number,
): Promise<Evaluation> {
  const classes = trainer.net.config.numLabels;
  const logits = new Float32Array(rows.length * classes);
  for (let i = 0; i < rows.length; i += batchSize) {
    const enc = tokenizer.encodeBatch(rows.slice(i, i + batchSize).map(textInput), { maxLength: seqLen, padTokenId: trainer.net.config.padTokenId });
    logits.set(await trainer.predictTokens(enc.ids, enc.attentionMask, enc.rows, enc.seqLen), i * classes);
  }
  const { loss, accuracy } = scoreLogits(
    logits,
    rows.map((r) => r.label),
    classes,
  );
  return { loss, accuracy };
}

/** A causal-LM batch as token ids: a label per position, IGNORE_INDEX where no loss is taken. */
export interface LabelledTokens {
  ids: Int32Array;
  mask: Int32Array;
  labels: Int32Array;
  rows: number;
  seqLen: number;
}

/** Mean next-token loss per labelled token over batches (a batch weighs by its labelled tokens). */
export async function completionLoss(trainer: Trainer, batches: readonly LabelledTokens[]): Promise<number> {
  let sum = 0;
  let tokens = 0;
  for (const b of batches) {
    const labelled = b.labels.reduce((a, l) => a + (l >= 0 ? 1 : 0), 0);
    sum += (await trainer.tokenLoss(b.ids, b.mask, b.labels, b.rows, b.seqLen)) * labelled;
    tokens += labelled;
  }
  return sum / Math.max(tokens, 1);
}

/** Held-out prompts and completions as causal-LM batches (loss on the completions). */
export function generationBatches(tokenizer: Tokenizer, rows: readonly GenerationExample[], batchSize: number, seqLen: number): LabelledTokens[] {
  return Array.from({ length: Math.ceil(rows.length / batchSize) }, (_, i) => {
    const enc = encodeGenerationBatch(tokenizer, rows.slice(i * batchSize, (i + 1) * batchSize), seqLen);
    return { ids: enc.ids, mask: enc.attentionMask, labels: enc.labels, rows: enc.rows, seqLen: enc.seqLen };
  });
}

/**
 * A greedy completion of a prompt (token ids) as lm-evaluation-harness's gsm8k generates one: the prompt's last
 * tokens where it and maxNewTokens exceed the model's positions (the harness truncates contexts on the left), then
 * until the end token or any of its stop sequences ("Question:", ...), cut there; then its two filters' answers.
 */
export async function complete(
  trainer: Trainer,
  tokenizer: Tokenizer,
  prompt: readonly number[],
  maxNewTokens: number,
): Promise<{ generated: string; strict: string; flexible: string; promptTokens: number }> {
  const room = trainer.net.config.nPositions - maxNewTokens;
  if (room < 1)
    throw new RangeError(`task.generate.maxNewTokens ${maxNewTokens} leaves no room for a prompt in the model's ${trainer.net.config.nPositions} positions`);
  if (prompt.length > room) prompt = prompt.slice(prompt.length - room);
  const stop = [tokenizer.special.eos];
  const until = (ids: readonly number[]) => {
    const text = tokenizer.decode([...ids]);
    return GSM8K_UNTIL.some((s) => text.includes(s));
  };
  const ids = await trainer.generate(prompt, { maxNewTokens, stop, until });
  const generated = untilStop(tokenizer.decode(ids.filter((id) => !stop.includes(id))));
  return { generated, strict: strictMatch(generated), flexible: flexibleExtract(generated), promptTokens: prompt.length };
}

export async function evaluateGeneration(
  trainer: Trainer,
  tokenizer: Tokenizer,
  rows: readonly GenerationExample[],
  contexts: readonly string[],
  o: { batchSize: number; seqLen: number; maxNewTokens: number; limit: number; fewshot: { count: number } },
): Promise<Evaluation> {
  const batches = generationBatches(tokenizer, rows, o.batchSize, o.seqLen);
  const samples: GenerationSample[] = [];
  for (const [i, row] of rows.slice(0, o.limit).entries()) {
    const prompt = promptIds(tokenizer, (contexts[i] ?? '') + row.prompt);
    const { generated, strict, flexible, promptTokens } = await complete(trainer, tokenizer, prompt, o.maxNewTokens);
    // The reference is the whole completion ("... #### 72"), which exact_match's regexes reduce to its answer.
    samples.push({
      prompt: row.prompt,
      promptTokens,
      generated,
      expected: openaiAnswer(row.completion),
      predicted: strict,
      correct: exactMatch(strict, row.completion),
      flexible,
      flexibleCorrect: exactMatch(flexible, row.completion),
    });
  }
  const rate = (correct: (s: GenerationSample) => boolean) => (samples.length ? samples.filter(correct).length / samples.length : NaN);
  return {
    loss: await completionLoss(trainer, batches),
    accuracy: rate((s) => s.correct),
    exactMatch: { strict: rate((s) => s.correct), flexible: rate((s) => s.flexibleCorrect === true), shots: o.fewshot.count },
    samples,
  };
}
