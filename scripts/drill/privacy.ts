/**
 * The drill's privacy section: every attack of the suite on npm start's model and task at the default minimum cut,
 * undefended, at the default defence of npm start's owners on this task (randomised response at epsilon 0 within
 * groups built from public text) and at the devices' own default without groups (DEFAULT_LEVEL), and what each costs
 * the task's accuracy when the server fine-tunes on the defended activations (the SplitFrozen simulation, the
 * devices' own defence code).
 */
import { DEFAULT_LEVEL, describeDefence, LEVELS } from '../../core/privacy/defence.ts';
import { DEFAULT_MIN_CUT } from '../../core/wire/policy.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import type { SuiteResult } from '../../experiments/privacy.ts';
import {
  demoModel,
  generatedTask,
  GROUPS_DEFAULT,
  publicGeneratedText,
  sweepPoints,
  type SweepOptions,
  type SweepPoint,
} from '../../experiments/privacy-sweep.ts';

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

export async function privacyDrill({ seeds = 10, log }: { seeds?: number; log: (m: string) => void }) {
  await initBackend('auto');
  const options: SweepOptions = {
    task: generatedTask(),
    model: demoModel(),
    modelName: 'tiny random GPT-2 of npm start',
    tokenizer: new GPT2Tokenizer(),
    settings: [{ kind: 'output', defence: LEVELS.off }, GROUPS_DEFAULT, { kind: 'output', defence: LEVELS[DEFAULT_LEVEL] }],
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
    publicTexts: publicGeneratedText(),
    out: '',
    command: 'npm run drill',
    log,
  };
  const [off, groups, level] = await sweepPoints(options);
  // One seed's accuracy swings by ~10 points either way: the drop is read per seed, paired with the undefended run.
  const cost = (p: SweepPoint) => {
    const drops = p.accuracies.map((a, i) => 100 * (off.accuracies[i] - a));
    const mean = drops.reduce((x, y) => x + y, 0) / drops.length;
    const sd = Math.sqrt(drops.reduce((x, y) => x + (y - mean) ** 2, 0) / Math.max(1, drops.length - 1));
    return {
      accuracy: round4(p.accuracy),
      accuracyDropPoints: Number(mean.toFixed(1)),
      accuracyDropStandardError: Number((sd / Math.sqrt(drops.length)).toFixed(1)),
      accuracySeeds: p.accuracies.map(round4),
    };
  };
  return {
    // Every attack run against a sanitising setting: the four, and the one that decodes sanitised tokens.
    attackCount: Object.keys(groups.privacy.attacks).length,
    cut: DEFAULT_MIN_CUT,
    task: options.task.notes[0],
    undefended: { ...figures(off.privacy), accuracy: round4(off.accuracy), accuracySeeds: off.accuracies.map(round4) },
    defaultDefence: {
      setting: `${groups.name}: randomised response within groups of similar tokens built from public text (npm start's owners' default on this task)`,
      ...figures(groups.privacy),
      ...cost(groups),
    },
    withoutGroups: {
      level: DEFAULT_LEVEL,
      setting: `${describeDefence(LEVELS[DEFAULT_LEVEL])}: a device's default where its owner loaded no groups`,
      clip: level.privacy.clip,
      ...figures(level.privacy),
      ...cost(level),
    },
  };
}
