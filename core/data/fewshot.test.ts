import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fewshotContexts } from './fewshot.ts';
import { gsm8kExample } from './generation.ts';

// Written by harness_golden.py: the harness's few-shot rules over CPython's random module.
const { fewshot: golden } = JSON.parse(readFileSync(new URL('harness-golden.json', import.meta.url), 'utf8')) as {
  fewshot: Record<'train' | 'test', Array<{ question: string; answer: string }>> & Record<'testFromTrain' | 'heldOutOfTrain' | 'threeShots', string[]>;
};
const train = golden.train.map((d) => gsm8kExample(d.question, d.answer));
const test = golden.test.map((d) => gsm8kExample(d.question, d.answer));

describe('few-shot contexts as lm-evaluation-harness builds them', () => {
  it('draws 5 shots per evaluated row from the train split, with its seed, in its format', () => {
    expect(fewshotContexts(test, train, 5)).toEqual(golden.testFromTrain);
  });

  it('draws one more and drops the row itself when the evaluated rows come from the pool', () => {
    const held = train.slice(25);
    const contexts = fewshotContexts(held, train, 5);
    expect(contexts).toEqual(golden.heldOutOfTrain);
    // No prompt holds its own answer.
    held.forEach((row, i) => expect(contexts[i]).not.toContain(row.prompt));
  });

  it('takes another count and seed', () => {
    expect(fewshotContexts(test, train, 3, 7)).toEqual(golden.threeShots);
    expect(fewshotContexts(test, train, 0)).toEqual(['', '', '', '']);
  });

  it('refuses a pool too small for the shots', () => {
    expect(() => fewshotContexts(train.slice(0, 3), train.slice(0, 5), 5)).toThrow(/need a pool of at least 6 rows; it has 5/);
  });
});
