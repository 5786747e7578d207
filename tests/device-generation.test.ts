/**
 * A generation round of a Llama on real parts: a device worker under workerd with a GSM8K shard, s3rver, a tiny
 * Llama's int8 prefix with its token table outside the graph and its weights as ONNX external data, and Llama 3's tokenizer.json fetched by the device.
 * The batches must carry the activations onnxruntime-web (the device's runtime, whose WASM kernels compute the same on
 * any CPU) computes on the same tokens, and exactly the completion's
 * token ids as labels; the round must be refused until the owner allows generation.
 */
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../core/auth/signing.ts';
import { encodeGenerationBatch, gsm8kExample, IGNORE_INDEX } from '../core/data/generation.ts';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { lookupTokens, tokenTable } from '../core/onnx/embedding.ts';
import { PREFIX_DATA_LOCATION, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { keys } from '../core/storage/keys.ts';
import type { S3Store } from '../core/storage/s3.ts';
import { HfTokenizer } from '../core/tokenizer/hf.ts';
import { llama3TokenizerFiles } from '../core/tokenizer/llama3.ts';
import { decodeActivationBatch } from '../core/wire/activations.ts';
import type { DeviceClient } from '../core/wire/device-client.ts';
import { buildRoundRequest } from '../gpu-server/rounds/request.ts';
import type { RunningDevice } from '../infra/local/device.ts';
import { startOneDevice, type OneDevice } from './support/one-device.ts';
import { maxAbsDiff, paddingZeroed } from './fixtures.ts';

// One thread, as a Worker runs it.
ort.env.wasm.numThreads = 1;
import { LEVELS } from '../core/privacy/defence.ts';

const SECRET = 'round-secret';
const CUT = 2;
const model = initLlama(llamaConfig({ nLayer: 3, nEmbd: 32, nHead: 4, nKvHead: 2, headDim: 8, nInner: 48, nPositions: 128 }), { seed: 6, normNoise: 0.1 });
const PROBLEMS = [
  {
    question: 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?',
    answer: 'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72',
  },
  {
    question: 'Weng earns $12 an hour for babysitting. Yesterday, she did 50 minutes of babysitting. How much did she earn?',
    answer: 'Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nShe earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10',
  },
  { question: 'What is 7 times 6? <|eot_id|>', answer: '7 x 6 = 42\n#### 42' },
];
const files = llama3TokenizerFiles();
const tokenizerBytes = new TextEncoder().encode(JSON.stringify(files.json));
const tokenizer = new HfTokenizer(files.json, {}, { bos: 128000, eos: 128001, separator: 128001, pad: 128001 });

let world: OneDevice;
let store: S3Store;
let device: RunningDevice;
let client: DeviceClient;

beforeAll(async () => {
  const body = PROBLEMS.map((p) => JSON.stringify(p)).join('\n');
  world = await startOneDevice('dev-g', SECRET, { path: 'gsm8k?task=generation', body }, { vars: { PIECE_BATCHES: '1' } });
  ({ store, device, client } = world);
});

afterAll(() => world?.stop());

describe('a Llama generation round on workerd and S3', () => {
  it('is refused until the owner allows generation, then carries the prefix activations and exactly the completion tokens as labels', async () => {
    const segment = await deviceSegment(model, CUT, 'int8');
    const tokenizerSha = await sha256Hex(tokenizerBytes);
    await store.put(keys.devicePrefix(segment.sha256, CUT), segment.onnx);
    await store.put(keys.tokenTable(segment.tokenTable!.sha256), segment.tokenTable!.bytes);
    await store.put(keys.segmentWeights(segment.weights!.sha256), segment.weights!.bytes);
    await store.put(keys.tokenizer(tokenizerSha), tokenizerBytes);
    // Defence off: the test compares the uploads with the prefix's own output (tests/device-round.test.ts checks the defence).
    const approval = {
      sha256: segment.sha256,
      model: 'tiny-llama',
      cut: CUT,
      tokenTable: segment.tokenTable!.sha256,
      weights: segment.weights!.sha256,
      tokenizer: tokenizerSha,
      specialTokens: { bos: 128000, eos: 128001 },
      defence: LEVELS.off,
    };
    const request = (runId: string) =>
      buildRoundRequest(store, {
        runId,
        round: 0,
        deviceId: 'dev-g',
        modelSha256: segment.sha256,
        tokenTableSha256: segment.tokenTable!.sha256,
        weightsSha256: segment.weights!.sha256,
        tokenizer: { sha256: tokenizerSha, bos: 128000, eos: 128001 },
        task: 'generation',
        cut: CUT,
        rows: PROBLEMS.length,
        batchSize: 2,
        seqLen: 96,
        dtype: 'fp32',
        labels: [],
        padTokenId: 128001,
      });
    await device.approve(approval);
    await expect(client.startRound(await request('run-refused'))).rejects.toThrow(/the owner has not allowed that/);

    await device.approve({ ...approval, generation: true, seqLen: 96 });
    const r = await request('run-gen');
    await client.startRound(r);
    const status = await client.waitForRound('run-gen', 0);
    expect(status).toMatchObject({ state: 'complete', batchesDone: 2, batchesTotal: 2 });
    const session = await ort.InferenceSession.create(segment.onnx, { externalData: [{ path: PREFIX_DATA_LOCATION, data: segment.weights!.bytes }] });
    const table = tokenTable(model, 'int8');
    for (let b = 0; b < 2; b++) {
      const batch = decodeActivationBatch((await store.get(keys.activationBatch('run-gen', 'dev-g', 0, b)))!);
      const rows = PROBLEMS.slice(b * 2, b * 2 + 2).map((p) => gsm8kExample(p.question, p.answer));
      const want = encodeGenerationBatch(tokenizer, rows, 96, 128001);
      expect(batch.seqLen).toBe(want.seqLen);
      expect(Array.from(batch.labels)).toEqual(Array.from(want.labels));
      // The labels are the completion's tokens and the end token; the question never leaves as ids.
      const labelled = Array.from(batch.labels).filter((l) => l !== IGNORE_INDEX);
      expect(labelled).toEqual(rows.flatMap((row) => [...tokenizer.encode(row.completion), 128001]));
      const out = await session.run({
        inputs_embeds: new ort.Tensor('float32', lookupTokens(table, want.ids), [want.rows, want.seqLen, 32]),
        attention_mask: new ort.Tensor('int64', BigInt64Array.from(want.attentionMask, BigInt), [want.rows, want.seqLen]),
      });
      expect(maxAbsDiff(batch.hidden, paddingZeroed(out[PREFIX_OUTPUT]!.data as Float32Array, want.attentionMask, 32))).toBeLessThan(1e-5);
    }
  });
});
