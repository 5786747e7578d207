import { describe, expect, it } from 'vitest';
import { breakEvenDevices, DEVICE_PROFILES, methodRoundSeconds, paretoSlowdowns, roundMakespan, withSlowdowns, type MethodWork } from './device-time.ts';

describe('the device-time model of a round', () => {
  // Two devices of 3 batches, 2 s a batch; the server trains a batch in 1 s.
  const devices = [
    { id: 'a', batches: 3, secondsPerBatch: 2 },
    { id: 'b', batches: 3, secondsPerBatch: 2 },
  ];

  it('stop-and-wait: each device computes, then the server trains it, one device after the other (worked by hand)', () => {
    // a's manifest lands at 6, trained by 9; b starts at 9, lands at 15, trained by 18.
    expect(roundMakespan(devices, 1, 'stop-and-wait')).toEqual({ seconds: 18, serverBusySeconds: 6, serverIdleSeconds: 12 });
  });

  it('pipelined: the later devices compute while the server trains the earlier ones (worked by hand)', () => {
    // a as before (trained by 9); b landed at 6, before 9: trained by 12.
    expect(roundMakespan(devices, 1, 'pipelined')).toEqual({ seconds: 12, serverBusySeconds: 6, serverIdleSeconds: 6 });
  });

  it('interleaved: the server starts when every device has landed, then trains every batch (worked by hand)', () => {
    // Both land at 6; 6 batches of 1 s: 12, as pipelined here; with a slow device (landing at 12): 18 against 15.
    expect(roundMakespan(devices, 1, 'pipelined', 'interleaved')).toEqual({ seconds: 12, serverBusySeconds: 6, serverIdleSeconds: 6 });
    expect(roundMakespan(devices, 1, 'stop-and-wait', 'interleaved').seconds).toBe(12);
    const slow = [devices[0]!, { id: 'slow', batches: 3, secondsPerBatch: 4 }];
    expect(roundMakespan(slow, 1, 'pipelined', 'interleaved').seconds).toBe(18);
    expect(roundMakespan(slow, 1, 'pipelined').seconds).toBe(15);
  });

  it('pipelined hides every device but the first behind the server; stop-and-wait adds them all', () => {
    const many = Array.from({ length: 4 }, (_, i) => ({ id: String(i), batches: 100, secondsPerBatch: 3 }));
    // 300 s for the first device, then the server's 400 batches; stop-and-wait: 4 x (300 + 100).
    expect(roundMakespan(many, 1, 'pipelined').seconds).toBe(700);
    expect(roundMakespan(many, 1, 'stop-and-wait').seconds).toBe(1600);
    // A slow last device shows through: it lands after the server has caught up.
    expect(roundMakespan([...many.slice(0, 3), { id: 'slow', batches: 100, secondsPerBatch: 9 }], 1, 'pipelined').seconds).toBe(1000);
  });
});

