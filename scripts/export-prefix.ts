/** Exports the device prefix (embeddings + blocks [0, cut)) of a model folder as ONNX. */
import { exportPrefix, type PrefixWeights } from '../core/onnx/prefix.ts';
import { tokenTable, tokenTableTensors } from '../core/onnx/embedding.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';
import { asGpt2 } from '../core/model/family.ts';
import { readModelFolder, writeFileAtomic } from '../gpu-server/model/folder.ts';
import { cliArgs, fail, int, run } from './cli.ts';

const USAGE = `usage: npm run export-prefix -- --model DIR --cut K --out FILE.onnx [--weights fp32|int8] [--token-table FILE.safetensors]
With --token-table the vocabulary table is written there instead of into the graph, and the graph takes inputs_embeds.`;

const args = cliArgs(USAGE, {
  model: { type: 'string' },
  cut: { type: 'string' },
  out: { type: 'string' },
  weights: { type: 'string', default: 'fp32' },
  'token-table': { type: 'string' },
});

run(async () => {
  if (!args.model || !args.out) fail(`--model and --out are required\n\n${USAGE}`);
  if (args.weights !== 'fp32' && args.weights !== 'int8') fail(`--weights must be fp32 or int8, got '${args.weights}'`);
  const weights = args.weights as PrefixWeights;
  const model = asGpt2(await readModelFolder(args.model), 'export-prefix');
  const cut = int('cut', args.cut);
  const tableFile = args['token-table'];
  const onnx = exportPrefix(model, { cut, weights, tokenEmbedding: tableFile ? 'input' : 'graph' });
  await writeFileAtomic(args.out, onnx);
  if (tableFile) await writeFileAtomic(tableFile, serializeSafetensors(tokenTableTensors(tokenTable(model, weights))));
  console.log(JSON.stringify({ wrote: args.out, bytes: onnx.byteLength, cut, weights, tokenTable: tableFile ?? null }));
});
