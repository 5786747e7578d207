import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { lookupTokens, tokenTable, tokenTableTensors } from '../../../core/onnx/embedding.ts';
import { serializeSafetensors } from '../../../core/tensors/safetensors.ts';
import { tinyModel, TINY } from '../../../tests/fixtures.ts';
import { readTable, sha256Digest, shardRows } from './table-stream.ts';

const model = tinyModel();
const d = TINY.nEmbd;
const shape = { nEmbd: d, dtype: 'I8' as const };
const approved = serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8')));

/** `bytes` served in chunks of 100, counting what the reader pulled: what storage sees of the device's reading. */
function served(bytes: Uint8Array) {
  const seen = { bytes: 0, pulls: 0 };
  let at = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (at >= bytes.byteLength) return controller.close();
        const chunk = bytes.slice(at, at + 100);
        at += chunk.byteLength;
        Object.assign(seen, { bytes: seen.bytes + chunk.byteLength, pulls: seen.pulls + 1 });
        controller.enqueue(chunk);
      },
    },
    { highWaterMark: 0 },
  );
  return { body, seen };
}

/** A table of `vocab` int8 rows of the segment's width, every row filled with its id (mod 128). */
function forged(vocab: number): Uint8Array {
  return serializeSafetensors({
    'wte.weight_int8': { dtype: 'I8', shape: [vocab, d], data: Int8Array.from({ length: vocab * d }, (_, i) => Math.floor(i / d) % 128) },
    'wte.weight_scale': { dtype: 'F32', shape: [vocab], data: new Float32Array(vocab).fill(1) },
  });
}

describe('a token table, read as a device reads it', () => {
  it('gives the rows of the shard’s ids from the approved table, with its digest', async () => {
    const { body, seen } = served(approved);
    const got = await readTable(body, approved.byteLength, [5, 3, 90, 5], shape, sha256Digest());
    expect(got.sha256).toBe(bytesToHex(sha256(approved)));
    if (!('rows' in got)) throw new Error(got.problem);
    expect(lookupTokens(got.rows, [5, 3, 90])).toEqual(lookupTokens(tokenTable(model, 'int8'), [5, 3, 90]));
    expect(seen.bytes).toBe(approved.byteLength);
  });

  it('gives the rows of an fp32 segment’s table', async () => {
    const fp32 = serializeSafetensors(tokenTableTensors(tokenTable(model, 'fp32')));
    const got = await readTable(served(fp32).body, fp32.byteLength, [90, 0, 41], { nEmbd: d, dtype: 'F32' }, sha256Digest());
    if (!('rows' in got)) throw new Error(got.problem);
    expect(lookupTokens(got.rows, [0, 41, 90])).toEqual(lookupTokens(tokenTable(model, 'fp32'), [0, 41, 90]));
  });

  it("reads a forged table the same way, to its end, whether or not its vocabulary holds the shard's ids", async () => {
    // A vocabulary of 50: the first shard's largest id is past it, the second's is not.
    const table = forged(50);
    const runs = [];
    for (const ids of [
      [3, 7, 90],
      [3, 7, 40],
    ]) {
      const { body, seen } = served(table);
      const got = await readTable(body, table.byteLength, ids, shape, sha256Digest());
      runs.push({ sha256: got.sha256, ...seen });
    }
    expect(runs[0]).toEqual(runs[1]);
    expect(runs[0]).toEqual({ sha256: bytesToHex(sha256(table)), bytes: table.byteLength, pulls: Math.ceil(table.byteLength / 100) });
  });

  it("keeps room for the shard's rows sized by its ids and the segment alone, whatever vocabulary a header claims", () => {
    const ids = [3, 7, 90, 4000];
    const sizes = [undefined, { vocab: 50, rowsAt: 64, scalesAt: 64 + 50 * d }, { vocab: 1 << 21, rowsAt: 64, scalesAt: 64 + (1 << 21) * d }].map((layout) => {
      const { rows, scales, index } = shardRows(ids, shape, layout).table;
      return [rows.byteLength, scales?.byteLength, index.size];
    });
    expect(sizes).toEqual([
      [4 * d, 16, 4],
      [4 * d, 16, 4],
      [4 * d, 16, 4],
    ]);
  });

  it('says, for the approved digest only to tell, an id past the vocabulary without naming it', async () => {
    const table = forged(50);
    const got = await readTable(served(table).body, table.byteLength, [3, 49, 50, 77], shape, sha256Digest());
    expect(got).toEqual({ sha256: bytesToHex(sha256(table)), problem: "a token id of the shard is outside the table's vocabulary" });
  });

  it('reads a header that does not fit the segment to its end, and never looks for a row', async () => {
    const wide = serializeSafetensors({
      ...tokenTableTensors(tokenTable(model, 'int8')),
      'wte.weight': { dtype: 'F32', shape: [4, 1 << 16], data: new Float32Array(4 << 16) },
    });
    const { body, seen } = served(wide);
    const got = await readTable(body, wide.byteLength, [1, 2], shape, sha256Digest());
    expect(got).toMatchObject({ sha256: bytesToHex(sha256(wide)), problem: expect.stringMatching(/^tensors wte.weight, wte.weight_int8, wte.weight_scale: /) });
    expect(seen.bytes).toBe(wide.byteLength);
  });

  it('never throws for a body longer or shorter than its content-length: both say so, after the digest', async () => {
    const longer = await readTable(served(approved).body, approved.byteLength - 150, [1], shape, sha256Digest());
    expect(longer).toMatchObject({ problem: `the body runs past its content-length of ${approved.byteLength - 150} bytes` });
    expect(longer.sha256).not.toBe(bytesToHex(sha256(approved)));
    const cut = approved.slice(0, approved.byteLength - 150);
    const shorter = await readTable(served(cut).body, approved.byteLength, [1, TINY.vocabSize - 1], shape, sha256Digest());
    expect(shorter).toEqual({
      sha256: bytesToHex(sha256(cut)),
      problem: `the body holds ${cut.byteLength} bytes, its content-length says ${approved.byteLength}`,
    });
  });
});
