/**
 * What one device can do to the adapters, bounded. The step guard (train/adamw.ts) keeps a lying batch from making
 * them non-finite; this keeps a device's batches from making them worse: in by-device order, the held-out loss (on the
 * first limits.guardRows evaluation rows) is measured before and after each device, and a device whose batches raise
 * it by more than limits.maxLossRise is rolled back, adapters, head and optimizer as they were before it. Interleaved
 * order mixes every device into each stretch of steps, so no stretch is one device's: there the step guard and the
 * feed's checks are what hold.
 */
import type { GenerationExample } from '../../core/data/generation.ts';
import type { Example } from '../../core/data/shard.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { completionLoss, evaluateClassification, generationBatches } from '../runs/evaluate.ts';
import type { RunSpec } from '../runs/spec.ts';
import { snapshotTrainer, type TrainerSnapshot } from '../train/snapshot.ts';
import type { Trainer } from '../train/trainer.ts';

/** A device's start: the held-out loss and the trainer's state before its first batch. */
export interface GuardMark {
  device: string;
  loss: number;
  snapshot: TrainerSnapshot;
}

export class DeviceGuard {
  /** The held-out loss of the adapters as they are now (undefined: measure it). */
  private current: number | undefined;

  /** `loss`: the held-out loss of the trainer as it is when called. */
  constructor(
    private readonly trainer: Trainer,
    private readonly loss: () => Promise<number>,
    readonly maxRise: number,
  ) {}

  /** The run's guard, or undefined when it is off (maxLossRise 0, interleaved order, or no held-out rows). */
  static of(trainer: Trainer, tokenizer: Tokenizer, spec: RunSpec, evalRows: readonly Example[] | readonly GenerationExample[]): DeviceGuard | undefined {
    const { maxLossRise, guardRows } = spec.limits;
    if (maxLossRise === 0 || spec.training.batchOrder === 'interleaved' || evalRows.length === 0) return undefined;
    const { batchSize, seqLen } = spec.training;
    if (spec.task.kind === 'generation') {
      const batches = generationBatches(tokenizer, (evalRows as GenerationExample[]).slice(0, guardRows), batchSize, seqLen);
      return new DeviceGuard(trainer, () => completionLoss(trainer, batches), maxLossRise);
    }
    const rows = (evalRows as Example[]).slice(0, guardRows);
    return new DeviceGuard(trainer, async () => (await evaluateClassification(trainer, tokenizer, rows, batchSize, seqLen)).loss, maxLossRise);
  }

  async mark(device: string): Promise<GuardMark> {
    this.current ??= await this.loss();
    return { device, loss: this.current, snapshot: snapshotTrainer(this.trainer) };
  }

  /**
   * The mark of a device whose part of the round was cut (a restart, a cancel, a failed round): `kept` puts the
   * trainer's state from before its first batch back and gives the loss measured then (undefined: none kept, the
   * trainer untouched). The trainer then goes back to the state its batches reached.
   */
  async resume(device: string, kept: () => Promise<number | undefined>): Promise<GuardMark | undefined> {
    const reached = snapshotTrainer(this.trainer);
    try {
      const loss = await kept();
      return loss === undefined ? undefined : { device, loss, snapshot: snapshotTrainer(this.trainer) };
    } finally {
      reached.restore();
      reached.dispose();
      this.current = undefined;
    }
  }

  /** What `read` gives of the trainer as it was at `mark`; the trainer then goes back to where it is. */
  atMark<T>(mark: GuardMark, read: () => T): T {
    const now = snapshotTrainer(this.trainer);
    try {
      mark.snapshot.restore();
      return read();
    } finally {
      now.restore();
      now.dispose();
    }
  }

  /** After the device's batches: undoes them if they raised the held-out loss too far; says why, or undefined. */
  async settle(mark: GuardMark): Promise<string | undefined> {
    const after = await this.loss();
    const rise = after - mark.loss;
    // A NaN loss is a rise past any bound.
    const rolledBack = !(rise <= this.maxRise);
    if (rolledBack) mark.snapshot.restore();
    mark.snapshot.dispose();
    this.current = rolledBack ? mark.loss : after;
    if (!rolledBack) return undefined;
    return `rolled back: its batches raised the held-out loss from ${mark.loss.toFixed(4)} to ${after.toFixed(4)}, more than limits.maxLossRise ${this.maxRise}`;
  }

  /** A cancelled device's mark: its state stays as trained (the checkpoint resumes it). */
  drop(mark: GuardMark): void {
    mark.snapshot.dispose();
    this.current = undefined;
  }
}
