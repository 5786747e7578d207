import { describe, expect, it } from 'vitest';
import { GLIBC_TUNABLES, nativeMemoryWarning } from './native-memory.ts';

describe("glibc's malloc settings for onnxruntime's CPU provider", () => {
  it('come from package.json, and the server warns where the CPU provider runs on Linux without them', () => {
    expect(GLIBC_TUNABLES).toMatch(/glibc\.malloc\.mmap_threshold=\d+:glibc\.malloc\.trim_threshold=\d+/);
    expect(nativeMemoryWarning('cpu', {}, 'linux')).toContain(`GLIBC_TUNABLES=${GLIBC_TUNABLES}`);
    expect(nativeMemoryWarning('cpu', { GLIBC_TUNABLES }, 'linux')).toBeUndefined();
    expect(nativeMemoryWarning('webgpu', {}, 'linux')).toBeUndefined();
    expect(nativeMemoryWarning('cpu', {}, 'darwin')).toBeUndefined();
  });
});
