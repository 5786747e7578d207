/**
 * Did any shard text reach storage? Every stored object is searched for every 8-token window of every shard row
 * (as UTF-8), leaving out windows that also occur in text the operator gave the server itself (its evaluation rows).
 */
import type { ObjectStore } from '../../core/storage/store.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';

export interface ScanResult {
  objects: number;
  bytes: number;
  windows: number;
  /** "key: window" for each window found. */
  found: string[];
}

export async function scanForText(store: ObjectStore, shardTexts: readonly string[], operatorTexts: readonly string[], size = 8): Promise<ScanResult> {
  const tokenizer = new GPT2Tokenizer();
  const known = operatorTexts.join('\n');
  const windows = new Set<string>();
  for (const text of shardTexts) {
    const ids = tokenizer.encode(text);
    for (let i = 0; i + size <= ids.length; i++) {
      const w = tokenizer.decode(ids.slice(i, i + size));
      if (!known.includes(w)) windows.add(w);
    }
  }
  const needles = [...windows].map((w) => [w, Buffer.from(w, 'utf8')] as const);
  const found: string[] = [];
  let objects = 0;
  let bytes = 0;
  for await (const o of store.list('')) {
    const body = Buffer.from((await store.get(o.key)) ?? new Uint8Array(0));
    objects++;
    bytes += body.length;
    for (const [w, needle] of needles) if (body.indexOf(needle) >= 0) found.push(`${o.key}: ${w}`);
  }
  return { objects, bytes, windows: windows.size, found };
}
