/**
 * GSM8K scored as lm-evaluation-harness's `gsm8k` task scores it (its gsm8k.yaml): generation until any of its stop
 * sequences, then two filters over the response, each compared with the reference answer by exact match after its
 * `regexes_to_ignore` and lower-casing:
 * - strict-match: the number after "#### " (the first such);
 * - flexible-extract: the last number-like run in the response.
 * References are also read as OpenAI's grade-school-math code reads them (`extract_answer`), for people comparing with
 * the paper's numbers.
 */

/** The task's `until`: generation stops at the first of these in the text. */
export const GSM8K_UNTIL = ['Question:', '</s>', '<|im_end|>'] as const;

/** What a filter gives when the response has no match (the harness's fallback). */
export const INVALID = '[invalid]';

/** The response cut at the first stop sequence, as the harness cuts a generation. */
export function untilStop(text: string, until: readonly string[] = GSM8K_UNTIL): string {
  const at = Math.min(...until.map((s) => text.indexOf(s)).filter((i) => i >= 0));
  return Number.isFinite(at) ? text.slice(0, at) : text;
}

/** The harness's RegexFilter: `findall`, the selected match, the first non-empty group of it, stripped. */
function regexFilter(response: string, pattern: RegExp, select: number): string {
  const matches = [...response.matchAll(pattern)];
  if (matches.length === 0) return INVALID;
  const m = matches.at(select)!;
  // findall gives the one group when there is one, else the tuple of groups.
  const groups = m.length > 2 ? m.slice(1).filter((g) => g) : [m[1] ?? m[0]];
  return groups.length === 0 ? INVALID : groups[0]!.trim();
}

/** strict-match: regex `#### (\-?[0-9\.\,]+)`, the first match. */
export function strictMatch(response: string): string {
  return regexFilter(response, /#### (-?[0-9.,]+)/g, 0);
}

/** flexible-extract: regex `(-?[$0-9.,]{2,})|(-?[0-9]+)`, the last match. */
export function flexibleExtract(response: string): string {
  return regexFilter(response, /(-?[$0-9.,]{2,})|(-?[0-9]+)/g, -1);
}

/** The metric's normalisation: regexes_to_ignore (",", "\$", "(?s).*#### ", "\.$") removed in turn, then lower case. */
function normalised(s: string): string {
  return s
    .replace(/,/g, '')
    .replace(/\$/g, '')
    .replace(/[\s\S]*#### /g, '')
    .replace(/\.$/g, '')
    .toLowerCase();
}

/** exact_match of a filtered response against the reference answer (its whole text, "... #### 72"). */
export function exactMatch(filtered: string, reference: string): boolean {
  return normalised(filtered) === normalised(reference);
}

/** OpenAI's grade-school-math `extract_answer`: the number after "#### ", commas removed, or undefined. */
export function openaiAnswer(answer: string): string | undefined {
  const m = /#### (-?[0-9.,]+)/.exec(answer);
  return m ? m[1]!.trim().replace(/,/g, '') : undefined;
}
