import { describe, expect, it } from 'vitest';
import { llama3TokenizerFiles } from '../tokenizer/llama3.ts';
import { tokenizerFromFiles } from '../tokenizer/hf.ts';
import { llamaConfig } from '../model/llama/config.ts';
import { GPT2Tokenizer } from '../tokenizer/gpt2.ts';
import { encodeGenerationBatch, gsm8kExample, IGNORE_INDEX, parseGenerationShard } from './generation.ts';
import { DEFAULT_LIMITS } from './shard.ts';

describe('generation rows', () => {
  it('reads {prompt, completion} and GSM8K {question, answer} lines; errors name line and field', () => {
    const rows = parseGenerationShard(
      ['{"prompt":"2+2=","completion":" 4"}', '', '{"question":"How many?","answer":"3 + 4 = <<3+4=7>>7\\n#### 7"}'],
      DEFAULT_LIMITS,
    );
    expect(rows).toEqual([{ prompt: '2+2=', completion: ' 4' }, gsm8kExample('How many?', '3 + 4 = <<3+4=7>>7\n#### 7')]);
    expect(rows[1]).toEqual({ prompt: 'Question: How many?\nAnswer:', completion: ' 3 + 4 = <<3+4=7>>7\n#### 7' });
    expect(() => parseGenerationShard(['{"prompt":"a"}'], DEFAULT_LIMITS)).toThrow("line 1: field 'completion' is missing");
    expect(() => parseGenerationShard(['{"question":"a","answer":5}'], DEFAULT_LIMITS)).toThrow("line 1: field 'answer' must be a string, got number");
    expect(() => parseGenerationShard(['{"prompt":"a",'], DEFAULT_LIMITS)).toThrow(/^line 1: not valid JSON/);
    expect(() => parseGenerationShard(['', ' '], DEFAULT_LIMITS)).toThrow('shard has no rows');
  });

  it('labels exactly the completion and end tokens (next-token), never the prompt or padding', () => {
    const files = llama3TokenizerFiles();
    const tok = tokenizerFromFiles(llamaConfig(), JSON.stringify(files.json), undefined);
    const rows = [
      { prompt: 'Question: 2+2?\nAnswer:', completion: ' 4\n#### 4' },
      { prompt: 'Hi', completion: ' there' },
    ];
    const b = encodeGenerationBatch(tok, rows, 64);
    const prompt0 = [128000, ...tok.encode(rows[0]!.prompt)];
    const completion0 = [...tok.encode(rows[0]!.completion), 128001];
    expect(Array.from(b.ids.subarray(0, prompt0.length + completion0.length))).toEqual([...prompt0, ...completion0]);
    const labelled = Array.from(b.labels.subarray(0, b.seqLen))
      .map((l, t) => [t, l])
      .filter(([, l]) => l !== IGNORE_INDEX);
    expect(labelled.map(([, l]) => l)).toEqual(completion0); // each completion token and the end, predicted from the position before
    expect(labelled[0]![0]).toBe(prompt0.length - 1);
    const row1 = Array.from(b.labels.subarray(b.seqLen));
    expect(row1.filter((l) => l !== IGNORE_INDEX)).toEqual([...tok.encode(' there'), 128001]);
    expect(Array.from(b.attentionMask.subarray(b.seqLen)).filter(Boolean)).toHaveLength(1 + tok.encode('Hi').length + tok.encode(' there').length + 1);
    const gpt2 = new GPT2Tokenizer();
    const short = encodeGenerationBatch(gpt2, [{ prompt: 'a b', completion: ' c d e f g' }], 4);
    expect(short.truncated).toEqual([true]);
    expect(Array.from(short.ids)).toEqual(gpt2.encode('a b c d'));
    // A long prompt keeps its last tokens, at most half the row, so the completion is still learnt.
    const long = encodeGenerationBatch(gpt2, [{ prompt: 'one two three four five six', completion: ' seven eight' }], 6);
    expect(Array.from(long.ids)).toEqual(gpt2.encode(' four five six seven eight<|endoftext|>').slice(0, 5).concat(50256));
    expect(Array.from(long.labels).filter((l) => l !== IGNORE_INDEX)).toEqual([...gpt2.encode(' seven eight'), 50256]);
  });
});
