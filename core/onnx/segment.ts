/**
 * The model segment a device runs for a cut: the ONNX prefix, and for int8 weights its token table outside the graph
 * and its weights as ONNX external data beside a few-KB graph (what fits a Worker's memory: Llama-3.2-1B's first
 * block only so, bench:device). Deterministic, so a device's owner who exports it from the same base model
 * gets the same SHA-256 the server sends, and can approve exactly that graph.
 */
import { sha256Hex } from '../auth/signing.ts';
import type { Model } from '../model/family.ts';
import { serializeSafetensors } from '../tensors/safetensors.ts';
import { tokenTable, tokenTableTensors } from './embedding.ts';
import { exportPrefix, exportPrefixExternal, PREFIX_DATA_LOCATION, type PrefixWeights } from './prefix.ts';

export interface DeviceSegment {
  cut: number;
  onnx: Uint8Array;
  sha256: string;
  /** The token table (safetensors) of a prefix that takes inputs_embeds. */
  tokenTable?: { bytes: Uint8Array; sha256: string };
  /** The graph's weights as ONNX external data (location PREFIX_DATA_LOCATION), for int8 segments. */
  weights?: { bytes: Uint8Array; sha256: string };
}

export async function deviceSegment(model: Model, cut: number, weights: PrefixWeights): Promise<DeviceSegment> {
  if (weights !== 'int8') {
    const onnx = exportPrefix(model, { cut, weights });
    return { cut, onnx, sha256: await sha256Hex(onnx) };
  }
  const { onnx, data } = exportPrefixExternal(model, { cut, weights, tokenEmbedding: 'input' }, PREFIX_DATA_LOCATION);
  const table = serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8')));
  return {
    cut,
    onnx,
    sha256: await sha256Hex(onnx),
    tokenTable: { bytes: table, sha256: await sha256Hex(table) },
    weights: { bytes: data, sha256: await sha256Hex(data) },
  };
}
