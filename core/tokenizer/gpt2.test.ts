import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { sharedFolder } from '../../tests/shared-data.ts';
import { END_OF_TEXT, GPT2Tokenizer, PAIR_SEPARATOR } from './gpt2.ts';

const TOKENIZER = sharedFolder('tokenizers/gpt2');
const DATASETS = sharedFolder('datasets');

/**
 * An independent GPT-2 tokenizer written from Hugging Face's vocab.json and merges.txt (as in OpenAI's encoder.py):
 * the regex pre-split, the byte-to-unicode map, and greedy merging by rank.
 */
function huggingFaceBpe() {
  const vocab: Record<string, number> = JSON.parse(readFileSync(new URL('vocab.json', TOKENIZER.url), 'utf8'));
  const merges = readFileSync(new URL('merges.txt', TOKENIZER.url), 'utf8').split('\n').slice(1).filter(Boolean);
  const rank = new Map(merges.map((m, i) => [m, i]));
  const byteToChar: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    byteToChar[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  const pattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  return (text: string): number[] => {
    const ids: number[] = [];
    for (const piece of text.match(pattern) ?? []) {
      let word = [...new TextEncoder().encode(piece)].map((b) => byteToChar[b]);
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i < word.length - 1; i++) {
          const r = rank.get(`${word[i]} ${word[i + 1]}`);
          if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
        }
        if (best < 0) break;
        word = [...word.slice(0, best), word[best] + word[best + 1], ...word.slice(best + 2)];
      }
      ids.push(...word.map((w) => vocab[w]));
    }
    return ids;
  };
}

describe('GPT-2 tokenizer', () => {
  const tok = new GPT2Tokenizer();

  it.skipIf(TOKENIZER.missing || DATASETS.missing)('equals the Hugging Face vocabulary and merges on every SST-2 dev sentence', () => {
    const reference = huggingFaceBpe();
    const lines = readFileSync(new URL('glue/SST-2/dev.tsv', DATASETS.url), 'utf8').trimEnd().split('\n').slice(1);
    expect(lines.length).toBe(872);
    for (const line of lines) {
      const sentence = line.split('\t')[0];
      expect(tok.encode(sentence), sentence).toEqual(reference(sentence));
    }
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
  });

  it('round-trips text, and treats <|endoftext|> in user text as plain text', () => {
    const text = "it 's a charming and often affecting journey . <|endoftext|> ünïcödé 🙂";
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode(text)).not.toContain(END_OF_TEXT);
  });

  it('pads right or left with a mask, to the longest row or to maxLength', () => {
    const texts = ['a b c d', 'x'];
    const right = tok.encodeBatch(texts, { maxLength: 16 });
    expect([right.rows, right.seqLen]).toEqual([2, 4]);
    expect(Array.from(right.attentionMask)).toEqual([1, 1, 1, 1, 1, 0, 0, 0]);
    expect(Array.from(right.ids.slice(4))).toEqual([...tok.encode('x'), END_OF_TEXT, END_OF_TEXT, END_OF_TEXT]);
    const left = tok.encodeBatch(texts, { maxLength: 6, padding: 'max_length', paddingSide: 'left', padTokenId: 0 });
    expect(left.seqLen).toBe(6);
    expect(Array.from(left.attentionMask.slice(6))).toEqual([0, 0, 0, 0, 0, 1]);
    expect(Array.from(left.ids.slice(6))).toEqual([0, 0, 0, 0, 0, ...tok.encode('x')]);
  });

  it('truncates long rows and says so', () => {
    const long = 'one two three four five six seven';
    const out = tok.encodeBatch([long, 'short'], { maxLength: 3 });
    expect(Array.from(out.ids.slice(0, 3))).toEqual(tok.encode(long).slice(0, 3));
    expect(out.truncated).toEqual([true, false]);
  });

  it('encodes pairs as first <|endoftext|> second, truncating the longer part first', () => {
    const a = tok.encode('The cat sat on the mat today');
    const b = tok.encode('A cat sat');
    expect(tok.encodeRow(['The cat sat on the mat today', 'A cat sat'], 64).ids).toEqual([...a, PAIR_SEPARATOR, ...b]);
    const cut = tok.encodeRow(['The cat sat on the mat today', 'A cat sat'], 8);
    expect(cut.ids).toEqual([...a.slice(0, 4), PAIR_SEPARATOR, ...b]);
    expect(cut.truncated).toBe(true);
  });

  it('refuses a maxLength too small for the input, naming it', () => {
    expect(() => tok.encodeRow(['a', 'b'], 2)).toThrow(/maxLength 2 is too small/);
    expect(() => tok.encodeBatch(['a'], { maxLength: 0 })).toThrow(/maxLength 0/);
  });
});
