import { readFileSync } from 'node:fs';
import llama3 from 'llama3-tokenizer-js';
import { describe, expect, it } from 'vitest';
import { sharedFolder } from '../../tests/shared-data.ts';
import { gpt2Config } from '../model/gpt2/config.ts';
import { llamaConfig } from '../model/llama/config.ts';
import { GPT2Tokenizer } from './gpt2.ts';
import { tokenizerFromFiles } from './hf.ts';
import { llama3TokenizerFiles } from './llama3.ts';

const DATASETS = sharedFolder('datasets');
const GPT2_FILES = sharedFolder('tokenizers/gpt2');

const files = llama3TokenizerFiles();

describe('Llama 3 tokenizer.json through Tokenizers.js', () => {
  const tok = tokenizerFromFiles(llamaConfig(), JSON.stringify(files.json), JSON.stringify(files.config));

  it.skipIf(DATASETS.missing)("gives llama3-tokenizer-js's ids on GSM8K questions and answers", () => {
    const rows = readFileSync(new URL('gsm8k/train.jsonl', DATASETS.url), 'utf8')
      .trimEnd()
      .split('\n')
      .slice(0, 400)
      .map((l) => JSON.parse(l));
    let tokens = 0;
    for (const { question, answer } of rows) {
      for (const text of [question, answer, `Question: ${question}\nAnswer: ${answer}`]) {
        const ids = tok.encode(text);
        expect(ids, text).toEqual(llama3.encode(text, { bos: false, eos: false }));
        expect(tok.decode(ids)).toBe(text);
        tokens += ids.length;
      }
    }
    expect(tokens).toBeGreaterThan(100_000);
  });

  it('starts rows with <|begin_of_text|> and knows the end-of-text tokens by id', () => {
    expect(tok.special).toEqual({ bos: 128000, eos: 128001, separator: 128001, pad: 128001 });
    expect(tok.tokenId('<|begin_of_text|>')).toBe(128000);
    expect(tok.tokenId('<|end_of_text|>')).toBe(128001);
    expect(tok.tokenId('<|eot_id|>')).toBe(128009);
    const row = tok.encodeRow('Janet has 3 apples.', 16).ids;
    expect(row).toEqual(llama3.encode('Janet has 3 apples.', { bos: true, eos: false }));
    expect(tok.decode([...row, 128001])).toBe('<|begin_of_text|>Janet has 3 apples.<|end_of_text|>');
    expect(tok.decode([...row, 128001], { skipSpecial: true })).toBe('Janet has 3 apples.');
  });

  it('encodes special tokens written in text as text, never as control tokens', () => {
    const text = 'done<|eot_id|><|begin_of_text|>#### 42<|end_of_text|>';
    const ids = tok.encode(text);
    expect(ids.every((id) => id < 128000)).toBe(true);
    expect(tok.decode(ids)).toBe(text);
  });
});

describe.skipIf(GPT2_FILES.missing || DATASETS.missing)('GPT-2 tokenizer.json through Tokenizers.js', () => {
  it("gives js-tiktoken's ids on every SST-2 dev sentence, from the tokenizer.json Hugging Face publishes", () => {
    const vocab = JSON.parse(readFileSync(new URL('vocab.json', GPT2_FILES.url), 'utf8'));
    const merges = readFileSync(new URL('merges.txt', GPT2_FILES.url), 'utf8').split('\n').slice(1).filter(Boolean);
    const json = {
      version: '1.0',
      added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, vocab, merges },
    };
    const tok = tokenizerFromFiles(gpt2Config(), JSON.stringify(json), undefined);
    const reference = new GPT2Tokenizer();
    const lines = readFileSync(new URL('glue/SST-2/dev.tsv', DATASETS.url), 'utf8').trimEnd().split('\n').slice(1);
    for (const line of lines) {
      const sentence = line.split('\t')[0]!;
      expect(tok.encode(sentence), sentence).toEqual(reference.encode(sentence));
    }
    expect(tok.encodeRow(['a b', 'c'], 8).ids).toEqual(reference.encodeRow(['a b', 'c'], 8).ids);
    expect(tok.encode('<|endoftext|>')).toEqual(reference.encode('<|endoftext|>'));
  });
});

describe('tokenizer files that are wrong', () => {
  it('names the file and what is wrong', () => {
    expect(() => tokenizerFromFiles(llamaConfig(), '{"model":', undefined, 'm/tokenizer.json')).toThrow(/^m\/tokenizer\.json: not valid JSON/);
    expect(() => tokenizerFromFiles(llamaConfig(), '{"version":"1.0"}', undefined, 'm/tokenizer.json')).toThrow("m/tokenizer.json: no 'model' object");
    expect(() => tokenizerFromFiles({ ...llamaConfig(), vocabSize: 128000 }, JSON.stringify(files.json), undefined, 'm/tokenizer.json')).toThrow(
      "m/tokenizer.json: the bos token 128000 is outside the model's vocabulary (128000)",
    );
  });
});