describe("a method's round time on a device profile (worked by hand)", () => {
  // 1 GFLOP/s each way, 1 MB/s each way (8 Mbit/s); the server does 3 GFLOP/s.
  const profile = { name: 'unit', forwardGflops: 1, backwardGflops: 1, uplinkMbps: 8, downlinkMbps: 8, memoryMB: 100, source: 'test' };
  const work = (deviceBackward: number): MethodWork => ({
    devices: [
      { batches: 2, tokens: 1000 },
      { batches: 2, tokens: 1000 },
    ],
    perToken: { deviceForward: 1e6, deviceBackward, server: 3e6 },
    activationBytesPerToken: 100,
    adapterBytes: 1e6,
    avgEvery: 1,
    devicePeakMemoryMB: 10,
  });

  it('splitfrozen: batches of 0.5 s compute + 0.05 s upload against 0.5 s server steps; later rounds only train', () => {
    // Both devices land at 1.1 s; the server trains 2 x 0.5 s each: 2.1, then 3.1 (stop-and-wait: 2.1 + 1.1 + 1.0).
    expect(methodRoundSeconds('splitfrozen', work(0), profile, 3e9, 0)).toBeCloseTo(3.1, 9);
    expect(methodRoundSeconds('splitfrozen', work(0), profile, 3e9, 0, 'stop-and-wait')).toBeCloseTo(4.2, 9);
    expect(methodRoundSeconds('splitfrozen', work(0), profile, 3e9, 1)).toBeCloseTo(2, 9);
  });

  it('fedlora: adapters down (1 s), forward and backward (3 s), adapters up (1 s), devices at once', () => {
    expect(methodRoundSeconds('fedlora', work(2e6), profile, 3e9, 0)).toBeCloseTo(5, 9);
  });

  it('splitlora: compute 3 s, activations and gradients 0.1 s each way, server 1 s, two averagings of 2 s', () => {
    expect(methodRoundSeconds('splitlora', work(2e6), profile, 3e9, 0)).toBeCloseTo(8.2, 9);
  });

  it('a method that needs more memory than a device has, or a backward pass a Worker cannot run, does not fit', () => {
    const workers = DEVICE_PROFILES.find((p) => p.name === 'workers')!;
    expect(methodRoundSeconds('fedlora', work(2e6), workers, 3e9, 0)).toBeUndefined();
    expect(methodRoundSeconds('splitfrozen', { ...work(0), devicePeakMemoryMB: 200 }, workers, 3e9, 0)).toBeUndefined();
    expect(methodRoundSeconds('splitfrozen', work(0), workers, 3e9, 0)).toBeGreaterThan(0);
  });

  it('break-even: the devices at which SplitFrozen, its server training them one after another, takes as long (worked by hand)', () => {
    // n devices alike: SplitFrozen's first round lands the first device at 1.1 s, then trains 2n batches of 0.5 s:
    // 1.1 + n, and n a later round; FedLoRA takes 5 s a round whatever n: 1.1 + n >= 5 from n = 4; over two rounds
    // 1.1 + 2n >= 10 from n = 5. SplitLoRA takes max(8.2, n) a round: 1.1 + n >= 8.2 from n = 8.
    const fedlora = { method: 'fedlora', work: work(2e6) };
    expect(breakEvenDevices(work(0), fedlora, profile, 3e9, 1)).toBe(4);
    expect(breakEvenDevices(work(0), fedlora, profile, 3e9, 2)).toBe(5);
    expect(breakEvenDevices(work(0), { method: 'splitlora', work: work(2e6) }, profile, 3e9, 1)).toBe(8);
    // A server 1,000 times faster moves it past what is searched; a method that does not fit has none.
    expect(breakEvenDevices(work(0), fedlora, profile, 3e12, 1, 1000)).toBeUndefined();
    expect(
      breakEvenDevices(
        work(0),
        fedlora,
        DEVICE_PROFILES.find((p) => p.name === 'workers')!,
        3e9,
        1,
      ),
    ).toBeUndefined();
  });

  it('partial participation: a round waits only for the devices that deliver; SplitFrozen computes a device once, when it first delivers (worked by hand)', () => {
    // Round 0: only a delivers; round 1: only b (slowed 3 times); round 2: neither.
    const some = (w: MethodWork): MethodWork => ({ ...withSlowdowns(w, [1, 3]), delivering: [[0], [1], []] });
    // FedLoRA: round 0 a alone, 5 s; round 1 b alone, 1 + 9 + 3 = 13 s; round 2 nothing to wait for.
    expect([0, 1, 2].map((k) => methodRoundSeconds('fedlora', some(work(2e6)), profile, 3e9, k))).toEqual([5, 13, 0]);
    // SplitFrozen: round 0 a lands at 1.1 s, trained by 2.1; round 1 a trains at once (1 s) while b lands at 3.3 and
    // is trained by 4.3; round 2 trains both, 2 s.
    const sf = [0, 1, 2].map((k) => methodRoundSeconds('splitfrozen', some(work(0)), profile, 3e9, k)!);
    [2.1, 4.3, 2].forEach((want, k) => expect(sf[k]).toBeCloseTo(want, 9));
    // The centralized bound holds every row from the start, whoever delivers.
    expect(methodRoundSeconds('centralized', some(work(0)), profile, 3e9, 1)).toBeCloseTo(2, 9);
  });

  it('a straggler: FedLoRA waits for it; SplitFrozen only where its batches are next (worked by hand)', () => {
    // Device b three times slower. FedLoRA: 1 s down, 3 x 3 s compute, 3 x 1 s up: 13 s. SplitFrozen, round 0: a lands
    // at 1.1 s and is trained by 2.1; b lands at 3 x 1.1 = 3.3 and is trained by 4.3; later rounds do not see it.
    const slow = (w: MethodWork) => withSlowdowns(w, [1, 3]);
    expect(methodRoundSeconds('fedlora', slow(work(2e6)), profile, 3e9, 0)).toBeCloseTo(13, 9);
    expect(methodRoundSeconds('splitfrozen', slow(work(0)), profile, 3e9, 0)).toBeCloseTo(4.3, 9);
    expect(methodRoundSeconds('splitfrozen', slow(work(0)), profile, 3e9, 1)).toBeCloseTo(2, 9);
    // Heavy-tailed draws: at least 1, the same for a seed, about one in ten above 10^(1/1.5) = 4.64.
    const draws = paretoSlowdowns(20_000, 1.5, 0);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(1);
    expect(paretoSlowdowns(5, 1.5, 0)).toEqual(draws.slice(0, 5));
    expect(draws.filter((x) => x > 4.6416).length / draws.length).toBeCloseTo(0.1, 2);
  });
});
