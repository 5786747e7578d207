/**
 * A model's shape as make-model's options give it (each family reads the ones it has and refuses the rest), and
 * the check both families share. Values are whole numbers already; a family fills in what is left out.
 */
export interface ShapeOptions {
  /** A published size by name (`gpt2-medium`, `llama-3.2-1b`); without it the model is tiny. */
  size?: string;
  layers?: number;
  embd?: number;
  heads?: number;
  kvHeads?: number;
  inner?: number;
  positions?: number;
  vocab?: number;
  labels?: number;
  seed?: number;
}

/** The published size `size` names, or an error listing the family's sizes. */
export function sizeOf<S extends Record<string, object>>(sizes: S, size: string): S[keyof S] {
  if (!Object.hasOwn(sizes, size)) throw new Error(`--size '${size}' is not one of ${Object.keys(sizes).join(', ')}`);
  return sizes[size as keyof S];
}
