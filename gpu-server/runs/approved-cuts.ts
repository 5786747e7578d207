/**
 * Cuts checked against what each device's owner approved, when a run is created, so that a cut no owner would run
 * fails now and says what to approve, not at the first round. A device's capacity cut (the deepest its memory and
 * time allow) becomes the deepest cut at or below it that its owner approved; a cut the operator pinned must be
 * approved as it is. Cuts are compared by number: the approvals name segments by SHA-256, which only an export of the
 * segment gives, and each round's planner checks that before asking the device to run it. A device that does not
 * answer now is left unchecked (it may be offline), and its record says so.
 */
import type { ModelConfig } from '../../core/model/family.ts';
import { AnswerError } from '../../core/wire/answers.ts';
import type { DevicePolicy } from '../../core/wire/policy.ts';
import { prefixEstimate } from './cuts.ts';
import type { RunSpec } from './spec.ts';
import type { RunRecord } from './types.ts';

/** The longest a creation waits for a device's policy: an offline device must not hold the request for long. */
export const POLICY_SECONDS = 5;

/** How a device's policy is asked for (bounded in time by the caller). */
export type PolicyOf = (device: RunSpec['devices'][number]) => Promise<DevicePolicy>;

/** The cuts the owner's approvals allow for this run's task, shallowest first. */
export function approvedCuts(policy: DevicePolicy, spec: RunSpec): number[] {
  const usable = policy.approvals.filter((a) => a.cut >= policy.minCut && (spec.task.kind !== 'generation' || a.generation));
  return [...new Set(usable.map((a) => a.cut))].sort((a, b) => a - b);
}

/** Why a device's cut cannot run, or the cut (and estimates) it should run at. */
function checkDevice(
  d: RunSpec['devices'][number],
  given: RunRecord['cuts'][string],
  policy: DevicePolicy,
  spec: RunSpec,
  config: ModelConfig,
): RunRecord['cuts'][string] {
  const cuts = approvedCuts(policy, spec);
  const approve = `its owner approves a segment with PUT /approvals/<sha256> on the device (npm run cli -- segment --model <dir> --cut K prints it)`;
  const approved = cuts.length
    ? `its owner approved cut${cuts.length > 1 ? 's' : ''} ${cuts.join(', ')}${spec.task.kind === 'generation' ? ' for generation' : ''}`
    : `its owner approved no segment${spec.task.kind === 'generation' ? ' for generation rounds ("generation": true)' : ''}`;
  if (!given.planned) {
    if (given.cut < policy.minCut) throw new Error(`device ${d.id}: cut ${given.cut} is below its owner's minimum cut ${policy.minCut}`);
    if (!cuts.includes(given.cut)) throw new Error(`device ${d.id}: cut ${given.cut} is not approved (${approved}); pin an approved cut, or ${approve}`);
    return given;
  }
  const cut = cuts.filter((c) => c <= given.cut).at(-1);
  if (cut === undefined)
    throw new Error(
      `device ${d.id}: its capacity allows cuts up to ${given.cut}, and ${approved}; ` +
        `${cuts.length ? `raise its profile if it can run cut ${cuts[0]}, or ` : ''}${approve}`,
    );
  if (cut === given.cut) return given;
  const e = prefixEstimate(config, cut, d.profile, spec.training.batchSize, spec.training.seqLen);
  return { cut, memoryMB: Math.round(e.memoryMB), batchSeconds: Number(e.batchSeconds.toPrecision(3)), planned: true };
}

/**
 * Each device's cut checked against its owner's policy, all devices at once; throws naming every device whose cut
 * cannot run. Returns the cuts to record (moved to approved ones, or marked unchecked).
 */
export async function checkApprovedCuts(spec: RunSpec, config: ModelConfig, cuts: RunRecord['cuts'], policyOf: PolicyOf): Promise<RunRecord['cuts']> {
  const problems: string[] = [];
  const checked = await Promise.all(
    spec.devices.map(async (d) => {
      const given = cuts[d.id]!;
      const policy = await policyOf(d).catch((e: Error) => e);
      if (policy instanceof Error)
        return [
          d.id,
          { ...given, unchecked: policy instanceof AnswerError ? `answered wrongly: ${policy.message}` : `unreachable: ${policy.message}` },
        ] as const;
      try {
        return [d.id, checkDevice(d, given, policy, spec, config)] as const;
      } catch (e) {
        problems.push((e as Error).message);
        return [d.id, given] as const;
      }
    }),
  );
  if (problems.length) throw new Error(problems.join('; '));
  return Object.fromEntries(checked);
}
