/**
 * npm run stack as an operator runs it: it prints the exports the training server needs, and Ctrl-C (SIGINT) or a
 * SIGTERM sent to npm stops everything it started, the S3 server and the workerd processes included.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { localTempDir } from '../infra/local/paths.ts';
import { descendants } from '../infra/local/proc-memory.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function stackThenSignal(signal: NodeJS.Signals): Promise<{ output: string; started: Array<{ pid: number; name: string }>; left: number[] }> {
  const dir = await localTempDir(`test-stack-${signal}`);
  const npm = spawn('npm', ['run', 'stack', '--', '--devices', '1', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  npm.stdout.on('data', (b: Buffer) => (output += b));
  npm.stderr.on('data', (b: Buffer) => (output += b));
  for (let waited = 0; !output.includes('Ctrl-C stops everything'); waited += 200) {
    if (waited > 60_000 || npm.exitCode !== null) throw new Error(`npm run stack did not come up:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const started = await descendants(npm.pid!);
  // Its output pipe closes once npm and everything that inherited it (the stack's process, the S3 server) have ended.
  const closed = Promise.all([once(npm, 'exit'), once(npm.stdout, 'close')]);
  npm.kill(signal);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 20_000))]);
  // What the stack started gets a moment to stop after npm itself has gone.
  let left = started.map((p) => p.pid).filter(alive);
  for (let waited = 0; left.length && waited < 15_000; waited += 250) {
    await new Promise((r) => setTimeout(r, 250));
    left = left.filter(alive);
  }
  for (const pid of left) process.kill(pid, 'SIGKILL');
  return { output, started, left };
}

describe.skipIf(process.platform !== 'linux')('npm run stack', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)(
    'stops all it started on %s sent to npm, and prints paste-ready exports',
    async (signal) => {
      const { output, started, left } = await stackThenSignal(signal);
      // The S3 server and the device's workerd were among what it started (so the check below checks something).
      expect(started.map((p) => p.name)).toEqual(expect.arrayContaining(['workerd']));
      expect(started.length).toBeGreaterThanOrEqual(4);
      expect(started.filter((p) => left.includes(p.pid)).map((p) => p.name)).toEqual([]);
      for (const name of [
        'SPLITFROZEN_S3_ENDPOINT',
        'SPLITFROZEN_S3_BUCKET',
        'SPLITFROZEN_S3_ACCESS_KEY_ID',
        'SPLITFROZEN_S3_SECRET_ACCESS_KEY',
        'SPLITFROZEN_ROUND_SECRET',
      ])
        expect(output).toMatch(new RegExp(`^export ${name}='[^']+'$`, 'm'));
      expect(output).toContain('stopping the S3 server and every device worker');
    },
    90_000,
  );
});
