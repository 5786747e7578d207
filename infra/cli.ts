/** Shared by the command-line entry points (scripts, experiments, benchmarks): arguments with usage errors that say how to fix them. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export function cliArgs<T extends NonNullable<ParseArgsConfig['options']>>(usage: string, options: T) {
  if (process.argv.includes('--help')) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    fail(`${(e as Error).message}\n\n${usage}`);
  }
}

export function int(name: string, value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) fail(`--${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got '${value}'`);
  return n;
}

export function fail(message: string): never {
  console.error(`error: ${message}`);
  process.exit(2);
}

/** Runs a CLI's main, printing a clean one-line error instead of a stack trace for expected failures. */
export function run(main: () => Promise<void>): void {
  main().catch((e: Error) => fail(e.message));
}
