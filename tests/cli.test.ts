import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { deviceSecret } from '../core/auth/signing.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { asGpt2 } from '../core/model/family.ts';
import { readModelFolder, readTokenizer } from '../gpu-server/model-folder/folder.ts';
import { referenceHidden } from '../core/model/gpt2/reference.ts';
import { llamaReferenceHidden } from '../core/model/llama/reference.ts';
import type { LlamaModel } from '../core/model/llama/weights.ts';
import { maxAbsDiff } from './fixtures.ts';

const exec = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'splitfrozen-cli-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

function cli(script: string, ...args: string[]) {
  return exec(process.execPath, ['--import', 'tsx', join(root, 'scripts', script), ...args], { cwd: root });
}

const SMALL = ['--layers', '2', '--embd', '16', '--heads', '2', '--vocab', '300', '--positions', '16'];

describe('command-line tools', () => {
  it('make-model writes the Hugging Face layout, deterministically for a seed', async () => {
    await cli('make-model.ts', '--out', join(dir, 'a'), '--seed', '5', ...SMALL);
    await cli('make-model.ts', '--out', join(dir, 'b'), '--seed', '5', ...SMALL);
    await cli('make-model.ts', '--out', join(dir, 'c'), '--seed', '6', ...SMALL);
    const bytes = (d: string) => readFile(join(dir, d, 'model.safetensors'));
    expect((await bytes('a')).equals(await bytes('b'))).toBe(true);
    expect((await bytes('a')).equals(await bytes('c'))).toBe(false);
    const config = JSON.parse(await readFile(join(dir, 'a', 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'gpt2', n_layer: 2, n_embd: 16, n_head: 2, vocab_size: 300, n_positions: 16 });
    const model = asGpt2(await readModelFolder(join(dir, 'a')), 'the test');
    expect(model.params.get('h.1.attn.c_attn.weight')!.length).toBe(16 * 48);
  });

  it('make-model --arch llama writes a Llama folder with its tokenizer that the loaders read back', async () => {
    await cli(
      'make-model.ts',
      '--arch',
      'llama',
      '--out',
      join(dir, 'l'),
      '--layers',
      '2',
      '--embd',
      '32',
      '--heads',
      '4',
      '--kv-heads',
      '2',
      '--inner',
      '48',
      '--dtype',
      'bf16',
    );
    const config = JSON.parse(await readFile(join(dir, 'l', 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      num_hidden_layers: 2,
      hidden_size: 32,
      num_key_value_heads: 2,
      vocab_size: 128256,
      tie_word_embeddings: true,
    });
    const model = await readModelFolder(join(dir, 'l'));
    expect(model.params.get('layers.1.self_attn.k_proj.weight')!.length).toBe(2 * 8 * 32);
    const tokenizer = await readTokenizer(join(dir, 'l'), model.config);
    expect(tokenizer.encodeRow('Janet has 3 apples.', 32).ids).toEqual([128000, 18820, 295, 706, 220, 18, 41776, 13]); // llama3-tokenizer-js's ids;
    await expect(cli('make-model.ts', '--arch', 'llama', '--out', join(dir, 'x'), '--heads', '4', '--kv-heads', '3')).rejects.toMatchObject({
      stderr: expect.stringContaining('--heads 4 must be a multiple of --kv-heads 3'),
    });
    // Its prefix, weights as external data beside the graph, equals the float64 reference of the folder.
    await cli('export-prefix.ts', '--model', join(dir, 'l'), '--cut', '2', '--out', join(dir, 'l.onnx'), '--external-data');
    const session = await ort.InferenceSession.create(join(dir, 'l.onnx'), {
      externalData: [{ path: 'l.onnx.data', data: await readFile(join(dir, 'l.onnx.data')) }],
    });
    const ids = [128000, 18820, 295, 706];
    const out = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, 4]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(4).fill(1n), [1, 4]),
    });
    expect(maxAbsDiff(out.hidden_states!.data as Float32Array, llamaReferenceHidden(model as LlamaModel, ids, [1, 1, 1, 1], 1, 4, 2))).toBeLessThan(1e-4);
  });

  it('export-prefix writes an ONNX prefix that equals the reference forward of the folder it read', async () => {
    await cli('make-model.ts', '--out', join(dir, 'm'), '--seed', '2', ...SMALL);
    await cli('export-prefix.ts', '--model', join(dir, 'm'), '--cut', '1', '--out', join(dir, 'p.onnx'));
    const model = asGpt2(await readModelFolder(join(dir, 'm')), 'the test');
    const session = await ort.InferenceSession.create(join(dir, 'p.onnx'));
    const ids = [5, 17, 299, 0];
    const mask = [1, 1, 1, 0];
    const out = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, 4]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask, BigInt), [1, 4]),
    });
    expect(maxAbsDiff(out.hidden_states.data as Float32Array, referenceHidden(model, ids, mask, 1, 4, 1))).toBeLessThan(1e-5);
  });

  it("gives operators a device's own secret and owners the hashes of the segment they approve", async () => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'splitfrozen.ts'), 'device-secret', '--device', 'dev-9'], {
      cwd: root,
      env: { ...process.env, SPLITFROZEN_ROUND_SECRET: 'master' },
    });
    expect(stdout.trim()).toBe(await deviceSecret('master', 'dev-9'));
    await cli('make-model.ts', '--out', join(dir, 's'), '--seed', '3', ...SMALL);
    const printed = JSON.parse((await cli('splitfrozen.ts', 'segment', '--model', join(dir, 's'), '--cut', '1', '--weights', 'int8')).stdout);
    const segment = await deviceSegment(asGpt2(await readModelFolder(join(dir, 's')), 'the test'), 1, 'int8');
    expect(printed).toEqual({ sha256: segment.sha256, model: 's', cut: 1, tokenTable: segment.tokenTable!.sha256, weights: segment.weights!.sha256 });
    await expect(cli('splitfrozen.ts', 'segment', '--model', join(dir, 's'), '--cut', '2')).rejects.toMatchObject({
      stderr: expect.stringContaining('--cut 2: the model has 2 blocks'),
    });
  });

  it('the operator CLI has help for each command, with its exit codes, and refuses an unknown command with exit 2', async () => {
    const all = (await cli('splitfrozen.ts', '--help')).stdout;
    for (const command of ['runs', 'create', 'trigger', 'cancel', 'delete', 'watch', 'metrics', 'devices', 'pull', 'device-secret', 'segment'])
      expect(all).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect(all).toContain('exit codes: 0 done; 1 the server refused or failed');
    const pull = (await cli('splitfrozen.ts', 'pull', '--help')).stdout;
    expect(pull).toMatch(/^usage: npm run cli -- pull --run ID --out DIR \[--round N\|latest\] \[--merged --model DIR\]\n/);
    expect(pull).toContain('exit codes:');
    expect(pull).not.toContain('device-secret');
    await expect(cli('splitfrozen.ts', 'pul')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("unknown command 'pul'") });
  });

  it('bad arguments fail with a message that says what to fix', async () => {
    await expect(cli('make-model.ts', '--out', join(dir, 'x'), '--embd', '10', '--heads', '3')).rejects.toMatchObject({
      stderr: expect.stringContaining('--embd 10 must be divisible by --heads 3'),
    });
    await expect(cli('export-prefix.ts', '--model', join(dir, 'none'), '--cut', '1', '--out', join(dir, 'y.onnx'))).rejects.toMatchObject({
      stderr: expect.stringContaining('none/config.json: not found'),
    });
    await expect(cli('export-prefix.ts', '--model', join(dir, 'a'), '--cut', '9', '--out', join(dir, 'y.onnx'))).rejects.toMatchObject({
      stderr: expect.stringContaining('cut 9 is out of range'),
    });
  });
});
