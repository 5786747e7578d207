import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['node_modules/', '.cache/', '.local/', '.gpu/', '.gpu-build/', '.wrangler/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  { files: ['**/*.mjs'], languageOptions: { globals: globals.node } },
  // The dashboard's script runs in the operator's browser, served as is.
  { files: ['gpu-server/dashboard/**/*.js'], languageOptions: { globals: globals.browser } },
  { files: ['**/*.cjs'], languageOptions: { globals: globals.node, sourceType: 'commonjs' }, rules: { '@typescript-eslint/no-require-imports': 'off' } },
  {
    // core/ runs in Workers, browsers and Node: no Node-only modules outside its tests.
    files: ['core/**/*.ts'],
    ignores: ['core/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['node:*', 'fs', 'path', 'os', 'child_process'], message: 'core/ must stay runtime-neutral' }] },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'core/ must stay runtime-neutral' },
        { name: 'Buffer', message: 'core/ must stay runtime-neutral' },
      ],
    },
  },
);
