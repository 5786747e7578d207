/**
 * A schema's complaints as an operator reads them: one per problem, naming its field, what was given, and for a key
 * the schema does not know, the known key it most likely meant ("did you mean 'training'?") or the keys there are.
 */
import type { z } from '@hono/zod-openapi';

type Def = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; in?: z.ZodType; element?: z.ZodType; options?: z.ZodType[] };
const def = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The keys an object schema at `path` knows (through defaults, optionals, transforms, arrays and unions). */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const d = def(schema);
  const inner = d.innerType ?? d.in;
  if (inner) return knownKeys(inner, path);
  if (d.type === 'union') return [...new Set(d.options!.flatMap((o) => knownKeys(o, path)))];
  if (path.length === 0) return d.type === 'object' ? Object.keys(d.shape!) : [];
  const [head, ...rest] = path;
  if (d.type === 'array' && typeof head === 'number') return knownKeys(d.element!, rest);
  const next = d.type === 'object' ? d.shape![String(head)] : undefined;
  return next ? knownKeys(next, rest) : [];
}

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

/** The known key nearest `key`, if near enough to be a slip (a third of its length, at least 2 edits). */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const ranked = known.map((k) => ({ k, d: distance(key.toLowerCase(), k.toLowerCase()) })).sort((x, y) => x.d - y.d);
  const best = ranked[0];
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.k : undefined;
}

const fieldName = (path: readonly PropertyKey[]) =>
  path.reduce<string>((a, p) => (typeof p === 'number' ? `${a}[${p}]` : a ? `${a}.${String(p)}` : String(p)), '');

/** One line per problem, each naming its field: "field 'lora.rank': must be ..., got 0". */
export function describeIssues(error: z.ZodError, input: unknown, schema?: z.ZodType): string {
  return error.issues
    .flatMap((i) => {
      if (i.code === 'unrecognized_keys') {
        const known = schema ? knownKeys(schema, i.path) : [];
        return i.keys.map((key) => {
          const near = suggest(key, known);
          const hint = near ? `did you mean '${near}'?` : known.length ? `known keys here: ${known.join(', ')}` : '';
          return `field '${fieldName([...i.path, key])}': unknown key${hint ? `; ${hint}` : ''}`;
        });
      }
      const got = i.path.reduce<unknown>((v, p) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p as PropertyKey] : undefined), input);
      const shown = i.code === 'custom' || got === undefined ? '' : `, got ${JSON.stringify(got)}`;
      return [`field '${fieldName(i.path) || 'run'}': ${i.message}${shown}`];
    })
    .join('; ');
}
