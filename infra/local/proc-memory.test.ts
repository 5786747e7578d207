import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { descendantsNamed, PeakSampler, processMemory } from './proc-memory.ts';

describe.skipIf(process.platform !== 'linux')('process memory from /proc', () => {
  it("reads a process's resident size and peak, finds a child by name, and keeps the peak after the child is gone", async () => {
    const self = (await processMemory(process.pid))!;
    expect(self.rssMB).toBeGreaterThan(10);
    expect(self.peakMB).toBeGreaterThanOrEqual(self.rssMB);
    expect(await processMemory(2 ** 30)).toBeUndefined();

    const child = spawn('sleep', ['5']);
    await once(child, 'spawn');
    expect(await descendantsNamed(process.pid, 'sleep')).toEqual([child.pid]);
    const sampler = new PeakSampler(10_000);
    sampler.watch('sleep', () => descendantsNamed(process.pid, 'sleep'));
    await sampler.sample();
    const seen = sampler.peaks().sleep!;
    expect(seen.peakMB).toBeGreaterThan(0);
    child.kill();
    await once(child, 'exit');
    expect(await sampler.stop()).toEqual({ sleep: seen });
    expect(sampler.processes('sleep')).toEqual([{ pid: child.pid, ...seen }]);
  });
});
