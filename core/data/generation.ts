/**
 * Generation tasks (causal-LM fine-tuning): rows of a prompt and the completion the model should learn to write,
 * uploaded as JSON lines {prompt, completion}, or GSM8K's own {question, answer}. The loss is taken on the
 * completion's tokens only, so a batch carries, beside its activations, the next-token label of every position:
 * the completion's token ids, IGNORE_INDEX elsewhere. Those ids are what the server learns of the text.
 */
import { parseJson } from '../json/parse.ts';
import type { EncodedBatch, Tokenizer } from '../tokenizer/tokenizer.ts';
import { ShardError, type ShardLimits } from './shard.ts';

export interface GenerationExample {
  prompt: string;
  completion: string;
}

/** Label of a position that carries no loss (prompt, padding), as PyTorch's cross_entropy ignore_index. */
export const IGNORE_INDEX = -100;

/** GSM8K as a prompt and a completion: the question, then the worked answer ending in "#### <number>". */
export function gsm8kExample(question: string, answer: string): GenerationExample {
  return { prompt: `Question: ${question}\nAnswer:`, completion: ` ${answer}` };
}

/** Parses generation rows from JSON lines; every error names the line and field (400) or the size (413). */
export function parseGenerationShard(lines: string[], limits: ShardLimits): GenerationExample[] {
  const rows: GenerationExample[] = [];
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    const line = i + 1;
    let v: unknown;
    try {
      v = parseJson(raw, `line ${line}`);
    } catch (e) {
      throw new ShardError(400, (e as Error).message);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShardError(400, `line ${line}: not a JSON object`);
    const o = v as Record<string, unknown>;
    const [promptField, completionField] = 'question' in o || 'answer' in o ? ['question', 'answer'] : ['prompt', 'completion'];
    const field = (name: string): string => {
      const value = o[name];
      if (typeof value !== 'string')
        throw new ShardError(400, `line ${line}: field '${name}' ${value === undefined ? 'is missing' : `must be a string, got ${typeof value}`}`);
      if (value.trim() === '') throw new ShardError(400, `line ${line}: field '${name}' is empty`);
      if (value.length > limits.maxFieldChars)
        throw new ShardError(400, `line ${line}: field '${name}' has ${value.length} characters; the limit is ${limits.maxFieldChars}`);
      return value;
    };
    const prompt = field(promptField);
    const completion = field(completionField);
    if (rows.length === limits.maxRows) throw new ShardError(413, `line ${line}: shard has more than ${limits.maxRows} rows, the limit`);
    rows.push(promptField === 'question' ? gsm8kExample(prompt, completion) : { prompt, completion });
  });
  if (rows.length === 0) throw new ShardError(400, 'shard has no rows');
  return rows;
}

export interface EncodedGenerationBatch extends EncodedBatch {
  /** [rows * seqLen]: at position t, the token at t + 1 when that is a completion token (or the end token); else IGNORE_INDEX. */
  labels: Int32Array;
}

/** A prompt as the model is given it to complete: its start token (if the family has one), then the prompt's ids. */
export function promptIds(tokenizer: Tokenizer, prompt: string): number[] {
  return [...(tokenizer.special.bos === undefined ? [] : [tokenizer.special.bos]), ...tokenizer.encode(prompt)];
}

/**
 * Rows as `<start> prompt completion <end>`, right-padded to the longest row. A row longer than maxLength keeps at
 * most half of it for the prompt (its last tokens, after the start token) and loses the end of its completion; it
 * says so in `truncated`.
 */
export function encodeGenerationBatch(
  tokenizer: Tokenizer,
  rows: readonly GenerationExample[],
  maxLength: number,
  padTokenId = tokenizer.special.pad,
): EncodedGenerationBatch {
  const bos = tokenizer.special.bos === undefined ? [] : [tokenizer.special.bos];
  if (!Number.isInteger(maxLength) || maxLength < bos.length + 2)
    throw new RangeError(`maxLength ${maxLength} is too small: a row needs its start, a prompt token and a completion token`);
  const encoded = rows.map((r) => {
    let prompt = tokenizer.encode(r.prompt);
    const completion = [...tokenizer.encode(r.completion), tokenizer.special.eos];
    const truncated = bos.length + prompt.length + completion.length > maxLength;
    const promptRoom = Math.max(1, Math.floor(maxLength / 2) - bos.length);
    if (truncated && prompt.length > promptRoom) prompt = prompt.slice(prompt.length - promptRoom);
    const ids = [...bos, ...prompt, ...completion].slice(0, maxLength);
    return { ids, promptLength: bos.length + prompt.length, truncated };
  });
  const seq = Math.max(...encoded.map((e) => e.ids.length));
  const ids = new Int32Array(rows.length * seq).fill(padTokenId);
  const attentionMask = new Int32Array(rows.length * seq);
  const labels = new Int32Array(rows.length * seq).fill(IGNORE_INDEX);
  encoded.forEach((e, r) => {
    ids.set(e.ids, r * seq);
    attentionMask.fill(1, r * seq, r * seq + e.ids.length);
    for (let t = e.promptLength - 1; t + 1 < e.ids.length; t++) labels[r * seq + t] = e.ids[t + 1]!;
  });
  return { rows: rows.length, seqLen: seq, ids, attentionMask, labels, truncated: encoded.map((e) => e.truncated) };
}
