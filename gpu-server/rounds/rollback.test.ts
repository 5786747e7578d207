/**
 * The loss-rise rollback (guard.ts) of a device whose part of a round is cut: the state from before its first batch
 * is kept in storage, so a round cancelled while the device trains, and resumed by a restarted server, still
 * measures all of its batches against limits.maxLossRise. In-process devices and a MemoryStore (round-world.ts).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { parseRunSpec } from '../runs/spec.ts';
import { world, type World } from '../../tests/support/round-world.ts';
import { keys } from '../../core/storage/keys.ts';
import { parseSafetensors } from '../../core/tensors/safetensors.ts';

let w: World;
beforeAll(() => initBackend('cpu'));
afterEach(() => w?.close());

const evalRows = Array.from({ length: 16 }, (_, i) => ({ text: `a held-out sentence, number ${i}`, label: String(i % 2) }));
/**
 * By device, device-1 first. The in-process devices' hidden states carry no label, so at this learning rate their
 * batches raise the held-out loss: past a bound this small, a device is rolled back.
 */
const spec = () =>
  parseRunSpec(
    w.spec({
      ordering: { kind: 'fixed', order: ['device-1', 'device-2'] },
      task: { labels: ['0', '1'], evalRows },
      optimizer: { lr: 0.5, schedule: 'constant' },
      limits: { maxLossRise: 1e-6 },
      training: { batchSize: 2, seqLen: 6, rounds: 1, seed: 1, batchOrder: 'by-device' },
    }),
  );

describe('the loss-rise rollback of a device whose part of the round is cut', () => {
  it('rolls the device back when its round, cancelled while it trains, resumes on a restarted server', async () => {
    w = await world({ rows: 16, batchDelayMs: 30 });
    let runs = w.registry();
    // Uninterrupted, the device is rolled back: what the cut round must come to as well.
    await runs.create(spec(), 'whole');
    await runs.trigger('whole');
    await runs.idle('whole');
    expect((await runs.view('whole')).progress?.devices['device-1']?.state).toBe('rolled-back');

    await runs.create(spec(), 'cut');
    await runs.trigger('cut');
    while (((await runs.view('cut')).progress?.devices['device-1']?.trained ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
    await runs.cancel('cut');
    const cut = (await runs.view('cut')).progress?.devices['device-1'];
    expect(cut?.state).toBe('waiting');
    expect(cut?.trained).toBeLessThan(8);
    // The cancelled round's adapter leaves out the device's batches, none measured yet (before, they were in it).
    const adapter = async (id: string) => parseSafetensors((await w.store.get(keys.adapter(id, 0, 'adapter_model.safetensors')))!, id).tensors;
    const whole = await adapter('whole');
    for (const [name, t] of await adapter('cut')) expect(t.data, name).toEqual(whole.get(name)!.data);
    // Triggered and cancelled again before the device's turn comes back: still without them (before, with them).
    await runs.trigger('cut');
    await runs.cancel('cut');
    await runs.idle('cut');
    for (const [name, t] of await adapter('cut')) expect(t.data, name).toEqual(whole.get(name)!.data);

    // A new server process: nothing of the device's start is left in memory.
    runs = w.registry();
    await runs.init();
    await runs.trigger('cut');
    await runs.idle('cut');
    const view = await runs.view('cut');
    expect(view.progress?.phase, view.progress?.error).toBe('done');
    // Before, the resumed device had no mark and was trained on, unmeasured.
    expect(view.progress?.devices['device-1']).toMatchObject({ state: 'rolled-back' });
    expect(view.progress?.devices['device-1']?.error).toMatch(/^rolled back: its batches raised the held-out loss from [\d.]+ to [\d.]+/);
    // Back to the state before it: the round ends with the whole round's adapters, bit for bit.
    const resumed = await adapter('cut');
    expect([...resumed.keys()]).toEqual([...whole.keys()]);
    for (const [name, t] of whole) expect(resumed.get(name)!.data, name).toEqual(t.data);

    // Cut again, and the device fails to start when resumed: its batches trained before are measured all the same.
    await runs.create(spec(), 'gone-quiet');
    await runs.trigger('gone-quiet');
    while (((await runs.view('gone-quiet')).progress?.devices['device-1']?.trained ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
    await runs.cancel('gone-quiet');
    w.devices.get('device-1')!.down = true;
    await runs.trigger('gone-quiet');
    await runs.idle('gone-quiet');
    const quiet = await runs.view('gone-quiet');
    expect(quiet.progress?.phase, quiet.progress?.error).toBe('done');
    // Before, it failed with its batches kept in the adapters, unmeasured.
    expect(quiet.progress?.devices['device-1']?.state).toBe('rolled-back');
    const after = await adapter('gone-quiet');
    for (const [name, t] of whole) expect(after.get(name)!.data, name).toEqual(t.data);
    w.devices.get('device-1')!.down = false;

    // Cut after the device was rolled back: the round's table still says so when it resumes (before: 'trained').
    await runs.create(spec(), 'late');
    await runs.trigger('late');
    while ((await runs.view('late')).progress?.devices['device-2']?.state !== 'training') await new Promise((r) => setTimeout(r, 5));
    await runs.cancel('late');
    runs = w.registry();
    await runs.init();
    await runs.trigger('late');
    await runs.idle('late');
    expect((await runs.view('late')).progress?.devices['device-1']?.state).toBe('rolled-back');
    // A whole round keeps no device's start: its marks go.
    const kept = [];
    for await (const o of w.store.list('runs/late/checkpoints/')) kept.push(o.key.split('/').pop());
    expect(kept.filter((k) => k!.startsWith('guard-mark'))).toEqual([]);
  });
});
