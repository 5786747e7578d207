import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
const pkg = JSON.parse(read('package.json'));
const lock = JSON.parse(read('package-lock.json'));

describe('a fresh install', () => {
  it('runs no dependency install script: each one in the lockfile is reviewed and denied, and npm 10 skips them too', () => {
    const withScripts = Object.entries(lock.packages as Record<string, { hasInstallScript?: boolean }>)
      .filter(([path, entry]) => path && entry.hasInstallScript)
      .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
    expect(withScripts.length).toBeGreaterThan(0);
    // A new dependency with an install script fails here until it is reviewed (docs/development.md, "Install scripts").
    for (const name of new Set(withScripts)) expect(pkg.allowScripts, `${name} has an install script: review it`).toHaveProperty([name], false);
    // npm 11 reads allowScripts; npm 10 does not, and would run onnxruntime-node's download of CUDA libraries.
    expect(read('.npmrc').split('\n')).toContain('ignore-scripts=true');
  });

  it('leaves the lockfile as committed: its root entry lists exactly the dependencies of package.json', () => {
    const root = lock.packages[''];
    for (const field of ['dependencies', 'optionalDependencies', 'devDependencies']) expect(root[field], field).toEqual(pkg[field]);
  });
});
