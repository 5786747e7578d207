import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX } from '../../../core/data/generation.ts';
import { GPT2Tokenizer } from '../../../core/tokenizer/gpt2.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';
import { encodeRows, type EncodedRows, type Row } from './encode.ts';

// What a request's seqLen may change of a row: only where it ends. Each position's hidden state and the seed of its
// noise hang on the tokens before it, so a server asking for the same rows at other lengths must get copies that are
// equal where they overlap, not the same tokens at new positions with fresh noise.
const tokenizer = new GPT2Tokenizer();
const request = (task: 'classification' | 'generation', seqLen: number) => ({ task, seqLen, padTokenId: 50256 }) as Omit<RoundRequest, 'uploads'>;
const row = (enc: EncodedRows, r: number, of: Int32Array = enc.ids) => {
  const length = enc.attentionMask.subarray(r * enc.seqLen, (r + 1) * enc.seqLen).reduce((a, m) => a + m, 0);
  return Array.from(of.subarray(r * enc.seqLen, r * enc.seqLen + length));
};

describe("a device's rows at any length", () => {
  it("keeps every token where the whole row has it: a pair's second text and a long prompt's end do not move", () => {
    const pairs: Row[] = [
      { text: 'the first text of this pair is much longer than the second one, by many words indeed', textPair: 'short second', label: 1 },
      { text: 'a dull film', label: 0 },
    ];
    const problems: Row[] = [
      { prompt: 'Question: a baker sells 12 loaves a day for 5 days and then 3 more each day after that; how many by day 9?\nAnswer:', completion: ' 72' },
    ];
    for (const [task, rows] of [
      ['classification', pairs],
      ['generation', problems],
    ] as const) {
      const whole = encodeRows(tokenizer, rows, request(task, 1000));
      for (const seqLen of [6, 11, 17, 24]) {
        const cut = encodeRows(tokenizer, rows, request(task, seqLen));
        expect(cut.seqLen).toBeLessThanOrEqual(seqLen);
        for (let r = 0; r < rows.length; r++) {
          const ids = row(cut, r);
          expect(ids, `${task} row ${r} at ${seqLen}`).toEqual(row(whole, r).slice(0, seqLen));
          if (task !== 'generation') continue;
          // Labels as the whole row's, but the last one of a cut row: the token after the cut is not in the row.
          const labels = row(cut, r, cut.labels);
          const expected = row(whole, r, whole.labels).slice(0, ids.length);
          if (row(whole, r).length > ids.length) expected[ids.length - 1] = IGNORE_INDEX;
          expect(labels, `labels at ${seqLen}`).toEqual(expected);
        }
      }
    }
  });
});
