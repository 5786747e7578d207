/** Cross-entropy and accuracy of logits, in plain TypeScript (classification heads, and LM logits in chunks). */

export interface EvalResult {
  loss: number;
  accuracy: number;
  predictions: Int32Array;
}

/** Mean cross-entropy (a stable log-sum-exp) and accuracy of logits [rows, classes] against labels. */
export function scoreLogits(logits: Float32Array, labels: ArrayLike<number>, classes: number): EvalResult {
  const rows = labels.length;
  const predictions = new Int32Array(rows);
  let loss = 0;
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    // A loop, not Math.max(...row): a vocabulary's 128,256 arguments overflow the call stack.
    let best = 0;
    for (let i = 1; i < classes; i++) if (row[i]! > row[best]!) best = i;
    let sum = 0;
    for (const x of row) sum += Math.exp(x - row[best]!);
    loss += Math.log(sum) + row[best]! - row[labels[r]!]!;
    predictions[r] = best;
    if (best === labels[r]) correct++;
  }
  return { loss: loss / rows, accuracy: correct / rows, predictions };
}
