/**
 * The groups defence on a real device (workerd, the S3 server, a tiny GPT-2): the owner loads public groups of
 * similar tokens and names them in an approval; the device replaces each token within its group before the prefix,
 * so what it uploads is the prefix's output on the sanitised text, never on the owner's. Reproduced here with the
 * device's own key, which only a test (playing the owner) holds.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../core/auth/signing.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { canonicalDefence, type Defence } from '../core/privacy/defence.ts';
import { groupMechanism, groupsContext, groupsSha256, type TokenGroups } from '../core/privacy/groups.ts';
import { sanitiser } from '../core/privacy/sanitise.ts';
import { defenceKey } from '../core/privacy/stream.ts';
import { keys } from '../core/storage/keys.ts';
import type { S3Store } from '../core/storage/s3.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { decodeActivationBatch } from '../core/wire/activations.ts';
import type { DeviceClient } from '../core/wire/device-client.ts';
import type { ActivationManifest } from '../core/wire/round.ts';
import { buildRoundRequest } from '../gpu-server/rounds/request.ts';
import type { RunningDevice } from '../infra/local/device.ts';
import { startOneDevice, type OneDevice } from './support/one-device.ts';
import { maxAbsDiff, paddingZeroed } from './fixtures.ts';

const SECRET = 'round-secret';
const DEFENCE_SECRET = 'the owner of dev-g keeps this one to themselves';
const CUT = 2;
const EOS = 50256;
const config = gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 64, numLabels: 2 });
const model = initModel(config, { seed: 5, paramNoise: 0.1 });
const onnx = exportPrefix(model, { cut: CUT });
const TEXTS = ['the film was great and the music moving', 'a dull plot with clumsy actors', 'the cast was superb', 'boring scenes and a lazy script'];
const ROWS = TEXTS.map((text, i) => ({ text, label: String(i % 2) }));
const tokenizer = new GPT2Tokenizer();
const encode = (rows: typeof ROWS, seqLen: number) =>
  tokenizer.encodeBatch(
    rows.map((r) => r.text),
    { maxLength: seqLen, padTokenId: EOS },
  );

/** Every token of the shard in groups of 8 or more (public in a real deployment; here made to cover the shard). */
function groupsOfShard(): TokenGroups {
  const tokens = [...new Set(Array.from(encode(ROWS, 16).ids).filter((t) => t !== EOS))].sort((a, b) => a - b);
  const groups: number[][] = [];
  for (let i = 0; i + 8 <= tokens.length; i += 8) groups.push(tokens.slice(i, i + 8));
  groups.at(-1)!.push(...tokens.slice(groups.length * 8));
  return { groups, placeholder: EOS, keep: [EOS] };
}

let world: OneDevice;
let store: S3Store;
let client: DeviceClient;
let device: RunningDevice;
let modelSha: string;

beforeAll(async () => {
  const body = ROWS.map((r) => JSON.stringify(r)).join('\n');
  world = await startOneDevice('dev-g', SECRET, { path: 'reviews?format=jsonl', body }, { vars: { LABELS: '0,1' }, defenceSecret: DEFENCE_SECRET });
  ({ store, client, device } = world);
  modelSha = await sha256Hex(onnx);
  await store.put(keys.devicePrefix(modelSha, CUT), onnx);
});

afterAll(() => world?.stop());

const plan = (runId: string, batchSize = 2) =>
  buildRoundRequest(store, {
    runId,
    round: 0,
    deviceId: 'dev-g',
    modelSha256: modelSha,
    cut: CUT,
    rows: ROWS.length,
    batchSize,
    seqLen: 16,
    dtype: 'fp32',
    labels: ['0', '1'],
    padTokenId: EOS,
  });

async function round(runId: string, batchSize = 2) {
  await client.startRound(await plan(runId, batchSize));
  const status = await client.waitForRound(runId, 0);
  if (status.state !== 'complete') return { status };
  const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest(runId, 'dev-g', 0)))) as ActivationManifest;
  const batches = await Promise.all(
    manifest.batches.map(async (b) => decodeActivationBatch((await store.get(keys.activationBatch(runId, 'dev-g', 0, b.index)))!)),
  );
  return { status, manifest, batches };
}

