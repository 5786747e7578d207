/**
 * GPT-2's byte-level BPE (r50k_base, through js-tiktoken) with what training needs: batches padded to a length,
 * truncation, and sentence pairs.
 *
 * Sentence pairs (MRPC, MNLI) are encoded as `first <|endoftext|> second`: GPT-2 has no separator token of its own,
 * and <|endoftext|> (50256) is the one token it already treats as a boundary. Padding also uses 50256, but padded
 * positions are told apart by the attention mask, never by their id.
 */
import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';

export const END_OF_TEXT = 50256;
export const PAIR_SEPARATOR = END_OF_TEXT;

export type TextInput = string | readonly [string, string];

export interface BatchOptions {
  /** Rows longer than this are truncated (pairs: longest first, as Hugging Face's default). */
  maxLength: number;
  /** 'longest' pads to the longest row of the batch, 'max_length' to maxLength. */
  padding?: 'longest' | 'max_length';
  paddingSide?: 'right' | 'left';
  padTokenId?: number;
}

export interface EncodedBatch {
  batch: number;
  seq: number;
  /** [batch, seq] row-major. */
  ids: Int32Array;
  attentionMask: Int32Array;
  /** Whether each row lost tokens to truncation. */
  truncated: boolean[];
}

let shared: Tiktoken | undefined;

export class GPT2Tokenizer {
  private readonly bpe = (shared ??= new Tiktoken(r50kBase));

  /** Text to token ids; special tokens in the text are encoded as plain text, never as control tokens. */
  encode(text: string): number[] {
    return this.bpe.encode(text, [], []);
  }

  decode(ids: ArrayLike<number>): string {
    return this.bpe.decode(Array.from(ids));
  }

  /** One row of ids: a text, or a pair joined by the separator, truncated to maxLength. */
  encodeRow(input: TextInput, maxLength: number): { ids: number[]; truncated: boolean } {
    if (!Number.isInteger(maxLength) || maxLength < (typeof input === 'string' ? 1 : 3)) {
      throw new RangeError(`maxLength ${maxLength} is too small: a row needs at least ${typeof input === 'string' ? 1 : 3} tokens`);
    }
    if (typeof input === 'string') {
      const ids = this.encode(input);
      return { ids: ids.slice(0, maxLength), truncated: ids.length > maxLength };
    }
    const a = this.encode(input[0]);
    const b = this.encode(input[1]);
    const budget = maxLength - 1;
    const truncated = a.length + b.length > budget;
    // Longest first: drop tokens from the end of whichever part is longer until both fit.
    while (a.length + b.length > budget) (a.length >= b.length ? a : b).pop();
    return { ids: [...a, PAIR_SEPARATOR, ...b], truncated };
  }

  encodeBatch(inputs: readonly TextInput[], { maxLength, padding = 'longest', paddingSide = 'right', padTokenId = END_OF_TEXT }: BatchOptions): EncodedBatch {
    const rows = inputs.map((input) => this.encodeRow(input, maxLength));
    const seq = padding === 'max_length' ? maxLength : Math.max(1, ...rows.map((r) => r.ids.length));
    const ids = new Int32Array(rows.length * seq).fill(padTokenId);
    const attentionMask = new Int32Array(rows.length * seq);
    rows.forEach((row, b) => {
      const start = b * seq + (paddingSide === 'left' ? seq - row.ids.length : 0);
      ids.set(row.ids, start);
      attentionMask.fill(1, start, start + row.ids.length);
    });
    return { batch: rows.length, seq, ids, attentionMask, truncated: rows.map((r) => r.truncated) };
  }
}
