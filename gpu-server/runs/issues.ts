/**
 * A schema's complaints as an operator reads them: one per problem, naming its field, what was given, and for a key
 * the schema does not know, the known key it most likely meant ("did you mean 'training'?") or the keys there are.
 */
import type { z } from '@hono/zod-openapi';
import { knownHint } from '../../core/json/suggest.ts';

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

const fieldName = (path: readonly PropertyKey[]) =>
  path.reduce<string>((a, p) => (typeof p === 'number' ? `${a}[${p}]` : a ? `${a}.${String(p)}` : String(p)), '');

/** One line per problem, each naming its field: "field 'lora.rank': must be ..., got 0". */
export function describeIssues(error: z.ZodError, input: unknown, schema?: z.ZodType): string {
  return error.issues
    .flatMap((i) => {
      if (i.code === 'unrecognized_keys') {
        const known = schema ? knownKeys(schema, i.path) : [];
        return i.keys.map((key) => {
          const hint = knownHint(key, known);
          return `field '${fieldName([...i.path, key])}': unknown key${hint ? `; ${hint}` : ''}`;
        });
      }
      const got = i.path.reduce<unknown>((v, p) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p as PropertyKey] : undefined), input);
      const shown = i.code === 'custom' || got === undefined ? '' : `, got ${JSON.stringify(got)}`;
      return [`field '${fieldName(i.path) || 'run'}': ${i.message}${shown}`];
    })
    .join('; ');
}
