/**
 * Rounds without servers: a MemoryStore and in-process devices (fixtures.ts), the real planner, trainer (TF.js),
 * checkpoints and feed. What the end-to-end tests in tests/ check under workerd and S3, in a second or two.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getJson } from '../../core/storage/json.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { keys } from '../../core/storage/keys.ts';
import { Conflict, NotFound } from '../runs/errors.ts';
import { RunRegistry } from '../runs/registry.ts';
import type { RunRecord } from '../runs/types.ts';
import { parseRunSpec } from '../runs/spec.ts';
import { parseSafetensors } from '../../core/tensors/safetensors.ts';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { world, type World } from '../../tests/support/round-world.ts';

let w: World;
beforeAll(() => initBackend('cpu'));
afterEach(() => w?.close());

const registry = (options: Parameters<World['registry']>[0] = {}) => w.registry(options);

async function keysUnder(prefix: string): Promise<string[]> {
  const out = [];
  for await (const o of w.store.list(prefix)) out.push(o.key);
  return out;
}

describe('a round in phases, on in-memory storage', () => {
  it("exports a cut's segment once however many devices share the cut (they are planned all at once)", async () => {
    w = await world({ rows: 8, cuts: [2, 2, 2, 2, 2, 2] });
    // Each export stores its segment once it is made (a HEAD, then a PUT if absent): one export, one HEAD.
    const heads: string[] = [];
    const store: ObjectStore = Object.assign(Object.create(w.store), { head: (key: string) => (heads.push(key), w.store.head(key)) });
    const runs = registry({ store });
    await runs.create(parseRunSpec(w.spec()), 'r-shared');
    await runs.trigger('r-shared');
    await runs.idle('r-shared');
    expect((await runs.view('r-shared')).progress?.phase).toBe('done');
    expect(heads.filter((k) => k.endsWith('/device/cut-2.onnx'))).toHaveLength(1);
  });

  it('plans, starts every device at once, trains each batch once, and writes adapter, metrics and done marker', async () => {
    w = await world({ rows: 16 });
    const runs = registry();
    await runs.create(parseRunSpec(w.spec()), 'r1');
    expect(await runs.trigger('r1')).toBe(0);
    await runs.idle('r1');
    const view = await runs.view('r1');
    expect(view.progress?.phase, view.progress?.error).toBe('done');
    // 16 rows in batches of 4, two devices.
    expect(view.metrics[0].steps).toBe(8);
    expect(view.progress?.losses.map((l) => l.loss)).toHaveLength(8);
    expect([...w.devices.values()].map((d) => d.requests.length)).toEqual([1, 1]);
    const [d1, d2] = [w.devices.get('device-1')!, w.devices.get('device-2')!];
    expect(Math.max(d1.requestedAt[0], d2.requestedAt[0])).toBeLessThan(Math.min(d1.completedAt[0], d2.completedAt[0]));
    expect(await keysUnder('runs/r1/adapters/0/')).toEqual(['runs/r1/adapters/0/adapter_config.json', 'runs/r1/adapters/0/adapter_model.safetensors']);
    // PEFT's AutoPeftModel loads the base from where the spec named it.
    expect(JSON.parse(new TextDecoder().decode(await runs.adapterFile('r1', 0, 'adapter_config.json'))).base_model_name_or_path).toBe(w.modelDir);
    expect(await w.store.head(keys.roundDone('r1', 0))).toBeDefined();
    const record = await getJson<RunRecord>(w.store, keys.run('r1'));
    expect(record?.totalSteps).toBe(2 * 8);

    // Round 1: nothing changed on the devices, so their stored activations are reused and they are not asked again.
    expect(await runs.trigger('r1')).toBe(1);
    await runs.idle('r1');
    const m1 = (await runs.metrics('r1'))[1];
    expect(m1.devices.every((d) => d.reused)).toBe(true);
    expect([...w.devices.values()].map((d) => d.requests.length)).toEqual([1, 1]);
    expect(m1.trainLoss).toBeLessThan(view.metrics[0].trainLoss);
  });

  it('refuses a trigger past the planned rounds, and unknown runs', async () => {
    w = await world({ rows: 4 });
    const runs = registry();
    await runs.create(parseRunSpec(w.spec({ training: { batchSize: 4, seqLen: 6, rounds: 1 } })), 'r1');
    await runs.trigger('r1');
    await expect(runs.trigger('r1')).rejects.toThrow(Conflict);
    await runs.idle('r1');
    await expect(runs.trigger('r1')).rejects.toThrow(/has done its 1 planned round\(s\) \(training.rounds\): create a new run/);
    await expect(runs.view('ghost')).rejects.toThrow(NotFound);
    await expect(runs.cancel('r1')).rejects.toThrow(/has no round running/);
    // Two creations of one id at once (each asks the devices first): one run, the other refused.
    const twice = await Promise.allSettled([0, 1].map(() => runs.create(parseRunSpec(w.spec()), 'r-twice')));
    expect(twice.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((twice.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(Conflict);
  });

  it('skips an unreachable device with the reason and trains the others', async () => {
    w = await world({ rows: 8 });
    w.devices.get('device-2')!.down = true;
    const runs = registry();
    await runs.create(parseRunSpec(w.spec()), 'r1');
    await runs.trigger('r1');
    await runs.idle('r1');
    const round = await runs.round('r1', 0);
    expect(round.plan.order).toEqual(['device-1']);
    expect(round.plan.skipped['device-2']).toMatch(/^unreachable: device device-2: connection refused/);
    expect(round.metrics?.steps).toBe(2);
  });

  it('devices that stall after accepting cost the round limits.uploadSeconds together, not each in turn, and a cancel answers at once meanwhile', async () => {
    w = await world({ rows: 8, cuts: [1, 2, 2] });
    w.devices.get('device-1')!.stalls = true;
    w.devices.get('device-2')!.stalls = true;
    const runs = registry();
    const spec = (limits: object) => parseRunSpec(w.spec({ ordering: { kind: 'fixed', order: ['device-1', 'device-2', 'device-3'] }, limits }));
    await runs.create(spec({ uploadSeconds: 4 }), 'r-stall');
    const started = performance.now();
    await runs.trigger('r-stall');
    await runs.idle('r-stall');
    const view = await runs.view('r-stall');
    expect(view.progress?.phase, view.progress?.error).toBe('done');
    for (const id of ['device-1', 'device-2'])
      expect(view.progress?.devices[id]).toMatchObject({
        state: 'failed',
        error: `device ${id} round 0: no manifest 4 s after it was asked to start (limits.uploadSeconds)`,
      });
    expect(view.progress?.devices['device-3']).toMatchObject({ state: 'trained', trained: 2 });
    // Both deadlines run from the round's start (a pipelined round asks every device at once): the second staller's
    // wait ends with the first's. Counted from each device's turn, the two would cost 8 s at least.
    expect(performance.now() - started).toBeLessThan(7_000);

    // The default deadline is 15 minutes; a cancel does not wait for it.
    await runs.create(spec({}), 'r-cancel');
    await runs.trigger('r-cancel');
    await new Promise((r) => setTimeout(r, 300));
    const asked = performance.now();
    expect((await runs.cancel('r-cancel')).phase).toBe('cancelled');
    expect(performance.now() - asked).toBeLessThan(2_000);
  });

  it('ends at a cancel while a device stalls its status answer after its batches trained (the call for its forward time)', async () => {
    w = await world({ rows: 8 });
    let stalling = false;
    for (const dev of w.devices.values()) {
      const status = dev.roundStatus.bind(dev);
      dev.roundStatus = async (runId, round) => {
        const answer = await status(runId, round);
        if (answer.state === 'complete') {
          stalling = true;
          await new Promise((r) => setTimeout(r, 8_000));
        }
        return answer;
      };
    }
    const runs = registry();
    await runs.create(parseRunSpec(w.spec()), 'r1');
    await runs.trigger('r1');
    while (!stalling) await new Promise((r) => setTimeout(r, 5));
    const asked = performance.now();
    expect((await runs.cancel('r1')).phase).toBe('cancelled');
    await runs.idle('r1');
    // Before, the cancel's answer came after its 5 s wait, and the round ran on to the end of the stall.
    expect(performance.now() - asked).toBeLessThan(2_000);
  });

  it('ends at a cancel while planning waits on a device, and asks no device to start', async () => {
    w = await world({ rows: 8 });
    const slow = w.devices.get('device-1')!;
    const shards = slow.shards.bind(slow);
    slow.shards = async () => (await new Promise((r) => setTimeout(r, 8_000)), shards());
    const runs = registry();
    await runs.create(parseRunSpec(w.spec()), 'r1');
    await runs.trigger('r1');
    await new Promise((r) => setTimeout(r, 200));
    const asked = performance.now();
    expect((await runs.cancel('r1')).phase).toBe('cancelled');
    await runs.idle('r1');
    // Before, planning waited out the stall, then every device was sent a round of a cancelled run.
    expect(performance.now() - asked).toBeLessThan(2_000);
    expect([...w.devices.values()].map((d) => d.requests.length)).toEqual([0, 0]);
    expect(await w.store.head(keys.plan('r1', 0))).toBeUndefined();
  });

  it.each(['by-device', 'interleaved'] as const)(
    'cancels at a batch boundary, keeps what trained, is not resumed by a restart, and resumes when triggered (%s)',
    async (batchOrder) => {
      w = await world({ rows: 16, batchDelayMs: 40 });
      let runs = registry();
      await runs.create(
        parseRunSpec(
          w.spec({ ordering: { kind: 'fixed', order: ['device-1', 'device-2'] }, training: { batchSize: 4, seqLen: 6, rounds: 2, seed: 1, batchOrder } }),
        ),
        'r1',
      );
      await runs.trigger('r1');
      while (((await runs.view('r1')).progress?.batchesTrained ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
      const stopped = await runs.cancel('r1');
      expect(stopped.phase).toBe('cancelled');
      expect(stopped.batchesTrained).toBeGreaterThanOrEqual(2);
      expect(stopped.batchesTrained).toBeLessThan(8);
      expect((await runs.view('r1')).running).toBe(false);
      // What trained is the round's adapter; the round itself is not done.
      expect(await w.store.head(keys.adapter('r1', 0, 'adapter_model.safetensors'))).toBeDefined();
      expect(await w.store.head(keys.roundDone('r1', 0))).toBeUndefined();
      expect(await runs.metrics('r1')).toEqual([]);

      // A restarted server leaves a cancelled round alone.
      runs = registry();
      await runs.init();
      expect((await runs.view('r1')).running).toBe(false);
      expect((await runs.view('r1')).cancelled?.round).toBe(0);

      // Triggered again, it resumes from the checkpoint: every batch trained exactly once over the two parts.
      expect(await runs.trigger('r1')).toBe(0);
      await runs.idle('r1');
      const view = await runs.view('r1');
      expect(view.progress?.phase, view.progress?.error).toBe('done');
      expect(view.metrics[0].steps).toBe(8);
      expect(view.cancelled).toBeUndefined();
    },
  );

  it('deletes a run (cancelling its round) and everything stored under it, and nothing of other runs', async () => {
    w = await world({ rows: 16, batchDelayMs: 20 });
    const logged: string[] = [];
    const runs = registry({ urlSeconds: 4, log: (m) => logged.push(m) });
    await runs.create(parseRunSpec(w.spec()), 'keep');
    await runs.create(parseRunSpec(w.spec()), 'gone');
    await runs.trigger('keep');
    await runs.idle('keep');
    await runs.trigger('gone');
    while (((await runs.view('gone')).progress?.batchesTrained ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
    const { deleted } = await runs.delete('gone');
    expect(deleted).toBeGreaterThan(3);
    // Devices still uploading for the deleted run land objects after the first sweep: a second one, once they say
    // they have stopped, takes those too.
    expect(await w.store.head(keys.deletedRun('gone'))).toBeDefined();
    while (!logged.some((m) => m.startsWith('run gone: swept again'))) await new Promise((r) => setTimeout(r, 20));
    // A device that says so and still holds an upload URL writes after that sweep: the last, when the URLs have
    // expired, takes it (before, the tombstone went with the second sweep and the object stayed for good).
    await w.store.put(keys.activationBatch('gone', 'device-2', 0, 99), new Uint8Array(8));
    // Until then the id is not free: the last sweep would take a new run's objects.
    await expect(runs.create(parseRunSpec(w.spec()), 'gone')).rejects.toThrow(/^run gone was deleted, .* choose another id$/);
    // Storage takes a URL until its expiry by its own clock, and an upload taken then lands later: the last sweep
    // comes after a margin (a quarter of the URLs' 4 s here), and takes what lands in it.
    const { urlsExpire } = (await getJson<{ urlsExpire: number }>(w.store, keys.deletedRun('gone')))!;
    while (Date.now() < urlsExpire + 300) await new Promise((r) => setTimeout(r, 20));
    await w.store.put(keys.activationBatch('gone', 'device-2', 0, 98), new Uint8Array(8));
    while (await w.store.head(keys.deletedRun('gone'))) await new Promise((r) => setTimeout(r, 20));
    expect(await keysUnder('runs/gone/')).toEqual([]);
    expect(runs.list().map((r) => r.id)).toEqual(['keep']);
    await expect(runs.view('gone')).rejects.toThrow(NotFound);
    expect((await keysUnder('runs/keep/')).length).toBeGreaterThan(5);
  });

  it('holds a deleted id from the moment of deletion, and frees at once the id of a run that never started a round', async () => {
    w = await world({ rows: 8 });
    const runs = registry();
    await runs.create(parseRunSpec(w.spec()), 'quick');
    // Asked together: before, the new run came between the old one's removal and its tombstone, and the last sweep took it.
    const [deleted, created] = await Promise.allSettled([runs.delete('quick'), runs.create(parseRunSpec(w.spec()), 'quick')]);
    expect(deleted.status).toBe('fulfilled');
    expect(created.status === 'rejected' && created.reason).toBeInstanceOf(Conflict);
    // Two deletes of a running run: the second is refused, never a second tombstone whose sweep ends the first early.
    await runs.create(parseRunSpec(w.spec()), 'twice');
    await runs.trigger('twice');
    const both = await Promise.allSettled([runs.delete('twice'), runs.delete('twice')]);
    expect(both.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect(both[1]!.status === 'rejected' && both[1]!.reason).toBeInstanceOf(Conflict);
    // No round ever gave out an upload URL: nothing is left to wait for.
    while (await w.store.head(keys.deletedRun('quick'))) await new Promise((r) => setTimeout(r, 20));
    expect((await runs.create(parseRunSpec(w.spec()), 'quick')).id).toBe('quick');
  });

  it('interleaved: one batch of each device in turn, in the client order; by-device: device after device', async () => {
    w = await world({ rows: 16 });
    const runs = registry();
    // The devices whose batches the round trained, in the order it trained them (its last checkpoint lists them).
    const trainedOrder = async (id: string) => {
      const metas = [];
      for (const slot of [0, 1]) {
        const bytes = await w.store.get(keys.checkpoint(id, slot));
        if (bytes) metas.push(JSON.parse(parseSafetensors(bytes, 'checkpoint').metadata.meta) as { seq: number; consumed: string[] });
      }
      return metas.sort((a, b) => b.seq - a.seq)[0].consumed.map((k) => k.split('/')[3]);
    };
    const ordering = { kind: 'fixed' as const, order: ['device-2', 'device-1'] };
    for (const [id, batchOrder] of [
      ['mixed', 'interleaved'],
      ['apart', 'by-device'],
    ] as const) {
      await runs.create(parseRunSpec(w.spec({ ordering, training: { batchSize: 4, seqLen: 8, rounds: 1, batchOrder } })), id);
      await runs.trigger(id);
      await runs.idle(id);
      expect((await runs.view(id)).progress?.phase).toBe('done');
    }
    expect(await trainedOrder('mixed')).toEqual(['device-2', 'device-1', 'device-2', 'device-1', 'device-2', 'device-1', 'device-2', 'device-1']);
    expect(await trainedOrder('apart')).toEqual(['device-2', 'device-2', 'device-2', 'device-2', 'device-1', 'device-1', 'device-1', 'device-1']);
  });

  it('interleaved: each feed prefetches its share of the window, not the whole of it', async () => {
    w = await world({ rows: 16 });
    // Batch downloads wait until 300 ms after the first one began: what a feed asks for before then is its window.
    let [asked, opened] = [0, undefined as Promise<unknown> | undefined];
    const gated = new Proxy(w.store, {
      get: (store, name) =>
        name === 'get'
          ? async (key: string) => {
              if (/\/activations\/.*\.safetensors$/.test(key)) {
                asked++;
                await (opened ??= new Promise((r) => setTimeout(r, 300)));
              }
              return store.get(key);
            }
          : Reflect.get(store, name, store),
    });
    const firstWindow = async (id: string, batchOrder: 'interleaved' | 'by-device') => {
      [asked, opened] = [0, undefined];
      // Stop-and-wait: every batch is stored before the feeds open, so a feed's window fills at once.
      const runs = registry({ store: gated, schedule: 'stop-and-wait' });
      await runs.create(parseRunSpec(w.spec({ training: { batchSize: 2, seqLen: 8, rounds: 1, batchOrder } })), id);
      await runs.trigger(id);
      while (!opened) await new Promise((r) => setTimeout(r, 5));
      await opened;
      const window = asked;
      await runs.idle(id);
      expect((await runs.metrics(id))[0].steps).toBe(16);
      return window;
    };
    // The first device's feed alone runs until its first batch arrives: by device it has the whole window (4 ahead),
    // interleaved with the other device half of it.
    expect(await firstWindow('apart', 'by-device')).toBeGreaterThan(await firstWindow('mixed', 'interleaved'));
  });

  it('stop-and-wait asks each device only when the server comes to it', async () => {
    w = await world({ rows: 8 });
    const runs = registry({ schedule: 'stop-and-wait' });
    await runs.create(parseRunSpec(w.spec({ ordering: { kind: 'fixed', order: ['device-2', 'device-1'] } })), 'r1');
    await runs.trigger('r1');
    await runs.idle('r1');
    const [d1, d2] = [w.devices.get('device-1')!, w.devices.get('device-2')!];
    expect((await runs.metrics('r1'))[0].steps).toBe(4);
    // device-1 was asked only after device-2 had finished (and been trained on); pipelined, both are asked at once.
    expect(d1.requestedAt[0]).toBeGreaterThan(d2.completedAt[0]);
  });

  it('a round with the adapted blocks on onnxruntime (ort-cpu) writes the adapter a TensorFlow.js round writes', async () => {
    w = await world({ rows: 8 });
    const spec = parseRunSpec(
      w.spec({ ordering: { kind: 'fixed', order: ['device-1', 'device-2'] }, training: { batchSize: 4, seqLen: 6, rounds: 1, seed: 1 } }),
    );
    const adapter = async (runs: RunRegistry, id: string) => {
      await runs.create(spec, id);
      await runs.trigger(id);
      await runs.idle(id);
      expect((await runs.view(id)).progress?.phase).toBe('done');
      return parseSafetensors(await runs.adapterFile(id, 0, 'adapter_model.safetensors'), id).tensors;
    };
    const onTf = await adapter(registry(), 'tf');
    const onOrt = await adapter(registry({ blocks: { provider: 'cpu', threads: 1 } }), 'ort');
    expect([...onOrt.keys()]).toEqual([...onTf.keys()]);
    for (const [name, t] of onTf) {
      const got = onOrt.get(name)!.data as Float32Array;
      const want = t.data as Float32Array;
      const scale = Math.max(...want.map(Math.abs)) || 1;
      expect(Math.max(...want.map((x, i) => Math.abs(x - got[i]!))) / scale, name).toBeLessThan(1e-4);
    }
  });

  it('a Llama classifier on onnxruntime: trains, evaluates held-out text through every block, and writes a SEQ_CLS adapter with its head', async () => {
    w = await world({ rows: 8, family: 'llama' });
    const evalRows = Array.from({ length: 6 }, (_, i) => ({ text: `held-out row ${i} ${i % 2 ? 'good' : 'bad'}`, label: String(i % 2) }));
    const runs = registry({ blocks: { provider: 'cpu', threads: 1 } });
    await runs.create(
      parseRunSpec(
        w.spec({ baseModel: 'meta-llama/Llama-3.2-1B', task: { labels: ['0', '1'], evalRows }, training: { batchSize: 4, seqLen: 6, rounds: 1, seed: 1 } }),
      ),
      'l1',
    );
    await runs.trigger('l1');
    await runs.idle('l1');
    const view = await runs.view('l1');
    expect(view.progress?.phase, view.progress?.error).toBe('done');
    const [m] = view.metrics;
    expect(m!.steps).toBe(4);
    expect(m!.evalRows).toBe(6);
    expect(m!.evalLoss).toBeGreaterThan(0);
    expect(m!.evalAccuracy! * 6).toBeCloseTo(Math.round(m!.evalAccuracy! * 6), 9);
    const config = JSON.parse(new TextDecoder().decode(await runs.adapterFile('l1', 0, 'adapter_config.json')));
    expect(config).toMatchObject({
      base_model_name_or_path: 'meta-llama/Llama-3.2-1B',
      task_type: 'SEQ_CLS',
      fan_in_fan_out: false,
      layers_pattern: 'layers',
      modules_to_save: ['score'],
      target_modules: ['q_proj', 'v_proj'],
    });
    const tensors = parseSafetensors(await runs.adapterFile('l1', 0, 'adapter_model.safetensors'), 'l1').tensors;
    expect(tensors.get('base_model.model.score.weight')!.shape).toEqual([2, 32]);
    expect(tensors.has('base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight')).toBe(true);
  });
});
