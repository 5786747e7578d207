import { describe, expect, it } from 'vitest';
import { jsonErrorAt, parseJson } from './parse.ts';

describe('JSON refused without quoting it', () => {
  it('names line and column of the first error, and never the text', () => {
    const secret = '{\n  "a": 1,\n  "root:x:0:0": oops\n}';
    expect(jsonErrorAt(secret)).toEqual({ line: 3, column: 17, problem: 'InvalidSymbol' });
    const message = (() => {
      try {
        parseJson(secret, 'config.json');
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(message).toBe('config.json: not valid JSON at line 3, column 17 (InvalidSymbol)');
    expect(message).not.toContain('root');
    // JSON.parse's own message quotes the text: the reason for this module.
    expect(() => JSON.parse(secret)).toThrow(/root|oops/);
  });

  it('finds truncated input, trailing commas and comments, which JSON.parse refuses too', () => {
    expect(jsonErrorAt('{"a": [1, 2')).toMatchObject({ line: 1, problem: expect.stringMatching(/Expected/) });
    expect(jsonErrorAt('[1,]')).toMatchObject({ line: 1, column: 4 });
    expect(jsonErrorAt('// x\n{}')).toMatchObject({ line: 1, column: 1 });
    expect(parseJson('{"a":[1]}', 'x')).toEqual({ a: [1] });
  });
});
