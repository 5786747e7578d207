/**
 * Resident memory of the local system's processes, from Linux's /proc: a child's peak is its VmHWM (the kernel's own
 * high-water mark), so sampling it now and then misses nothing but what grows after the last sample. Elsewhere
 * every figure is undefined.
 */
import { readdir, readFile } from 'node:fs/promises';

export interface ProcessMemory {
  rssMB: number;
  peakMB: number;
}

const MB = (kB: string | undefined) => (kB === undefined ? undefined : Math.round(Number(kB) / 1024));

export async function processMemory(pid: number): Promise<ProcessMemory | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  if (!status) return undefined;
  const field = (name: string) => MB(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  const rssMB = field('VmRSS');
  const peakMB = field('VmHWM');
  return rssMB === undefined || peakMB === undefined ? undefined : { rssMB, peakMB };
}

/** The processes below `pid` (children, theirs, ...), with their names (comm). */
export async function descendants(pid: number): Promise<Array<{ pid: number; name: string }>> {
  const parents = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    const close = stat?.lastIndexOf(')') ?? -1;
    if (!stat || close < 0) continue;
    names.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
    parents.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]));
  }
  const below = (p: number): boolean => p === pid || (parents.has(p) && p !== 1 && below(parents.get(p)!));
  return [...names].filter(([p]) => p !== pid && below(parents.get(p)!)).map(([p, name]) => ({ pid: p, name }));
}

/** The processes below `pid` whose name (comm) is `name`. */
export async function descendantsNamed(pid: number, name: string): Promise<number[]> {
  return (await descendants(pid)).filter((d) => d.name === name).map((d) => d.pid);
}

/**
 * Keeps the highest figures seen of some processes, sampled every `intervalMs`: `watch` adds a label and how to find
 * its processes (asked at every sample, so processes started later are found), `peaks()` reads them, `stop()` takes
 * a last sample and ends the timer.
 */
export class PeakSampler {
  private readonly watched = new Map<string, () => Promise<number[]>>();
  private readonly seen = new Map<string, Map<number, ProcessMemory>>();
  private readonly timer: NodeJS.Timeout;
  private busy = false;

  constructor(intervalMs = 500) {
    this.timer = setInterval(() => void this.sample(), intervalMs);
    this.timer.unref();
  }

  watch(label: string, pids: () => number[] | Promise<number[]>): void {
    this.watched.set(label, async () => pids());
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const [label, pids] of this.watched) {
        const known = this.seen.get(label) ?? new Map<number, ProcessMemory>();
        this.seen.set(label, known);
        for (const pid of await pids()) {
          const now = await processMemory(pid);
          if (now) known.set(pid, { rssMB: now.rssMB, peakMB: Math.max(now.peakMB, known.get(pid)?.peakMB ?? 0) });
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** By label, each process's latest resident size and highest peak seen. */
  processes(label: string): Array<{ pid: number } & ProcessMemory> {
    return [...(this.seen.get(label) ?? [])].map(([pid, m]) => ({ pid, ...m }));
  }

  /** By label: the largest process's latest resident size and peak (one process a label, but for workerd's two). */
  peaks(): Record<string, ProcessMemory> {
    const largest = (label: string) => this.processes(label).reduce((a, m) => (m.peakMB > a.peakMB ? m : a));
    return Object.fromEntries(
      [...this.seen.keys()].filter((l) => this.processes(l).length).map((l) => [l, { rssMB: largest(l).rssMB, peakMB: largest(l).peakMB }]),
    );
  }

  async stop(): Promise<Record<string, ProcessMemory>> {
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 20));
    await this.sample();
    return this.peaks();
  }
}
