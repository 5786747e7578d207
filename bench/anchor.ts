/** The PyTorch references benchmarks print ratios against: a script's last JSON line, or why it did not run. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export type AnchorResult = Record<string, unknown> | { skipped: string };

/**
 * Runs `script` with `args` under `python` (Debian's /usr/bin/python3 by default, which has python3-torch on CPU
 * machines) and returns the JSON line it printed last. OpenBLAS's variables are dropped: Debian's OpenBLAS picks a
 * slow generic kernel when they are set.
 */
export async function runAnchor(script: string, args: Array<string | number>, { python = '/usr/bin/python3', env = process.env } = {}): Promise<AnchorResult> {
  const { OPENBLAS_CORETYPE: _coretype, OPENBLAS_L2_SIZE: _l2, ...clean } = env;
  try {
    const { stdout } = await promisify(execFile)(python, [script, ...args.map(String)], { env: clean, timeout: 900_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  } catch (e) {
    const why = String((e as { stderr?: string }).stderr || (e as Error).message);
    return {
      skipped:
        /No module named 'torch'|ENOENT/.test(why) && python === '/usr/bin/python3'
          ? 'needs Debian python3-torch: apt-get install -y python3-torch libopenblas0-pthread'
          : why.trim().split('\n').at(-1)!,
    };
  }
}
