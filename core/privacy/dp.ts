/**
 * Differential-privacy accounting for the device's noise: the analytic Gaussian mechanism (Balle and Wang, ICML
 * 2018), the calibration DP-Forward (CCS 2023) uses. It is exact for every epsilon, where the classic
 * sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon holds only below epsilon 1 and overstates the noise.
 */

/** log of the standard normal CDF, accurate far into the lower tail (where delta lives). */
export function logNormalCdf(z: number): number {
  return Math.log(0.5) + logErfc(-z / Math.SQRT2);
}

/** Complementary error function. */
export function erfc(x: number): number {
  return Math.exp(logErfc(x));
}

/** log erfc(x): the Maclaurin series of erf near 0, the continued fraction of erfc beyond 2.5. */
function logErfc(x: number): number {
  if (x < 0) return Math.log(2 - Math.exp(logErfc(-x)));
  if (x < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return Math.log(1 - (2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc(x) = exp(-x^2) / (sqrt(pi) K(x)), K the continued fraction x + (1/2) / (x + 1 / (x + (3/2) / ...)).
  let k = x;
  for (let n = 80; n >= 1; n--) k = x + n / 2 / k;
  return -x * x - 0.5 * Math.log(Math.PI) - Math.log(k);
}

/**
 * The smallest delta for which adding N(0, sigma^2 I) to a query of L2 sensitivity `sensitivity` is
 * (epsilon, delta)-DP: Phi(s / 2sigma - epsilon sigma / s) - e^epsilon Phi(-s / 2sigma - epsilon sigma / s).
 */
export function gaussianDelta(epsilon: number, sigma: number, sensitivity: number): number {
  const a = sensitivity / (2 * sigma);
  const b = (epsilon * sigma) / sensitivity;
  return Math.exp(logNormalCdf(a - b)) - Math.exp(epsilon + logNormalCdf(-a - b));
}

/** The least sigma that makes the Gaussian mechanism (epsilon, delta)-DP for this sensitivity. */
export function gaussianSigma(epsilon: number, delta: number, sensitivity: number): number {
  if (!(epsilon > 0) || !(delta > 0 && delta < 1) || !(sensitivity > 0))
    throw new RangeError(`gaussianSigma: epsilon ${epsilon} and sensitivity ${sensitivity} must be > 0, delta ${delta} in (0, 1)`);
  // delta falls as sigma grows: bisect log(sigma).
  let [lo, hi] = [Math.log(sensitivity * 1e-6), Math.log(sensitivity * 1e6)];
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (gaussianDelta(epsilon, Math.exp(mid), sensitivity) > delta) lo = mid;
    else hi = mid;
  }
  return Math.exp(hi);
}

/** The least epsilon that Gaussian noise of this sigma buys at this delta (the inverse of gaussianSigma). */
export function gaussianEpsilon(sigma: number, delta: number, sensitivity: number): number {
  if (gaussianDelta(0, sigma, sensitivity) <= delta) return 0;
  let [lo, hi] = [0, 1];
  while (gaussianDelta(hi, sigma, sensitivity) > delta) hi *= 2;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (gaussianDelta(mid, sigma, sensitivity) > delta) lo = mid;
    else hi = mid;
  }
  return hi;
}
