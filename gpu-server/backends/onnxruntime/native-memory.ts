/**
 * glibc's malloc settings for a process that runs onnxruntime's CPU provider. Its Gemm packs a weight that is fed as
 * an input (the block graphs take every block's weights as inputs, so one session serves all blocks) into a buffer
 * of the weight's size at every call; with glibc's defaults each such buffer is mapped fresh and handed back to the
 * kernel after the call, so every step pays tens of thousands of page faults: measured on GPT-2 small's server step
 * here, 1.7-1.9 s a step against 1.3 s with these settings. They take effect only when the process starts: the npm
 * scripts that train (start, server, bench:train, bench:pipeline) set them from package.json's config.
 */
import { readFileSync } from 'node:fs';

/** The GLIBC_TUNABLES value: buffers up to 32 MB from the heap, and the heap never trimmed. */
export const GLIBC_TUNABLES: string = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).config.glibcTunables;

/** A line for the server's log where onnxruntime's CPU provider runs without the settings; undefined where it does. */
export function nativeMemoryWarning(
  provider: 'cpu' | 'webgpu',
  env: Record<string, string | undefined> = process.env,
  platform: string = process.platform,
): string | undefined {
  if (provider !== 'cpu' || platform !== 'linux' || env.GLIBC_TUNABLES?.includes('malloc.trim_threshold')) return undefined;
  return `onnxruntime's CPU steps run about 25% slower without glibc's malloc settings: start the server with npm run server, or set GLIBC_TUNABLES=${GLIBC_TUNABLES}`;
}
