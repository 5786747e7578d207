/**
 * The adaptive attacker against randomised defences: it collects every copy of the same rows it can (rounds,
 * retries, new runs with other batch sizes) and averages them, which cancels noise drawn afresh for each copy; the
 * average then goes to the strongest attack. Against the device's derived noise every copy is bit-equal and the
 * average is one upload.
 */
import type { Activations } from './activations.ts';

export function averageCopies(copies: readonly Activations[]): Activations {
  if (!copies.length) throw new Error('adaptive attack: no copies');
  const [first] = copies;
  const hidden = new Float32Array(first.hidden.length);
  for (const c of copies) {
    if (c.hidden.length !== hidden.length) throw new Error('adaptive attack: copies of other shapes (align rows first)');
    for (let i = 0; i < hidden.length; i++) hidden[i] += c.hidden[i] / copies.length;
  }
  return { ...first, hidden };
}
