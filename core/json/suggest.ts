/**
 * Names a reader may have slipped on: a key or setting nobody knows is refused naming the known one most likely
 * meant ("did you mean 'training'?") or, when none is near, the ones there are.
 */

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  return d[a.length]![b.length]!;
}

/** Names longer than this are nobody's slip: no suggestion is sought (its cost grows with the name's length). */
const MAX_NAME = 64;

/** A name as a message shows it: cut at MAX_NAME characters (a name may come from a peer). */
export const shownName = (name: string) => (name.length > MAX_NAME ? `${name.slice(0, MAX_NAME)}...` : name);

/** The known name nearest `name`, if near enough to be a slip (a third of its length, at least 2 edits). */
export function suggest(name: string, known: readonly string[]): string | undefined {
  if (name.length > MAX_NAME) return undefined;
  const ranked = known.map((k) => ({ k, d: distance(name.toLowerCase(), k.toLowerCase()) })).sort((x, y) => x.d - y.d);
  const best = ranked[0];
  return best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? best.k : undefined;
}

/** "did you mean 'rank'?", or "known keys here: a, b", or '' when nothing is known. */
export function knownHint(name: string, known: readonly string[], what = 'known keys here'): string {
  const near = suggest(name, known);
  return near ? `did you mean '${near}'?` : known.length ? `${what}: ${known.join(', ')}` : '';
}

/** Throws "`where`: unknown field 'x'; did you mean 'y'?" for the first key of `value` not in `known`. */
export function refuseUnknownKeys(value: Record<string, unknown>, known: readonly string[], where: string): void {
  const key = Object.keys(value).find((k) => !known.includes(k));
  if (key !== undefined) throw new Error(`${where}: unknown field '${shownName(key)}'; ${knownHint(key, known, 'fields')}`);
}
