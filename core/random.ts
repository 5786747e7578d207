/** A small seeded PRNG (mulberry32) with normal draws, so model initialisation is reproducible everywhere. */
export class Random {
  private state: number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u = 1 - this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Gamma(shape, 1) by Marsaglia and Tsang; shape < 1 through Gamma(shape + 1) * U^(1/shape). */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(1 - this.uniform(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - this.uniform();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
    }
  }

  /** A draw from the symmetric Dirichlet distribution with concentration alpha over n outcomes. */
  dirichlet(alpha: number, n: number): number[] {
    const g = Array.from({ length: n }, () => this.gamma(alpha));
    const sum = g.reduce((a, b) => a + b, 0);
    return g.map((x) => x / sum);
  }

  /** The indices 0..n-1 in a uniformly random order (Fisher-Yates, from the end). */
  shuffled(n: number): number[] {
    const idx = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    return idx;
  }

  fillNormal(out: Float32Array, std: number, mean = 0): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }
}
