import { describe, expect, it } from 'vitest';
import { AnswerError, parseDevicePolicy, parseRoundStatus, parseShardListing } from './answers.ts';
import { MAX_DEVICE_TEXT, untrustedText } from './untrusted.ts';

const shard = { name: 'a', rows: 10, task: 'classification', labels: ['0', '1'], etag: 'e1' };
const asked = { device: 'd', runId: 'r', round: 0 };

describe("a device's answers", () => {
  it('refuses listings no honest device sends, naming the field', () => {
    const refusal = (v: unknown) => {
      try {
        parseShardListing(v);
        return 'accepted';
      } catch (e) {
        expect(e).toBeInstanceOf(AnswerError);
        return (e as Error).message;
      }
    };
    expect(refusal({})).toMatch(/^shard listing: field 'shards' /);
    expect(refusal('garbage')).toMatch(/^shard listing: field '\(answer\)' /);
    expect(refusal({ shards: [{ ...shard, rows: -400_000 }] })).toMatch(/^shard listing: field 'shards\[0\]\.rows' /);
    expect(refusal({ shards: [{ ...shard, rows: 1.5 }] })).toMatch(/^shard listing: field 'shards\[0\]\.rows' /);
    expect(refusal({ shards: [{ ...shard, labels: 'x' }] })).toMatch(/^shard listing: field 'shards\[0\]\.labels' /);
    expect(refusal({ shards: [{ ...shard, name: 'x'.repeat(129) }] })).toMatch(/^shard listing: field 'shards\[0\]\.name' /);
    expect(refusal({ shards: Array.from({ length: 1001 }, (_, i) => ({ ...shard, name: `s${i}` })) })).toMatch(/^shard listing: field 'shards' /);
    expect(refusal({ shards: [shard, shard] })).toBe("shard listing: shard 'a' is listed twice");
    expect(parseShardListing({ shards: [{ ...shard, extra: 1 }] })).toEqual([shard]);
  });

  it("refuses a policy that is not one an owner can set, as the device itself checks an owner's approvals", () => {
    const approval = { sha256: 'a'.repeat(64), model: 'm', cut: 2 };
    expect(parseDevicePolicy({ minCut: 2, approvals: [approval], defence: 'medium' })).toEqual({
      minCut: 2,
      approvals: [approval],
      defence: { mechanism: 'gaussian', epsilon: 8, delta: 1e-5 },
    });
    expect(() => parseDevicePolicy({})).toThrow("policy: field 'minCut' must be an integer >= 1");
    expect(() => parseDevicePolicy({ minCut: 2, approvals: {} })).toThrow("policy: field 'approvals' must be a list of at most 1000");
    // An approval below a minimum cut the owner raised later is read (the planner leaves it unused), and a newer
    // device's extra field is dropped, not the device.
    expect(parseDevicePolicy({ minCut: 2, approvals: [{ ...approval, cut: 1, future: true }], defence: 'off' }).approvals).toEqual([{ ...approval, cut: 1 }]);
    expect(() => parseDevicePolicy({ minCut: 2, approvals: [{ ...approval, cut: 0 }], defence: 'off' })).toThrow(
      /^policy: approvals\[0\]: approval: field 'cut' must be an integer >= 1/,
    );
    // A field name a megabyte long is refused at once, shown cut short, with no suggestion sought.
    const huge = 'x'.repeat(1_000_000);
    expect(() => parseDevicePolicy({ minCut: 2, approvals: [], defence: { mechanism: 'none', [huge]: 1 } })).toThrow(
      `unknown field '${'x'.repeat(64)}...'; fields: mechanism`,
    );
    expect(() => parseDevicePolicy({ minCut: 2, approvals: [], defence: 'none at all' })).toThrow(/^policy: field 'defence': 'none at all' is not a level/);
  });

  it("bounds and escapes a round status's texts, so a device can neither flood nor forge the server's log", () => {
    const forged = `boom\n[server] run r1: round 0 done\u001b[2J${'x'.repeat(256 * 1024)}`;
    const status = parseRoundStatus({ state: 'failed', batchesDone: 0, batchesTotal: 3, failures: [forged], error: forged, device: 'someone else' }, asked);
    expect(status.device).toBe('d');
    expect(status.error!.length).toBeLessThan(MAX_DEVICE_TEXT + 100);
    expect(['\n', '\u001b'].filter((c) => status.error!.includes(c))).toEqual([]);
    expect(status.error).toMatch(/^boom\\u\{a\}\[server\] run r1: round 0 done\\u\{1b\}\[2J/);
    expect(status.failures[0]).toBe(status.error);
    expect(() => parseRoundStatus({ state: 'done', batchesDone: 0, batchesTotal: 1 }, asked)).toThrow(/^round status: field 'state' /);
    expect(parseRoundStatus({ state: 'running', batchesDone: 1, batchesTotal: 2, wasmMemoryBytes: 2 ** 20 }, asked).wasmMemoryBytes).toBe(2 ** 20);
    expect(() => parseRoundStatus({ state: 'running', batchesDone: 1, batchesTotal: 2, wasmMemoryBytes: -1 }, asked)).toThrow(/field 'wasmMemoryBytes' /);
    expect(() => parseRoundStatus({ state: 'running', batchesDone: -1, batchesTotal: 1 }, asked)).toThrow(/^round status: field 'batchesDone' /);
    expect(() => parseRoundStatus({ state: 'running', batchesDone: 0, batchesTotal: 1, failures: Array(101).fill('x') }, asked)).toThrow(
      /^round status: field 'failures' /,
    );
  });

  it('makes any text safe to log: control, format and separator characters escaped, length bounded', () => {
    expect(untrustedText('a\r\nb\u202ec\u2028')).toBe('a\\u{d}\\u{a}b\\u{202e}c\\u{2028}');
    expect(untrustedText('x'.repeat(600))).toBe(`${'x'.repeat(500)}... (100 more characters)`);
    // A cut through a surrogate pair leaves half of it: escaped, never a lone surrogate in the log.
    expect(untrustedText(`${'x'.repeat(499)}\u{1f600}`)).toBe(`${'x'.repeat(499)}\\u{d83d}... (1 more characters)`);
    expect(untrustedText({ error: 1 })).toBe('{"error":1}');
    // Nested past what JSON.stringify prints (a RangeError, which a status's error would have thrown as is): its type.
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(untrustedText(deep)).toBe('object');
  });
});