describe('the groups defence on a device', () => {
  const table = groupsOfShard();
  const defence: Defence = { mechanism: 'groups', epsilon: 0, groups: groupsSha256(table) };

  it('refuses a round until the owner has loaded the groups their setting names, and refuses groups that give tokens away', async () => {
    await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence });
    await expect(round('run-no-groups')).rejects.toThrow(/groups [0-9a-f]{64}, which this device does not hold \(PUT \/groups/);
    const small = await fetch(new URL('/groups', device.url), {
      method: 'PUT',
      headers: { authorization: 'Bearer owner' },
      body: JSON.stringify({ groups: [[1, 2, 3]], placeholder: EOS }),
    });
    expect(small.status).toBe(400);
    expect(await small.json()).toEqual({ error: "groups[0]: 3 tokens, fewer than the owner's minimum of 8 (a small group gives its tokens away)" });
    const extra = await fetch(new URL('/groups', device.url), {
      method: 'PUT',
      headers: { authorization: 'Bearer owner' },
      body: JSON.stringify({ ...table, kep: [] }),
    });
    expect(await extra.json()).toEqual({ error: "groups: unknown field 'kep'; did you mean 'keep'?" });
    const anyone = await fetch(new URL('/groups', device.url), { method: 'PUT', body: JSON.stringify(table) });
    expect(anyone.status).toBe(401);
    expect(await device.putGroups(table)).toBe(defence.groups);
  });

  it("uploads the prefix's output on the sanitised text, each token replaced within its group, the setting named in the manifest", async () => {
    const { status, manifest, batches } = await round('run-groups');
    expect(status.state).toBe('complete');
    expect(manifest!.defence).toEqual(defence);
    expect(manifest!.clip).toBeUndefined();
    const sanitise = sanitiser(groupMechanism(table, 0), defenceKey(DEFENCE_SECRET), groupsContext(defence));
    const session = await ort.InferenceSession.create(onnx);
    let [replaced, real] = [0, 0];
    for (const [i, batch] of batches!.entries()) {
      expect(batch.defence).toBe(canonicalDefence(defence));
      const enc = encode(ROWS.slice(2 * i, 2 * i + 2), 16);
      const ids = sanitise(enc.ids, enc.attentionMask, enc.rows, enc.seqLen);
      for (let p = 0; p < ids.length; p++) {
        if (!enc.attentionMask[p]) continue;
        real++;
        if (ids[p] !== enc.ids[p]) replaced++;
        expect(table.groups.find((g) => g.includes(enc.ids[p]))).toContain(ids[p]);
      }
      const shape = [enc.rows, enc.seqLen];
      const out = await session.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), shape),
        attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape),
      });
      expect(maxAbsDiff(batch.hidden, paddingZeroed(out[PREFIX_OUTPUT].data as Float32Array, enc.attentionMask, config.nEmbd))).toBeLessThan(1e-5);
    }
    // At epsilon 0 a token stays itself with probability 1/K only: most of the owner's tokens never reach the prefix.
    expect(replaced / real).toBeGreaterThan(0.6);
  });

  it('sanitises a row alike in another run with another batch size: copies tell nothing new', async () => {
    const a = (await round('run-groups-a')).batches!;
    const [b] = (await round('run-groups-b', 4)).batches!;
    const d = config.nEmbd;
    let [same, compared] = [0, 0];
    for (let r = 0; r < ROWS.length; r++) {
      const [inA, rowA] = [a[Math.floor(r / 2)], r % 2];
      for (let p = 0; p < inA.seqLen && inA.mask[rowA * inA.seqLen + p]; p++, compared++) {
        const [x, y] = [
          b.hidden.subarray((r * b.seqLen + p) * d, (r * b.seqLen + p + 1) * d),
          inA.hidden.subarray((rowA * inA.seqLen + p) * d, (rowA * inA.seqLen + p + 1) * d),
        ];
        // The same sanitised tokens: equal but for onnxruntime's rounding in another batch shape (a replaced token moves a vector by ~0.1).
        expect(maxAbsDiff(x, y)).toBeLessThan(1e-5);
        if (x.every((v, k) => v === y[k])) same++;
      }
    }
    expect(compared).toBeGreaterThan(20);
    expect(same).toBeGreaterThan(0);
  });
});
