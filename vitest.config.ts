import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'core/**/*.test.ts',
      'gpu-server/**/*.test.ts',
      'workers/**/*.test.ts',
      'infra/**/*.test.ts',
      'experiments/**/*.test.ts',
      'tests/**/*.test.ts',
      'scripts/**/*.test.ts',
    ],
    env: { WRANGLER_LOG: 'warn', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The 2-core CI machine: ONNX and TF.js tests are CPU-heavy, run files two at a time.
    maxWorkers: 2,
  },
});
