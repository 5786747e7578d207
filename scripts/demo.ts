/**
 * npm start — the split on one batch, locally: a GPT-2 in the Hugging Face layout is cut after block 2; the device
 * prefix runs as int8 ONNX on onnxruntime-web (the device worker's runtime), the server suffix and classification
 * head run on TensorFlow.js, and the result is checked against the unsplit model. Real SST-2 sentences.
 * (The whole system, device workers + storage + training server, builds on this: see the README's roadmap.)
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-web';
import { gpt2Config } from '../core/model/config.ts';
import { initClassificationHead, initModel } from '../core/model/init.ts';
import { SCORE } from '../core/model/weights.ts';
import { flopsPerToken } from '../core/flops/flops.ts';
import { lookupTokens, readTokenRows, tokenTable, tokenTableTensors } from '../core/onnx/embedding.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { readModelFolder, writeModelFolder } from '../gpu-server/model/folder.ts';
import { TfGPT2 } from '../gpu-server/model/gpt2.ts';
import { initBackend } from '../gpu-server/tf/backend.ts';

const MODEL_DIR = process.env.SPLITFROZEN_MODEL ?? '.local/models/demo';
const SST2 = new URL('../../shared/datasets/glue/SST-2/dev.tsv', import.meta.url);
const CUT = 2;
const BATCH = 8;
const step = (n: number, msg: string) => console.log(`[${n}/5] ${msg}`);

step(1, `model: ${MODEL_DIR}`);
if (!existsSync(`${MODEL_DIR}/config.json`)) {
  console.log('      (no model there yet: writing a random tiny GPT-2 in the Hugging Face layout; set SPLITFROZEN_MODEL to use a downloaded GPT-2)');
  await writeModelFolder(MODEL_DIR, initModel(gpt2Config({ nLayer: 4, nEmbd: 64, nHead: 4, nPositions: 128 }), { seed: 0 }));
}
const model = await readModelFolder(MODEL_DIR);
if (!model.params.has(SCORE)) {
  console.log('      (the checkpoint has no classification head: adding a random one)');
  model.params.set(SCORE, initClassificationHead(model.config, 1));
}
const c = model.config;
console.log(`      ${c.nLayer} blocks, n_embd ${c.nEmbd}, ${c.nHead} heads, vocabulary ${c.vocabSize}; cut after block ${CUT}`);

step(2, 'data: SST-2 dev sentences, GPT-2 tokenizer');
const lines = existsSync(SST2) ? (await readFile(SST2, 'utf8')).trimEnd().split('\n').slice(1, 1 + BATCH) : [];
if (lines.length === 0) throw new Error(`${SST2.pathname} not found: the demo reads SST-2 from ../shared/datasets`);
const rows = lines.map((l) => l.split('\t')).map(([sentence, label]) => ({ sentence: sentence.trim(), label: Number(label) }));
const encoded = new GPT2Tokenizer().encodeBatch(rows.map((r) => r.sentence), { maxLength: Math.min(64, c.nPositions), padTokenId: c.padTokenId });
const { batch: B, seq: T } = encoded;
console.log(`      batch ${B} x ${T} tokens (right-padded, attention mask marks real tokens)`);

step(3, `device: embeddings + blocks [0, ${CUT}) as int8 ONNX on onnxruntime-web, token rows read by byte range`);
ort.env.wasm.numThreads = 1;
const onnx = exportPrefix(model, { cut: CUT, weights: 'int8', tokenEmbedding: 'input' });
const tableFile = serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8')));
const rowsOnly = await readTokenRows(async (offset, length) => tableFile.slice(offset, offset + length), tableFile.length, encoded.ids);
const session = await ort.InferenceSession.create(onnx);
const started = performance.now();
const out = await session.run({
  inputs_embeds: new ort.Tensor('float32', lookupTokens(rowsOnly, encoded.ids), [B, T, c.nEmbd]),
  attention_mask: new ort.Tensor('int64', BigInt64Array.from(encoded.attentionMask, BigInt), [B, T]),
});
const deviceMs = performance.now() - started;
const hidden = out[PREFIX_OUTPUT].data as Float32Array;
console.log(`      ONNX ${(onnx.byteLength / 2 ** 20).toFixed(1)} MB, ${rowsOnly.index!.size} of ${c.vocabSize} token rows held; forward ${deviceMs.toFixed(0)} ms -> hidden states [${B}, ${T}, ${c.nEmbd}]`);

step(4, `server: blocks [${CUT}, ${c.nLayer}) + classification head on TensorFlow.js`);
const backend = await initBackend('auto');
console.log(`      backend ${backend.backend}${backend.skipped.map((s) => `; skipped ${s.backend}: ${s.reason}`).join('')}`);
const mask = tf.tensor2d(encoded.attentionMask, [B, T], 'int32');
const server = new TfGPT2(model, { firstBlock: CUT });
const splitLogits = server.classifyFromCut(tf.tensor3d(hidden, [B, T, c.nEmbd]), mask, CUT).arraySync();
const full = new TfGPT2(model);
const fullLogits = full.classify(full.hidden(tf.tensor2d(encoded.ids, [B, T], 'int32'), mask), mask).arraySync();

step(5, 'check: split (int8 device) against the unsplit fp32 model');
const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));
console.log('\n| sentence | label | split prediction | unsplit prediction | max logit diff |');
console.log('|---|---|---|---|---|');
let maxDiff = 0;
rows.forEach((r, b) => {
  const diff = Math.max(...splitLogits[b].map((v, i) => Math.abs(v - fullLogits[b][i])));
  maxDiff = Math.max(maxDiff, diff);
  const s = r.sentence.length > 48 ? `${r.sentence.slice(0, 45)}...` : r.sentence;
  console.log(`| ${s} | ${r.label} | ${argmax(splitLogits[b])} | ${argmax(fullLogits[b])} | ${diff.toExponential(1)} |`);
});
const flops = flopsPerToken({ config: c, seqLen: T, cut: CUT, lora: { rank: 8, targets: ['attn.c_attn'], from: CUT } });
console.log(`
Predictions come from untrained weights; what matters here is that the split agrees with the unsplit model
(largest logit difference ${maxDiff.toExponential(1)}, from int8 device weights).
Per token, with LoRA r=8 on c_attn above the cut: device forward ${(flops.device.forward / 1e6).toFixed(2)} MFLOP and no backward;
server forward ${(flops.server.forward / 1e6).toFixed(2)} MFLOP, backward ${(flops.server.backward / 1e6).toFixed(2)} MFLOP.`);
