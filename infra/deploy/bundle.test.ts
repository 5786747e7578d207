import { describe, expect, it } from 'vitest';
import { measureBundle, PAID_PLAN_LIMIT_BYTES } from './bundle.ts';
import vocabularyLeftOut from '../../workers/device/src/no-llama3-vocabulary.ts';

describe('device worker bundle', () => {
  it('builds with wrangler deploy --dry-run and fits the Workers paid plan (10 MB gzipped)', async () => {
    const size = await measureBundle('device-eu-1');
    expect(size.files.some((f) => f.name.endsWith('.wasm'))).toBe(true); // onnxruntime-web ships inside
    expect(size.files.some((f) => f.name.endsWith('.js'))).toBe(true);
    expect(size.totalGzipBytes).toBeLessThan(PAID_PLAN_LIMIT_BYTES);
    expect(size.fits).toBe(true);
  });

  it("leaves out Llama 3's baked vocabulary, 43 MB of heap a Worker would build at its start, and says so if reached", async () => {
    const size = await measureBundle('device-eu-1');
    expect(size.packages).toEqual(expect.arrayContaining(['hono', 'onnxruntime-web', '@noble/hashes']));
    expect(size.packages).not.toContain('llama3-tokenizer-js');
    expect(() => vocabularyLeftOut.vocabById).toThrow(
      "the device holds no Llama 3 vocabulary (wrangler.toml aliases llama3-tokenizer-js away): a round's tokenizer comes as its tokenizer.json",
    );
  });
});
