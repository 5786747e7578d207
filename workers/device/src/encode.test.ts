import { describe, expect, it } from 'vitest';
import { GPT2Tokenizer } from '../../../core/tokenizer/gpt2.ts';
import { encodeRows, type EncodedRows, type Row } from './encode.ts';

// What a request's seqLen may change of a classification row: only where it ends. Each position's hidden state and
// the seed of its noise hang on the tokens before it, so a server asking for the same rows at other lengths must get
// copies that are equal where they overlap, not the same tokens at new positions with fresh noise. (A generation row
// runs at the one length its owner approved: core/wire/policy.test.ts.)
const tokenizer = new GPT2Tokenizer();
const request = (seqLen: number) => ({ task: 'classification' as const, seqLen, padTokenId: 50256 });
const row = (enc: EncodedRows, r: number) => {
  const length = enc.attentionMask.subarray(r * enc.seqLen, (r + 1) * enc.seqLen).reduce((a, m) => a + m, 0);
  return Array.from(enc.ids.subarray(r * enc.seqLen, r * enc.seqLen + length));
};

describe("a device's classification rows at any length", () => {
  it("keeps every token where the whole row has it: a pair's second text does not move", () => {
    const rows: Row[] = [
      { text: 'the first text of this pair is much longer than the second one, by many words indeed', textPair: 'short second', label: 1 },
      { text: 'a dull film', label: 0 },
    ];
    const whole = encodeRows(tokenizer, rows, request(1000));
    for (const seqLen of [6, 11, 17, 24]) {
      const cut = encodeRows(tokenizer, rows, request(seqLen));
      expect(cut.seqLen).toBeLessThanOrEqual(seqLen);
      expect(Array.from(cut.labels)).toEqual([1, 0]);
      for (let r = 0; r < rows.length; r++) expect(row(cut, r), `row ${r} at ${seqLen}`).toEqual(row(whole, r).slice(0, seqLen));
    }
  });
});
