/** Exports the device prefix (embeddings + blocks [0, cut)) of a model folder as ONNX. */
import { exportPrefix, exportPrefixExternal, type PrefixWeights } from '../core/onnx/prefix.ts';
import { tokenTable, tokenTableTensors } from '../core/onnx/embedding.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';
import { readModelFolder, writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import { basename, dirname, join } from 'node:path';
import { cliArgs, fail, int, run } from '../infra/cli.ts';

const USAGE = `usage: npm run export-prefix -- --model DIR --cut K --out FILE.onnx [--weights fp32|int8] [--token-table FILE.safetensors] [--external-data]
With --token-table the vocabulary table is written there instead of into the graph, and the graph takes inputs_embeds.
With --external-data the weights go to FILE.onnx.data beside a few-KB graph (ONNX external data; a session is given
both), which is what lets a block of Llama-3.2-1B's size fit a Worker's 128 MB. Any family: GPT-2 or Llama folders.`;

const args = cliArgs(USAGE, {
  model: { type: 'string' },
  cut: { type: 'string' },
  out: { type: 'string' },
  weights: { type: 'string', default: 'fp32' },
  'token-table': { type: 'string' },
  'external-data': { type: 'boolean' },
});

run(async () => {
  if (!args.model || !args.out) fail(`--model and --out are required\n\n${USAGE}`);
  if (args.weights !== 'fp32' && args.weights !== 'int8') fail(`--weights must be fp32 or int8, got '${args.weights}'`);
  const weights = args.weights as PrefixWeights;
  const model = await readModelFolder(args.model);
  const cut = int('cut', args.cut);
  const tableFile = args['token-table'];
  const options = { cut, weights, tokenEmbedding: tableFile ? 'input' : 'graph' } as const;
  let onnx: Uint8Array;
  if (args['external-data']) {
    const location = `${basename(args.out)}.data`;
    const external = exportPrefixExternal(model, options, location);
    onnx = external.onnx;
    await writeFileAtomic(join(dirname(args.out), location), external.data);
  } else onnx = exportPrefix(model, options);
  await writeFileAtomic(args.out, onnx);
  if (tableFile) await writeFileAtomic(tableFile, serializeSafetensors(tokenTableTensors(tokenTable(model, weights))));
  console.log(
    JSON.stringify({
      wrote: args.out,
      bytes: onnx.byteLength,
      cut,
      weights,
      tokenTable: tableFile ?? null,
      externalData: args['external-data'] ? `${args.out}.data` : null,
    }),
  );
});
