/**
 * What training needs from any tokenizer: rows with the model's own start token, truncation, sentence pairs, and
 * batches padded to a length. Families differ only in encode/decode and in their special tokens.
 *
 * `encode` treats text as text: a special token written in a shard (`<|eot_id|>`, `<|endoftext|>`) is encoded as the
 * characters it is made of, never as a control token, so a row's text cannot end or restructure a sequence.
 */
export type TextInput = string | readonly [string, string];

export interface BatchOptions {
  /** Rows longer than this are truncated (pairs: longest first, as Hugging Face's default). */
  maxLength: number;
  /** 'longest' pads to the longest row of the batch, 'max_length' to maxLength. */
  padding?: 'longest' | 'max_length';
  paddingSide?: 'right' | 'left';
  padTokenId?: number;
}

/** Token ids of `rows` texts padded to `seqLen` positions. */
export interface EncodedBatch {
  rows: number;
  seqLen: number;
  /** [rows, seqLen] row-major. */
  ids: Int32Array;
  attentionMask: Int32Array;
  /** Whether each row lost tokens to truncation. */
  truncated: boolean[];
}

export interface SpecialTokens {
  /** Prepended to every row (Llama's <|begin_of_text|>); GPT-2 has none. */
  bos?: number;
  /** Ends a completion (generation stops there). */
  eos: number;
  /** Joins the two texts of a pair. */
  separator: number;
  pad: number;
}

export abstract class Tokenizer {
  abstract readonly special: SpecialTokens;

  /** Text to token ids, special tokens in it encoded as plain text. */
  abstract encode(text: string): number[];

  abstract decode(ids: ArrayLike<number>): string;

  /** One row of ids: the start token if the family has one, then a text or a pair joined by the separator, truncated to maxLength. */
  encodeRow(input: TextInput, maxLength: number): { ids: number[]; truncated: boolean } {
    const bos = this.special.bos === undefined ? [] : [this.special.bos];
    const least = bos.length + (typeof input === 'string' ? 1 : 3);
    if (!Number.isInteger(maxLength) || maxLength < least) throw new RangeError(`maxLength ${maxLength} is too small: a row needs at least ${least} tokens`);
    if (typeof input === 'string') {
      const ids = this.encode(input);
      const budget = maxLength - bos.length;
      return { ids: [...bos, ...ids.slice(0, budget)], truncated: ids.length > budget };
    }
    const a = this.encode(input[0]);
    const b = this.encode(input[1]);
    const budget = maxLength - bos.length - 1;
    const truncated = a.length + b.length > budget;
    // Longest first: drop tokens from the end of whichever part is longer until both fit.
    while (a.length + b.length > budget) (a.length >= b.length ? a : b).pop();
    return { ids: [...bos, ...a, this.special.separator, ...b], truncated };
  }

  encodeBatch(
    inputs: readonly TextInput[],
    { maxLength, padding = 'longest', paddingSide = 'right', padTokenId = this.special.pad }: BatchOptions,
  ): EncodedBatch {
    const rows = inputs.map((input) => this.encodeRow(input, maxLength));
    const seq = padding === 'max_length' ? maxLength : Math.max(1, ...rows.map((r) => r.ids.length));
    const ids = new Int32Array(rows.length * seq).fill(padTokenId);
    const attentionMask = new Int32Array(rows.length * seq);
    rows.forEach((row, b) => {
      const start = b * seq + (paddingSide === 'left' ? seq - row.ids.length : 0);
      ids.set(row.ids, start);
      attentionMask.fill(1, start, start + row.ids.length);
    });
    return { rows: rows.length, seqLen: seq, ids, attentionMask, truncated: rows.map((r) => r.truncated) };
  }
}
