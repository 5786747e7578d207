import { describe, expect, it } from 'vitest';
import { roundMakespan } from './device-time.ts';

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

  it('pipelined hides every device but the first behind the server; stop-and-wait adds them all', () => {
    const many = Array.from({ length: 4 }, (_, i) => ({ id: String(i), batches: 100, secondsPerBatch: 3 }));
    // 300 s for the first device, then the server's 400 batches; stop-and-wait: 4 x (300 + 100).
    expect(roundMakespan(many, 1, 'pipelined').seconds).toBe(700);
    expect(roundMakespan(many, 1, 'stop-and-wait').seconds).toBe(1600);
    // A slow last device shows through: it lands after the server has caught up.
    expect(roundMakespan([...many.slice(0, 3), { id: 'slow', batches: 100, secondsPerBatch: 9 }], 1, 'pipelined').seconds).toBe(1000);
  });
});
