/**
 * The drill's privacy section: every attack of the suite on npm start's model and task at the default minimum cut,
 * undefended and at the devices' default defence, and what that defence costs the task's accuracy when the server
 * fine-tunes on the defended activations (the SplitFrozen simulation, the devices' own defence code).
 */
import { DEFAULT_LEVEL, describeDefence, LEVELS } from '../../core/privacy/defence.ts';
import { DEFAULT_MIN_CUT } from '../../core/wire/policy.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import type { SuiteResult } from '../../experiments/privacy.ts';
import { demoModel, generatedTask, sweepPoints, type SweepOptions } from '../../experiments/privacy-sweep.ts';

const round4 = (x: number) => Number(x.toFixed(4));

function figures(r: SuiteResult) {
  return {
    strongestRecovery: round4(r.strongest.recovery),
    strongestAttack: r.strongest.attack,
    majority: round4(r.strongest.majority),
    rowsHalf: round4(r.strongest.rowsHalf),
    attacks: Object.fromEntries(Object.entries(r.attacks).map(([k, v]) => [k, { recovery: round4(v.recovery), rowsHalf: round4(v.rowsHalf) }])),
    ...(r.adaptiveFreshNoise ? { adaptiveIfNoiseWereFresh: round4(r.adaptiveFreshNoise.recovery) } : {}),
    copiesBitEqual: r.copiesBitEqual,
  };
}

export async function privacyDrill({ seeds = 3, log }: { seeds?: number; log: (m: string) => void }) {
  await initBackend('auto');
  const options: SweepOptions = {
    task: generatedTask(),
    model: demoModel(),
    modelName: 'tiny random GPT-2 of npm start',
    tokenizer: new GPT2Tokenizer(),
    settings: [
      { kind: 'output', defence: LEVELS.off },
      { kind: 'output', defence: LEVELS[DEFAULT_LEVEL] },
    ],
    cut: DEFAULT_MIN_CUT,
    devices: 3,
    trainRows: 600,
    evalRows: 400,
    rounds: 6,
    lr: 0.01,
    seeds: Array.from({ length: seeds }, (_, i) => i),
    targets: ['attn.c_attn'],
    batchSize: 16,
    seqLen: 48,
    victimRows: 50,
    attackerRows: 200,
    out: '',
    command: 'npm run drill',
    log,
  };
  const [off, defended] = await sweepPoints(options);
  return {
    attackCount: Object.keys(off.privacy.attacks).length,
    cut: DEFAULT_MIN_CUT,
    task: options.task.notes[0],
    undefended: { ...figures(off.privacy), accuracy: round4(off.accuracy) },
    defaultDefence: {
      level: DEFAULT_LEVEL,
      setting: describeDefence(LEVELS[DEFAULT_LEVEL]),
      clip: defended.privacy.clip,
      ...figures(defended.privacy),
      accuracy: round4(defended.accuracy),
      accuracyDropPoints: Number((100 * (off.accuracy - defended.accuracy)).toFixed(1)),
      accuracySeeds: defended.accuracies.map(round4),
    },
  };
}
