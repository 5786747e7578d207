/** Device shards as files the device worker accepts (PUT /shards/{name}?format=jsonl&labels=...). */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Example } from '../core/data/shard.ts';
import { writeFileAtomic } from '../gpu-server/model-folder/folder.ts';

/** One JSON-lines file per device, `device-{i}.jsonl`, with labels written as the task's label names. */
export async function writeShardFiles(dir: string, rows: readonly Example[], parts: readonly number[][], labels: readonly string[]): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const [d, part] of parts.entries()) {
    const file = join(dir, `device-${d}.jsonl`);
    const lines = part.map((i) => {
      const r = rows[i];
      return JSON.stringify(
        r.textPair === undefined ? { text: r.text, label: labels[r.label] } : { text: r.text, text_pair: r.textPair, label: labels[r.label] },
      );
    });
    await writeFileAtomic(file, lines.join('\n') + '\n');
    files.push(file);
  }
  return files;
}
