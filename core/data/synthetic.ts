/**
 * A small generated sentiment task, for the demo and tests when no dataset is given: sentences of filler words with
 * a few words of one polarity (the label) and sometimes one of the other. Deterministic for a seed.
 */
import { Random } from '../random.ts';

const POSITIVE = ['great', 'wonderful', 'superb', 'delightful', 'brilliant', 'moving', 'charming', 'excellent', 'joyful', 'clever'];
const NEGATIVE = ['awful', 'dull', 'boring', 'terrible', 'clumsy', 'tedious', 'bland', 'mediocre', 'painful', 'lazy'];
const FILLER = [
  'the',
  'film',
  'story',
  'actors',
  'plot',
  'was',
  'and',
  'a',
  'with',
  'its',
  'scenes',
  'music',
  'ending',
  'director',
  'script',
  'this',
  'of',
  'in',
  'cast',
  'at',
  'times',
];

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

/** How hard the generated topic task is, and how its classes relate. */
export interface TopicTaskOptions {
  /** Topic words a sentence carries (at least 1). */
  signal: number;
  /** Chance that a sentence also carries a word of its paired class (0 and 1, 2 and 3, ...): the label structure. */
  confusion: number;
  /** Chance that a row's label is replaced by a uniformly drawn one (the ceiling is then below 100%). */
  labelNoise: number;
}

/** Each topic's words; topics 2k and 2k + 1 are related (two sports, two sciences). */
export const TOPIC_WORDS: readonly (readonly string[])[] = [
  ['goal', 'match', 'striker', 'league', 'coach', 'stadium', 'referee', 'penalty', 'season', 'keeper'],
  ['racket', 'serve', 'court', 'volley', 'umpire', 'rally', 'tiebreak', 'ace', 'baseline', 'lob'],
  ['orbit', 'telescope', 'planet', 'comet', 'galaxy', 'rocket', 'lunar', 'nebula', 'asteroid', 'satellite'],
  ['enzyme', 'protein', 'cell', 'gene', 'molecule', 'bacteria', 'membrane', 'tissue', 'virus', 'neuron'],
];
const NEUTRAL = [
  'the',
  'a',
  'of',
  'and',
  'to',
  'in',
  'was',
  'report',
  'new',
  'said',
  'on',
  'about',
  'after',
  'week',
  'people',
  'many',
  'first',
  'last',
  'with',
  'today',
  'group',
  'local',
];

/**
 * A generated 4-class topic task with controllable difficulty: neutral filler words and `signal` words of the row's
 * topic; topics come in related pairs (two sports, two sciences) whose words a sentence sometimes mixes. Labels '0'
 * to '3'. Deterministic for a seed.
 */
export function syntheticTopics(count: number, seed: number, { signal, confusion, labelNoise }: TopicTaskOptions): Array<{ text: string; label: string }> {
  if (!(signal >= 1)) throw new RangeError(`signal must be at least 1 topic word, got ${signal}`);
  const rng = new Random(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng.uniform() * xs.length)]!;
  return Array.from({ length: count }, () => {
    const topic = Math.floor(rng.uniform() * TOPIC_WORDS.length);
    const words = Array.from({ length: 8 + Math.floor(rng.uniform() * 8) }, () => pick(NEUTRAL));
    const insert = (w: string) => words.splice(Math.floor(rng.uniform() * (words.length + 1)), 0, w);
    for (let i = 0; i < signal; i++) insert(pick(TOPIC_WORDS[topic]!));
    if (rng.uniform() < confusion) insert(pick(TOPIC_WORDS[topic ^ 1]!));
    const label = rng.uniform() < labelNoise ? Math.floor(rng.uniform() * TOPIC_WORDS.length) : topic;
    return { text: words.join(' '), label: String(label) };
  });
}
