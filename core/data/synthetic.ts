/**
 * A small generated sentiment task, for the demo and tests when no dataset is given: sentences of filler words with
 * a few words of one polarity (the label) and sometimes one of the other. Deterministic for a seed.
 */
import { Random } from '../random.ts';

const POSITIVE = ['great', 'wonderful', 'superb', 'delightful', 'brilliant', 'moving', 'charming', 'excellent', 'joyful', 'clever'];
const NEGATIVE = ['awful', 'dull', 'boring', 'terrible', 'clumsy', 'tedious', 'bland', 'mediocre', 'painful', 'lazy'];
const FILLER = ['the', 'film', 'story', 'actors', 'plot', 'was', 'and', 'a', 'with', 'its', 'scenes', 'music', 'ending', 'director', 'script', 'this', 'of', 'in', 'cast', 'at', 'times'];

export interface SyntheticRow {
  text: string;
  label: '0' | '1';
}

export function syntheticSentiment(count: number, seed: number): SyntheticRow[] {
  const rng = new Random(seed);
  const pick = (words: string[]) => words[Math.floor(rng.uniform() * words.length)];
  return Array.from({ length: count }, () => {
    const label = rng.uniform() < 0.5 ? '0' : '1';
    const [own, other] = label === '1' ? [POSITIVE, NEGATIVE] : [NEGATIVE, POSITIVE];
    const words = Array.from({ length: 5 + Math.floor(rng.uniform() * 8) }, () => pick(FILLER));
    const insert = (w: string) => words.splice(Math.floor(rng.uniform() * (words.length + 1)), 0, w);
    for (let i = 0; i < 1 + Math.floor(rng.uniform() * 3); i++) insert(pick(own));
    if (rng.uniform() < 0.2) insert(pick(other));
    return { text: words.join(' '), label };
  });
}
