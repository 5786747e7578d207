/**
 * The module aliases of the device's bundle (wrangler.toml, `[alias]`), applied to this Node process, so that what
 * it imports of the device's code builds the heap the Worker's bundle builds. Exports both sides of Node's module
 * hooks: registerWorkerAliases() on the main thread, initialize() and resolve() on the hooks thread.
 */
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parse } from 'smol-toml';

let aliases: Record<string, string> = {};

export function registerWorkerAliases(config = 'wrangler.toml'): Record<string, string> {
  const table = (parse(readFileSync(config, 'utf8')).alias ?? {}) as Record<string, string>;
  const data = Object.fromEntries(Object.entries(table).map(([name, path]) => [name, pathToFileURL(path).href]));
  register(import.meta.url, { data });
  return table;
}

export function initialize(data: Record<string, string>): void {
  aliases = data;
}

type Next = (specifier: string, context: unknown) => Promise<{ url: string }>;
export function resolve(specifier: string, context: unknown, next: Next): Promise<{ url: string }> {
  // Resolved on through the chain, so that tsx's hooks load a TypeScript alias.
  return next(aliases[specifier] ?? specifier, context);
}
