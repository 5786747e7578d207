/**
 * Pretraining of a small base model: every weight of a small GPT-2 trained as a causal language model on unlabeled
 * text (the training sentences of the tasks), so that the frozen layers of the experiments carry learned features.
 * The softmax runs over the corpus's most frequent tokens only (rarer ones share one input row and are not
 * predicted): with GPT-2's 50,257-token vocabulary the output layer would cost several times the rest of the model.
 * Rows of tokens outside that set keep their initial values in the saved model.
 */
import * as tf from '@tensorflow/tfjs';
import { gpt2Config, type GPT2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import type { GPT2Model } from '../core/model/gpt2/weights.ts';
import { Random } from '../core/random.ts';
import { END_OF_TEXT, GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { TrainableGPT2 } from '../gpu-server/backends/tfjs/gpt2-trainable.ts';
import { AdamW } from '../gpu-server/train/adamw.ts';
import { lmLoss } from '../gpu-server/train/lm.ts';
import { learningRate } from '../gpu-server/train/schedule.ts';

export interface PretrainOptions {
  config: Pick<GPT2Config, 'nLayer' | 'nEmbd' | 'nHead'> & { nPositions?: number };
  seqLen: number;
  batchSize: number;
  steps: number;
  lr: number;
  /** Tokens the output layer predicts: the corpus's most frequent ones. */
  vocab: number;
  seed: number;
  /** Share of the packed sequences held out for the validation loss. */
  holdout?: number;
  onProgress?: (p: { step: number; loss: number; tokensPerSecond: number }) => void;
}

export interface PretrainReport {
  steps: number;
  corpus: { documents: number; tokens: number; distinctTokens: number; predictedTokens: number };
  trainLoss: number[];
  validationLoss: { before: number; after: number };
  tokensPerSecond: number;
}

export function pretrain(texts: readonly string[], o: PretrainOptions): { model: GPT2Model; report: PretrainReport } {
  const tokenizer = new GPT2Tokenizer();
  const config = gpt2Config({ ...o.config, nPositions: o.config.nPositions ?? o.seqLen, nInner: 4 * o.config.nEmbd, numLabels: 2 });
  const base = initModel(config, { seed: o.seed });

  // The corpus as one stream of documents separated by <|endoftext|>, in GPT-2 ids.
  const stream: number[] = [];
  for (const t of texts) stream.push(...tokenizer.encode(t), END_OF_TEXT);
  const counts = new Map<number, number>();
  for (const id of stream) counts.set(id, (counts.get(id) ?? 0) + 1);
  const kept = [...counts]
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .slice(0, o.vocab - 1)
    .map(([id]) => id);
  const compact = new Map(kept.map((id, i) => [id, i]));
  const RARE = kept.length;

  // A model over the compact vocabulary: its rows are the full model's rows of the kept tokens.
  const d = config.nEmbd;
  const fullWte = base.params.get('wte.weight')!;
  const wte = new Float32Array((kept.length + 1) * d);
  kept.forEach((id, i) => wte.set(fullWte.subarray(id * d, (id + 1) * d), i * d));
  const params = new Map(base.params);
  params.set('wte.weight', wte);
  params.delete('score.weight');
  const small: GPT2Model = { config: { ...config, vocabSize: kept.length + 1, padTokenId: compact.get(END_OF_TEXT)! }, params };

  const ids = Int32Array.from(stream, (id) => compact.get(id) ?? RARE);
  const sequences = Math.floor(ids.length / o.seqLen);
  const order = new Random(o.seed).shuffled(sequences);
  const held = Math.max(1, Math.round(sequences * (o.holdout ?? 0.02)));
  const validation = order.slice(0, held);
  const training = order.slice(held);
  if (training.length < o.batchSize)
    throw new Error(`the corpus makes ${training.length} training sequences of ${o.seqLen} tokens; a batch needs ${o.batchSize}`);

  const net = new TrainableGPT2(small);
  const vars = [...net.variables().values()];
  const opt = new AdamW({ weightDecay: 0.01, clipNorm: 1 });
  const batch = (seqs: number[]) => {
    const data = new Int32Array(seqs.length * o.seqLen);
    seqs.forEach((s, r) => data.set(ids.subarray(s * o.seqLen, (s + 1) * o.seqLen), r * o.seqLen));
    // Rare tokens are inputs but not targets: the mask hides them from the loss, not from attention.
    const targetMask = Int32Array.from(data, (id) => (id === RARE ? 0 : 1));
    return { ids: tf.tensor2d(data, [seqs.length, o.seqLen], 'int32'), mask: tf.tensor2d(targetMask, [seqs.length, o.seqLen], 'int32') };
  };
  const validationLoss = () => {
    let sum = 0;
    for (let i = 0; i < validation.length; i += o.batchSize) {
      const b = batch(validation.slice(i, i + o.batchSize));
      sum += tf.tidy(() => lmLoss(net, b.ids, b.mask).dataSync()[0]) * Math.min(o.batchSize, validation.length - i);
      tf.dispose([b.ids, b.mask]);
    }
    return sum / validation.length;
  };
  // Every position attends to every earlier one: padding never occurs in packed sequences, so the mask given to
  // the model is all ones, and the loss mask (rare targets) is applied separately.
  const before = validationLoss();
  const losses: number[] = [];
  const started = performance.now();
  for (let step = 0; step < o.steps; step++) {
    const at = (step * o.batchSize) % (training.length - o.batchSize + 1);
    const b = batch(training.slice(at, at + o.batchSize));
    const { value, grads } = tf.variableGrads(() => lmLoss(net, b.ids, b.mask), vars);
    const lr = learningRate({ lr: o.lr, warmupSteps: Math.min(20, Math.ceil(o.steps / 10)), kind: 'cosine', totalSteps: o.steps }, step);
    tf.dispose(Object.values(opt.apply(vars, grads, lr)));
    losses.push(value.dataSync()[0]);
    tf.dispose([value, b.ids, b.mask, ...Object.values(grads)]);
    o.onProgress?.({ step: step + 1, loss: losses[step], tokensPerSecond: ((step + 1) * o.batchSize * o.seqLen) / ((performance.now() - started) / 1000) });
  }
  const tokensPerSecond = (o.steps * o.batchSize * o.seqLen) / ((performance.now() - started) / 1000);
  const after = validationLoss();

  // Back to GPT-2's vocabulary: trained rows for the kept tokens, initial rows for the rest.
  const trained = net.variables();
  const out = new Map(base.params);
  for (const [name, t] of trained) if (name !== 'wte.weight') out.set(name, t.dataSync() as Float32Array);
  const trainedWte = trained.get('wte.weight')!.dataSync() as Float32Array;
  const full = Float32Array.from(fullWte);
  kept.forEach((id, i) => full.set(trainedWte.subarray(i * d, (i + 1) * d), id * d));
  out.set('wte.weight', full);
  net.dispose();
  opt.dispose();
  return {
    model: { config, params: out },
    report: {
      steps: o.steps,
      corpus: { documents: texts.length, tokens: stream.length, distinctTokens: counts.size, predictedTokens: kept.length },
      trainLoss: losses,
      validationLoss: { before, after },
      tokensPerSecond: Math.round(tokensPerSecond),
    },
  };
}
