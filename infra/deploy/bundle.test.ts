import { describe, expect, it } from 'vitest';
import { measureBundle, PAID_PLAN_LIMIT_BYTES } from './bundle.ts';

describe('device worker bundle', () => {
  it('builds with wrangler deploy --dry-run and fits the Workers paid plan (10 MB gzipped)', async () => {
    const size = await measureBundle('device-eu-1');
    expect(size.files.some((f) => f.name.endsWith('.wasm'))).toBe(true); // onnxruntime-web ships inside
    expect(size.files.some((f) => f.name.endsWith('.js'))).toBe(true);
    expect(size.totalGzipBytes).toBeLessThan(PAID_PLAN_LIMIT_BYTES);
    expect(size.fits).toBe(true);
  });
});
