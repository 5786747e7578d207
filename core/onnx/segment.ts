/**
 * The model segment a device runs for a cut: the ONNX prefix, and for int8 weights its token table outside the
 * graph (what fits a Worker's memory). Deterministic, so a device's owner who exports it from the same base model
 * gets the same SHA-256 the server sends, and can approve exactly that graph.
 */
import { sha256Hex } from '../auth/signing.ts';
import type { Model } from '../model/family.ts';
import { serializeSafetensors } from '../tensors/safetensors.ts';
import { tokenTable, tokenTableTensors } from './embedding.ts';
import { exportPrefix, type PrefixWeights } from './prefix.ts';

export interface DeviceSegment {
  cut: number;
  onnx: Uint8Array;
  sha256: string;
  /** The token table (safetensors) of a prefix that takes inputs_embeds. */
  tokenTable?: { bytes: Uint8Array; sha256: string };
}

export async function deviceSegment(model: Model, cut: number, weights: PrefixWeights): Promise<DeviceSegment> {
  const onnx = exportPrefix(model, { cut, weights, tokenEmbedding: weights === 'int8' ? 'input' : 'graph' });
  if (weights !== 'int8') return { cut, onnx, sha256: await sha256Hex(onnx) };
  const table = serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8')));
  return { cut, onnx, sha256: await sha256Hex(onnx), tokenTable: { bytes: table, sha256: await sha256Hex(table) } };
}
