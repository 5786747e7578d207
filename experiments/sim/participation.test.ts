import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import { runMethod } from './methods.ts';
import { delivering, EVERY_DEVICE } from './participation.ts';
import { data, model, spec } from './tiny.fixture.ts';

const ids = Array.from({ length: 100 }, (_, i) => `device-${i}`);

describe('many devices: who delivers in a round', () => {
  it('samples each device with the given share, drops some of those out, never leaves a round empty', () => {
    expect(delivering(ids, 0, 1, EVERY_DEVICE)).toEqual(ids);
    const rounds = Array.from({ length: 50 }, (_, r) => delivering(ids, r, 1, { fraction: 0.3, dropout: 0 }));
    const mean = rounds.reduce((a, r) => a + r.length, 0) / rounds.length;
    expect(mean).toBeGreaterThan(25);
    expect(mean).toBeLessThan(35);
    expect(rounds[0]).toEqual(delivering(ids, 0, 1, { fraction: 0.3, dropout: 0 }));
    expect(rounds[1]).not.toEqual(rounds[0]);
    const dropped = Array.from({ length: 50 }, (_, r) => delivering(ids, r, 1, { fraction: 1, dropout: 0.2 }).length);
    expect(dropped.reduce((a, x) => a + x, 0) / 50).toBeCloseTo(80, -1);
    expect(delivering(ids.slice(0, 3), 0, 1, { fraction: 1e-9, dropout: 0 })).toHaveLength(1);
  });
});

describe('partial participation in the methods', () => {
  beforeAll(() => initBackend('wasm'));

  it("SplitFrozen trains on every device it holds activations of; FedLoRA only on the round's", async () => {
    const d = data(4);
    const participation = { fraction: 0.5, dropout: 0 };
    const s = { ...spec, rounds: 3, ordering: { kind: 'random-reshuffle' as const }, participation };
    const all = d.devices.map((x) => x.id);
    const each = [0, 1, 2].map((r) => delivering(all, r, spec.seed, participation));
    const seen = each.map((_, r) => new Set(each.slice(0, r + 1).flat()).size);
    // The draws must leave someone out, or this proves nothing.
    expect(each.some((r) => r.length < all.length)).toBe(true);
    expect(seen.some((n, r) => n > each[r]!.length)).toBe(true);
    const sf = await runMethod('splitfrozen', model, d, s);
    const fed = await runMethod('fedlora', model, d, s);
    expect(sf.rounds.map((r) => r.devices)).toEqual(seen);
    expect(fed.rounds.map((r) => r.devices)).toEqual(each.map((r) => r.length));
    // Each device's activations go up once, when it first delivers.
    const everSeen = new Set(each.flat());
    const tokens = d.devices.filter((x) => everSeen.has(x.id)).reduce((a, x) => a + x.batches.reduce((t, b) => t + b.rows * b.seqLen, 0), 0);
    expect(sf.bytesUpPerDevice).toBe((tokens * model.config.nEmbd * spec.wireBytes) / all.length);
  });

  it('GraB orders the devices it has an update of and puts the others last, where a device was missing last round', async () => {
    const d = data(4);
    const participation = { fraction: 0.5, dropout: 0 };
    const run = await runMethod('fedlora', model, d, { ...spec, rounds: 3, ordering: { kind: 'grab' }, participation });
    const each = [0, 1, 2].map(
      (r) =>
        delivering(
          d.devices.map((x) => x.id),
          r,
          spec.seed,
          participation,
        ).length,
    );
    expect(run.rounds.map((r) => r.devices)).toEqual(each);
  });
});
