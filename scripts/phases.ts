/** An end-to-end script's phases: each announced and timed, and the repository's commands run as children whose memory is sampled. */
import { spawn } from 'node:child_process';
import type { PeakSampler } from '../infra/local/proc-memory.ts';

export const since = (t: number) => ((performance.now() - t) / 1000).toFixed(1);

export class Phases {
  readonly started = performance.now();
  readonly list: Array<{ phase: string; seconds: number; reused?: boolean }> = [];

  constructor(
    private readonly total: number,
    readonly sampler: PeakSampler,
  ) {}

  /** "label 1.23 GB (peak 1.50)": a watched process's resident memory now and at most. */
  memory(label: string): string {
    const m = this.sampler.peaks()[label];
    return m ? `${label} ${(m.rssMB / 1024).toFixed(2)} GB (peak ${(m.peakMB / 1024).toFixed(2)})` : '';
  }

  /** Runs a phase; with `beat`, a line every 15 s with those processes' memory, for phases that print nothing else. */
  async run<T>(
    n: number,
    name: string,
    what: string,
    body: () => Promise<T>,
    { reused = false, beat }: { reused?: boolean; beat?: string[] } = {},
  ): Promise<T> {
    console.log(`\n[${n}/${this.total}] ${what}${reused ? ' (reused from an earlier run)' : ''}`);
    const t0 = performance.now();
    const timer =
      beat &&
      setInterval(
        () =>
          console.log(
            `      ... ${since(t0)} s, ${beat
              .map((l) => this.memory(l))
              .filter(Boolean)
              .join(', ')}`,
          ),
        15_000,
      );
    try {
      const out = await body();
      this.list.push({ phase: name, seconds: Number(since(t0)), ...(reused ? { reused } : {}) });
      console.log(`      ${since(t0)} s (${since(this.started)} s in all)`);
      return out;
    } finally {
      clearInterval(timer);
    }
  }

  /** A script of this repository in a child Node (as npm runs it), its memory watched as `label`, a line every 10 s. */
  child(label: string, script: string, argv: string[]): Promise<void> {
    const p = spawn(process.execPath, ['--import', 'tsx', script, ...argv], { stdio: ['ignore', 'inherit', 'inherit'] });
    this.sampler.watch(label, () => [p.pid!]);
    const t0 = performance.now();
    const beat = setInterval(() => console.log(`      ... ${since(t0)} s, ${this.memory(label)}`), 10_000);
    return new Promise<void>((done, failed) => {
      p.once('error', failed);
      p.once('exit', (code) => {
        clearInterval(beat);
        if (code === 0) done();
        else failed(new Error(`${label} exited with ${code}: node --import tsx ${script} ${argv.join(' ')}`));
      });
    });
  }
}
