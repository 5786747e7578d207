import { describe, expect, it } from 'vitest';
import { parseApproval, segmentRefusal, storedApproval, type DevicePolicy } from './policy.ts';

const sha = (c: string) => c.repeat(64);
const llama = { sha256: sha('e'), model: 'llama', cut: 2, tokenizer: sha('f'), generation: true, seqLen: 96 };

describe("an owner's approvals of a tokenizer", () => {
  it('need its start and end tokens when the owner gives one, and refuse a request naming others', () => {
    expect(() => parseApproval(llama, 2)).toThrow("approval: field 'specialTokens' must give the tokenizer's start and end token ids");
    expect(() => parseApproval({ ...llama, specialTokens: { bos: -1, eos: 2 } }, 2)).toThrow("approval: field 'specialTokens' must hold token ids eos");
    const policy: DevicePolicy = { minCut: 2, approvals: [parseApproval({ ...llama, specialTokens: { bos: 1, eos: 2 } }, 2)], defence: { mechanism: 'none' } };
    const segment = { sha256: sha('e'), cut: 2, task: 'generation' as const, seqLen: 96 };
    expect(segmentRefusal(policy, { ...segment, tokenizer: { sha256: sha('f'), bos: 1, eos: 2 } })).toBeUndefined();
    expect(segmentRefusal(policy, { ...segment, tokenizer: { sha256: sha('f'), eos: 2 } })).toBe(
      `start token (none), end token 2 are not the ones approved with segment ${sha('e')} (start token 1, end token 2): other special tokens would give the owner's text fresh noise`,
    );
  });

  it('for generation, run at the one sequence length the owner approved: a long prompt keeps its end, which moves with the length', () => {
    const { seqLen: _, ...unsized } = { ...llama, specialTokens: { bos: 1, eos: 2 } };
    expect(() => parseApproval(unsized, 2)).toThrow("approval: field 'seqLen' must give the sequence length generation rounds run at");
    const policy: DevicePolicy = { minCut: 2, approvals: [parseApproval({ ...unsized, seqLen: 96 }, 2)], defence: { mechanism: 'none' } };
    const segment = { sha256: sha('e'), cut: 2, tokenizer: { sha256: sha('f'), bos: 1, eos: 2 } };
    expect(segmentRefusal(policy, { ...segment, task: 'generation', seqLen: 96 })).toBeUndefined();
    expect(segmentRefusal(policy, { ...segment, task: 'generation', seqLen: 64 })).toBe(
      `generation rounds on segment ${sha('e')} run at sequence length 96, as its owner approved, not 64: at another length a long prompt's tokens would get fresh noise`,
    );
    // A classification round cuts rows at their end only: any length.
    expect(segmentRefusal(policy, { ...segment, task: 'classification', seqLen: 64 })).toBeUndefined();
    expect(segmentRefusal({ ...policy, approvals: [storedApproval(unsized)] }, { ...segment, task: 'generation', seqLen: 96 })).toBe(
      `segment ${sha('e')} was approved for generation without a sequence length: approve it again with "seqLen"`,
    );
  });

  it('stored before the special tokens were required, keep the device working and are refused saying what to approve', () => {
    // Read strictly, the stored approval would throw, and with it every round and GET /approvals of the device.
    expect(() => parseApproval(llama, 0)).toThrow();
    const policy: DevicePolicy = {
      minCut: 2,
      approvals: [storedApproval({ sha256: sha('a'), model: 'gpt2', cut: 2 }), storedApproval(llama)],
      defence: { mechanism: 'none' },
    };
    expect(segmentRefusal(policy, { sha256: sha('a'), cut: 2 })).toBeUndefined();
    expect(segmentRefusal(policy, { sha256: sha('e'), cut: 2, tokenizer: { sha256: sha('f'), bos: 1, eos: 2 }, task: 'generation', seqLen: 96 })).toBe(
      `segment ${sha('e')} was approved with a tokenizer but without its start and end token ids: approve it again with "specialTokens" (on a device whose worker refuses that field, after updating it)`,
    );
  });
});
