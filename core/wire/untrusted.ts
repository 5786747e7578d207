/**
 * Text that comes from a device (its error messages, names it reports) reaches the server's log, its API, the
 * dashboard and stored metrics. It is bounded and stripped of control and format characters once, where it enters,
 * so no device can forge log lines, move a terminal's cursor or fill storage with its words.
 */

/** The most characters of a device's text the server keeps. */
export const MAX_DEVICE_TEXT = 500;

// Control characters (newlines, ANSI escapes), format characters (bidi overrides), line/paragraph separators, and
// surrogates alone (a cut may split a pair).
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/gu;

/** A device's value as JSON; never a throw (a value nested past what JSON.stringify can print gives its type). */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}

/** A device's text made safe to log and show: unsafe characters as \u{..}, cut to `max` characters. */
export function untrustedText(value: unknown, max = MAX_DEVICE_TEXT): string {
  const text = typeof value === 'string' ? value : value === undefined ? '' : jsonText(value);
  const cut = text.length > max ? `${text.slice(0, max)}... (${text.length - max} more characters)` : text;
  return cut.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
