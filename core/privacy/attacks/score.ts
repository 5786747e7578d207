/** How an attack's guesses are scored: per token, against guessing, and per row. */

export interface AttackScore {
  /** Share of the real tokens guessed right. */
  recovery: number;
  /** Share guessed right by always guessing the attacker's most frequent public token: what recovery means nothing below. */
  majority: number;
  /** Share of rows with at least half of their tokens guessed right. */
  rowsHalf: number;
  /** Real tokens scored. */
  tokens: number;
}

/**
 * Scores guesses [rows, seq] against the real tokens on the mask's real positions, leaving out `skip` (start tokens,
 * which every row begins with and which say nothing of the text).
 */
export function scoreGuesses(
  guessed: ArrayLike<number>,
  actual: ArrayLike<number>,
  mask: ArrayLike<number>,
  rows: number,
  seq: number,
  majorityToken: number,
  skip: ReadonlySet<number> = new Set(),
): AttackScore {
  if (guessed.length !== rows * seq || actual.length !== rows * seq || mask.length !== rows * seq)
    throw new Error(`score: ${guessed.length} guesses, ${actual.length} tokens, ${mask.length} mask entries for [${rows}, ${seq}]`);
  let [hits, majority, tokens, half] = [0, 0, 0, 0];
  for (let r = 0; r < rows; r++) {
    let [rowHits, rowTokens] = [0, 0];
    for (let p = r * seq; p < (r + 1) * seq; p++) {
      if (!mask[p] || skip.has(actual[p])) continue;
      rowTokens++;
      if (guessed[p] === actual[p]) rowHits++;
      if (majorityToken === actual[p]) majority++;
    }
    hits += rowHits;
    tokens += rowTokens;
    if (rowTokens && rowHits * 2 >= rowTokens) half++;
  }
  return { recovery: tokens ? hits / tokens : 0, majority: tokens ? majority / tokens : 0, rowsHalf: rows ? half / rows : 0, tokens };
}

/** The most frequent of the attacker's public tokens, leaving out `skip`. */
export function mostFrequent(tokens: ArrayLike<number>, skip: ReadonlySet<number> = new Set()): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) if (!skip.has(tokens[i])) counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + 1);
  let [best, bestCount] = [-1, 0];
  for (const [t, c] of counts) if (c > bestCount) [best, bestCount] = [t, c];
  return best;
}
