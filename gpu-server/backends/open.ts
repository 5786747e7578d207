/** The one place that picks a backend: onnxruntime when asked for (`blocks`), TensorFlow.js otherwise. */
import type { Model } from '../../core/model/family.ts';
import type { Backend } from './backend.ts';
import { OrtBackend } from './onnxruntime/backend.ts';
import type { OrtOptions } from './onnxruntime/types.ts';
import { TfjsBackend } from './tfjs/backend.ts';
import { serverNet, type ServerNet } from './tfjs/net.ts';

export interface BackendOptions {
  /** The lowest block the server holds on TensorFlow.js (blocks below it run on devices). */
  firstBlock: number;
  /** The blocks on onnxruntime, every one, over the checkpoint's arrays; TensorFlow.js then holds the heads only. */
  blocks?: OrtOptions;
}

/** A backend for the model's blocks and the TensorFlow.js net that holds the heads (and, on TensorFlow.js, the blocks). */
export function openBackend(
  model: Model,
  from: number,
  lora: { targets: string[]; rank: number; alpha: number; dropout: number },
  { firstBlock, blocks }: BackendOptions,
): { backend: Backend; heads: ServerNet } {
  if (!blocks) {
    const net = serverNet(model, { firstBlock });
    return { backend: new TfjsBackend(net), heads: net };
  }
  // The blocks live once, in native memory.
  const heads = serverNet(model, { firstBlock: model.config.nLayer });
  const { targets, rank, alpha, dropout } = lora;
  return { backend: new OrtBackend(model, from, { targets, rank, scale: alpha / rank, dropout: dropout > 0 }, blocks), heads };
}
