import { describe, expect, it } from 'vitest';
import { exactMatch, flexibleExtract, INVALID, openaiAnswer, strictMatch, untilStop } from './gsm8k.ts';

/**
 * What lm-evaluation-harness gives for these responses, computed with its own code's rules in Python's `re`
 * (RegexFilter.apply over findall, group_select, take_first; exact_match's regexes_to_ignore then lower()):
 * python3 -c 'import re; ...' over gsm8k.yaml's two patterns.
 */
const HARNESS: Array<[response: string, strict: string, flexible: string]> = [
  ['The answer is 18.\n#### 18', '18', '18'],
  ['So she pays $1,250.50 in total.', INVALID, '$1,250.50'],
  ['#### -5\n', '-5', '-5'],
  ['no numbers here', INVALID, INVALID],
  ['First 3, then 4 apples. #### 7.00', '7.00', '7.00'],
  ['x 2 y', INVALID, '2'],
  ['#### 1,000 and #### 2', '1,000', '2'],
];

describe("GSM8K scored as lm-evaluation-harness's gsm8k task scores it", () => {
  it.each(HARNESS)('filters %j: strict-match %j, flexible-extract %j', (response, strict, flexible) => {
    expect(strictMatch(response)).toBe(strict);
    expect(flexibleExtract(response)).toBe(flexible);
  });

  it("compares with the reference's answer after the metric's regexes_to_ignore, and no looser", () => {
    const reference = 'Natalia sold 48/2 = 24 clips in May.\n#### 1,250';
    expect(exactMatch('1,250', reference)).toBe(true);
    expect(exactMatch('$1250.', reference)).toBe(true); // "$", "," and a final "." are ignored
    expect(exactMatch('1250.00', reference)).toBe(false); // 1250.00 is not 1250 as text: the harness compares strings
    expect(exactMatch('18.50', '#### 18.5')).toBe(false);
    expect(exactMatch('-5', '#### 5')).toBe(false); // a sign is not ignored
    expect(exactMatch(INVALID, reference)).toBe(false);
  });

  it('generation ends at the first of its stop sequences', () => {
    expect(untilStop(' 3 + 4 = 7\n#### 7\n\nQuestion: how many')).toBe(' 3 + 4 = 7\n#### 7\n\n');
    expect(untilStop('#### 7</s> Question:')).toBe('#### 7');
    expect(untilStop('#### 7')).toBe('#### 7');
  });

  it("reads a reference's answer as OpenAI's extract_answer does", () => {
    expect(openaiAnswer('She sold 48/2 = 24 clips.\n#### 1,072')).toBe('1072');
    expect(openaiAnswer('#### -3')).toBe('-3');
    expect(openaiAnswer('no final answer')).toBeUndefined();
  });
});
