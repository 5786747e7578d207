/**
 * JSON from a file or a line that someone else chose: parsed, or refused naming where it stops being JSON (line and
 * column) without quoting it. JSON.parse's own messages quote the text around the error, and the text may be a file
 * the reader of the message has no business seeing.
 */
import { parse as scan, printParseErrorCode, type ParseError } from 'jsonc-parser';

/** Where JSON.parse's refusal lies: 1-based line and column, and what was expected there. */
export function jsonErrorAt(text: string): { line: number; column: number; problem: string } {
  const errors: ParseError[] = [];
  scan(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  const offset = first?.offset ?? 0;
  let line = 1;
  for (let n = text.indexOf('\n'); n !== -1 && n < offset; n = text.indexOf('\n', n + 1)) line++;
  return { line, column: offset - text.lastIndexOf('\n', offset - 1), problem: first ? printParseErrorCode(first.error) : 'InvalidSymbol' };
}

/** JSON.parse, or an Error "`what`: not valid JSON at line L, column C (Problem)" that quotes nothing. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const { line, column, problem } = jsonErrorAt(text);
    throw new Error(`${what}: not valid JSON at line ${line}, column ${column} (${problem})`);
  }
}
