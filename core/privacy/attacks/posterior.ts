/**
 * The defence-aware step against sanitisation: the attacks give back the sanitised tokens, and an attacker who knows
 * the mechanism (it is public: the owner's setting and groups are named in the manifest) turns each into the
 * original most likely to have produced it, argmax over x of prior(x) P(y | x), with the prior from its public
 * text's token counts (plus a half, so that a token it never saw can still be guessed).
 */
import { distribution, type TokenMechanism } from '../sanitise.ts';

/** The decoder for a mechanism, the attacker's public tokens, and the tokens the device may have held (`sources`). */
export function posteriorDecoder(mechanism: TokenMechanism, publicTokens: ArrayLike<number>, sources: Iterable<number>): (guesses: Int32Array) => Int32Array {
  const counts = new Map<number, number>();
  for (let i = 0; i < publicTokens.length; i++) counts.set(publicTokens[i], (counts.get(publicTokens[i]) ?? 0) + 1);
  const best = new Map<number, { token: number; score: number }>();
  for (const x of new Set(sources)) {
    const prior = (counts.get(x) ?? 0) + 0.5;
    for (const [y, p] of distribution(mechanism, x)) {
      const score = prior * p;
      const b = best.get(y);
      if (!b || score > b.score || (score === b.score && x < b.token)) best.set(y, { token: x, score });
    }
  }
  return (guesses) => guesses.map((y) => best.get(y)?.token ?? y);
}
