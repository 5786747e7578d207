import { describe, expect, it } from 'vitest';
import { withRetries } from './retry.ts';

describe('retries', () => {
  it('tries until the call succeeds, reporting each failure, and gives up after the attempts with the last error', async () => {
    let calls = 0;
    const failures: number[] = [];
    const flaky = async () => (++calls < 3 ? Promise.reject(new Error(`try ${calls}`)) : 'done');
    expect(await withRetries(flaky, { attempts: 4, backoffMs: 1, onFailure: (a) => failures.push(a) })).toBe('done');
    expect([calls, failures]).toEqual([3, [1, 2]]);
    calls = 0;
    await expect(withRetries(async () => Promise.reject(new Error(`try ${++calls}`)), { attempts: 3, backoffMs: 1 })).rejects.toThrow('try 3');
  });

  it('throws an error that would only recur at once, without trying again', async () => {
    let calls = 0;
    const permanent = new RangeError('too large');
    await expect(
      withRetries(async () => Promise.reject((calls++, permanent)), { attempts: 5, backoffMs: 1, permanent: (e) => e instanceof RangeError }),
    ).rejects.toBe(permanent);
    expect(calls).toBe(1);
  });
});
