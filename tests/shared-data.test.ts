import { afterEach, describe, expect, it, vi } from 'vitest';
import { sharedFolder } from './shared-data.ts';

describe('test data outside the repository', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('a missing folder is skipped with a line naming it, outside CI', () => {
    vi.stubEnv('CI', '');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect(sharedFolder('no-such-folder')).toMatchObject({ missing: true });
    expect(warn).toHaveBeenCalledExactlyOnceWith(expect.stringMatching(/^skipping tests that need \.\.\/shared\/no-such-folder: not found at \//));
    warn.mockRestore();
  });

  it('a missing folder fails the run under CI=true', () => {
    vi.stubEnv('CI', 'true');
    expect(() => sharedFolder('no-such-folder')).toThrow(/^\.\.\/shared\/no-such-folder is missing \(looked for \/.*\): CI needs the shared data folder/);
  });
});
