import { describe, expect, it } from 'vitest';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import type { DevicePolicy, SegmentApproval } from '../../core/wire/policy.ts';
import { AnswerError } from '../../core/wire/answers.ts';
import { checkApprovedCuts } from './approved-cuts.ts';
import { planCut } from './cuts.ts';
import { parseRunSpec } from './spec.ts';
import type { RunRecord } from './types.ts';

const small = gpt2Config();
const big = { memoryMB: 4096, gflops: 100, maxBatchSeconds: 60, weights: 'int8' as const };
const approval = (cut: number, extra: Partial<SegmentApproval> = {}): SegmentApproval => ({
  sha256: String(cut).repeat(64).slice(0, 64),
  model: 'gpt2',
  cut,
  ...extra,
});
const policy = (approvals: SegmentApproval[], minCut = 2): DevicePolicy => ({ minCut, approvals, defence: { mechanism: 'none' } });

function setup(devices: Array<{ id: string; cut?: number }>, kind: 'classification' | 'generation' = 'classification') {
  const spec = parseRunSpec({
    model: 'm',
    task: kind === 'generation' ? { kind } : { labels: ['0', '1'] },
    devices: devices.map((d) => ({ ...d, url: `http://${d.id}.invalid`, profile: big })),
    training: { batchSize: 8, seqLen: 64 },
  });
  // The cuts as run creation plans them before any owner is asked: capacity alone, or as pinned.
  const cuts: RunRecord['cuts'] = Object.fromEntries(
    spec.devices.map((d) => [d.id, d.cut !== undefined ? { cut: d.cut, planned: false } : { ...planCut(small, d.profile, 8, 64), planned: true }]),
  );
  return { spec, cuts };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => 'accepted',
    (e: Error) => e.message,
  );

describe('cuts checked against the owners at run creation', () => {
  it('moves a capacity cut the owner never approved to the deepest approved one above it', async () => {
    const { spec, cuts } = setup([{ id: 'd1' }]);
    // Capacity alone plans the deepest cut the model allows, one its owner never approved (the bug: the run failed at
    // its first round).
    expect(cuts.d1!.cut).toBe(11);
    const checked = await checkApprovedCuts(spec, small, cuts, async () => policy([approval(3), approval(5), approval(12)]));
    expect(checked.d1).toMatchObject({ cut: 5, planned: true });
    expect(checked.d1!.memoryMB).toBeLessThan(cuts.d1!.memoryMB!);
  });

  it('refuses a pinned cut the owner did not approve or set below its minimum, naming every device at once', async () => {
    const { spec, cuts } = setup([
      { id: 'd1', cut: 4 },
      { id: 'd2', cut: 1 },
      { id: 'd3', cut: 3 },
    ]);
    const policies: Record<string, DevicePolicy> = { d1: policy([approval(3)]), d2: policy([approval(3)]), d3: policy([approval(3)]) };
    expect(await refusal(checkApprovedCuts(spec, small, cuts, async (d) => policies[d.id]!))).toBe(
      "device d1: cut 4 is not approved (its owner approved cut 3); pin an approved cut, or its owner approves a segment with PUT /approvals/<sha256> on the device (npm run cli -- segment --model <dir> --cut K prints it); device d2: cut 1 is below its owner's minimum cut 2",
    );
  });

  it('refuses a device whose owner approved only cuts deeper than its capacity, or none', async () => {
    const { spec } = setup([{ id: 'd1' }]);
    const shallow = { d1: { cut: 2, planned: true, memoryMB: 100, batchSeconds: 1 } };
    expect(await refusal(checkApprovedCuts(spec, small, shallow, async () => policy([approval(6)])))).toMatch(
      /^device d1: its capacity allows cuts up to 2, and its owner approved cut 6; raise its profile if it can run cut 6, or its owner approves/,
    );
    expect(await refusal(checkApprovedCuts(spec, small, shallow, async () => policy([])))).toMatch(
      /^device d1: its capacity allows cuts up to 2, and its owner approved no segment; its owner approves a segment with PUT/,
    );
  });

  it('counts for a generation run only the segments approved for generation', async () => {
    const { spec, cuts } = setup([{ id: 'd1', cut: 3 }], 'generation');
    expect(await refusal(checkApprovedCuts(spec, small, cuts, async () => policy([approval(3)])))).toMatch(
      /cut 3 is not approved \(its owner approved no segment for generation rounds \("generation": true\)\)/,
    );
    expect((await checkApprovedCuts(spec, small, cuts, async () => policy([approval(3, { generation: true })]))).d1!.cut).toBe(3);
  });

  it('leaves a device that does not answer, or answers wrongly, unchecked, saying which, for the round planner to check', async () => {
    const { spec, cuts } = setup([{ id: 'd1', cut: 3 }]);
    const checked = await checkApprovedCuts(spec, small, cuts, async () => {
      throw new Error('connection refused');
    });
    expect(checked.d1).toEqual({ cut: 3, planned: false, unchecked: 'unreachable: connection refused' });
    const wrong = await checkApprovedCuts(spec, small, cuts, async () => {
      throw new AnswerError("policy: field 'minCut' must be an integer >= 1");
    });
    expect(wrong.d1!.unchecked).toBe("answered wrongly: policy: field 'minCut' must be an integer >= 1");
  });
});
