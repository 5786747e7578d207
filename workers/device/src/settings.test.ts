import { describe, expect, it } from 'vitest';
import { deviceSettings, type DeviceVars } from './settings.ts';

const base = { DEVICE_ID: 'device-a', OWNER_TOKEN: 'owner' } as DeviceVars;
const sha = 'a'.repeat(64);

describe('device settings', () => {
  it('fills in the defaults and reads what is given', () => {
    const s = deviceSettings(base);
    expect([s.minCut, s.labels, s.pieceBatches, s.uploadAttempts, s.uploadBackoffMs, s.storageOrigins, s.approvedSegments]).toEqual([
      2,
      ['0', '1'],
      4,
      4,
      200,
      [],
      [],
    ]);
    const t = deviceSettings({
      ...base,
      MIN_CUT: '3',
      LABELS: 'neg, pos',
      PIECE_BATCHES: '2',
      MAX_SHARD_ROWS: '50',
      STORAGE_ORIGINS: 'https://x.r2.cloudflarestorage.com',
      APPROVED_SEGMENTS: JSON.stringify([{ sha256: sha, model: 'gpt2', cut: 3 }]),
    });
    expect([t.minCut, t.labels, t.pieceBatches, t.shardLimits.maxRows, t.storageOrigins, t.approvedSegments]).toEqual([
      3,
      ['neg', 'pos'],
      2,
      50,
      ['https://x.r2.cloudflarestorage.com'],
      [{ sha256: sha, model: 'gpt2', cut: 3 }],
    ]);
  });

  it('refuses each bad value by name with the fix, instead of falling back to a default', () => {
    const bad: Array<[Partial<DeviceVars>, RegExp]> = [
      [{ PIECE_BATCHES: 'many' }, /^PIECE_BATCHES is "many": set a positive integer \(default 4\)/],
      [{ UPLOAD_ATTEMPTS: '0' }, /^UPLOAD_ATTEMPTS is "0": set a positive integer/],
      [{ MAX_SHARD_BYTES: '1.5' }, /^MAX_SHARD_BYTES is "1.5"/],
      [{ MIN_CUT: '0' }, /^MIN_CUT is "0": set an integer >= 1/],
      [{ LABELS: 'yes' }, /^LABELS is "yes": list two or more distinct labels/],
      [{ STORAGE_ORIGINS: 'http://example.com' }, /^STORAGE_ORIGINS holds "http:\/\/example.com"/],
      [{ APPROVED_SEGMENTS: '{' }, /^APPROVED_SEGMENTS is not JSON/],
      [
        { APPROVED_SEGMENTS: JSON.stringify([{ sha256: sha, model: 'gpt2', cut: 1 }]) },
        /^APPROVED_SEGMENTS\[0\]: approval: field 'cut' must be an integer >= 2/,
      ],
      [{ DEVICE_ID: '' }, /^DEVICE_ID is not set/],
      [{ DEVICE_ID: '../x' }, /^DEVICE_ID '\.\.\/x' is not a valid id/],
      [{ OWNER_TOKEN: '' }, /^OWNER_TOKEN is not set: wrangler secret put OWNER_TOKEN/],
    ];
    for (const [vars, message] of bad) expect(() => deviceSettings({ ...base, ...vars } as DeviceVars), JSON.stringify(vars)).toThrow(message);
  });
});
