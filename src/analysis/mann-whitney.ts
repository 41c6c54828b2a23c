/**
 * Mann-Whitney U test (Wilcoxon rank-sum) of sample x (the canary) against sample y (the baseline),
 * computed the way scipy.stats.mannwhitneyu does, so its results can be checked against scipy
 * (test/fixtures/mann-whitney.json, made by test/fixtures/generate-mann-whitney.py).
 *
 * - U is U1, the statistic of x: the number of pairs (xi, yj) with xi > yj, ties counting 1/2.
 * - alternative "greater": x is stochastically greater than y (p from U1); "less": smaller (p from
 *   U2 = n1*n2 - U1); "two-sided": 2 * the smaller tail, capped at 1.
 * - Method. "exact" counts the null distribution of U (all C(n1+n2, n1) orderings equally likely)
 *   and is used when there are no ties and both samples have at most EXACT_MAX_N values. Otherwise
 *   "asymptotic": the normal approximation with the tie correction of the variance
 *   (sigma^2 = n1*n2/12 * ((n+1) - sum(t^3 - t) / (n(n-1))), t = size of each tie group) and a
 *   continuity correction of 0.5. scipy's "auto" is stricter (exact only when one sample has <= 8
 *   values); we go up to 50 because the exact distribution is cheap there (<= 2,500 values of U,
 *   built with additions only, so no cancellation) and the normal approximation is visibly off
 *   in the tails for n of 10-20. The exact distribution assumes no ties, which is why ties always
 *   use the asymptotic method (as in scipy).
 * - Degenerate input: when every value is equal the variance is 0; the p-value is 1 (no evidence
 *   of a difference), never NaN. Empty samples or non-finite values are a RangeError.
 */

export type Alternative = 'two-sided' | 'greater' | 'less';
export type Method = 'exact' | 'asymptotic';

/** Largest sample size (each side) for which the exact distribution is used when there are no ties. */
export const EXACT_MAX_N = 50;

export interface MannWhitneyResult {
  /** U1, the statistic of x (the first sample). */
  u: number;
  pValue: number;
  method: Method;
  alternative: Alternative;
  n1: number;
  n2: number;
  /** True when any value occurs more than once in the combined sample. */
  ties: boolean;
  /** Standardized statistic (asymptotic method only). */
  z?: number;
  /** Rank-biserial correlation 2*U1/(n1*n2) - 1, in [-1, 1]: > 0 means x tends to be larger. */
  rankBiserial: number;
  /** Common-language effect size U1/(n1*n2): P(X > Y) + P(X = Y)/2. */
  probabilityOfSuperiority: number;
}

export interface MannWhitneyOptions {
  alternative?: Alternative;
  /** Force a method (default: exact when no ties and both n <= EXACT_MAX_N, else asymptotic). */
  method?: Method;
  /** Continuity correction for the asymptotic method (default true, as in scipy). */
  continuity?: boolean;
}

function checkSample(name: string, s: readonly number[]): void {
  if (s.length === 0) throw new RangeError(`Mann-Whitney: sample ${name} is empty`);
  for (const v of s) if (!Number.isFinite(v)) throw new RangeError(`Mann-Whitney: sample ${name} contains a non-finite value (${v})`);
}

/** Sum of the (average) ranks of x in the combined sample, and the tie term sum(t^3 - t). */
export function rankSum(x: readonly number[], y: readonly number[]): { r1: number; tieTerm: number; ties: boolean } {
  const all: { v: number; fromX: boolean }[] = [];
  for (const v of x) all.push({ v, fromX: true });
  for (const v of y) all.push({ v, fromX: false });
  all.sort((a, b) => a.v - b.v);
  let r1 = 0;
  let tieTerm = 0;
  let ties = false;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++;
    const t = j - i + 1;
    const avgRank = (i + 1 + (j + 1)) / 2; // ranks are 1-based
    for (let k = i; k <= j; k++) if (all[k].fromX) r1 += avgRank;
    if (t > 1) {
      ties = true;
      tieTerm += t * t * t - t;
    }
    i = j + 1;
  }
  return { r1, tieTerm, ties };
}

export function mannWhitneyU(x: readonly number[], y: readonly number[], opts: MannWhitneyOptions = {}): MannWhitneyResult {
  checkSample('x', x);
  checkSample('y', y);
  const n1 = x.length;
  const n2 = y.length;
  const { r1, tieTerm, ties } = rankSum(x, y);
  const u1 = r1 - (n1 * (n1 + 1)) / 2;
  return fromU(u1, n1, n2, tieTerm, ties, opts);
}

/**
 * The same test for 0/1 samples given as counts (x: `ones1` of `n1` are 1, y: `ones2` of `n2`),
 * in O(1), for per-request error indicators where n may be millions. Always has ties when n > 2,
 * so it is asymptotic (exact only for the rare tie-free case, e.g. one value per side).
 */
export function mannWhitneyBinary(ones1: number, n1: number, ones2: number, n2: number, opts: MannWhitneyOptions = {}): MannWhitneyResult {
  for (const [k, n, name] of [
    [ones1, n1, 'x'],
    [ones2, n2, 'y'],
  ] as const) {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Mann-Whitney: sample ${name} size must be a positive integer (got ${n})`);
    if (!Number.isInteger(k) || k < 0 || k > n)
      throw new RangeError(`Mann-Whitney: sample ${name} count of ones must be an integer in 0..${n} (got ${k})`);
  }
  const zeros = n1 + n2 - ones1 - ones2;
  const ones = ones1 + ones2;
  const rankZero = (zeros + 1) / 2;
  const rankOne = zeros + (ones + 1) / 2;
  const r1 = (n1 - ones1) * rankZero + ones1 * rankOne;
  const u1 = r1 - (n1 * (n1 + 1)) / 2;
  const tieTerm = zeros * zeros * zeros - zeros + (ones * ones * ones - ones);
  const ties = zeros > 1 || ones > 1;
  return fromU(u1, n1, n2, tieTerm, ties, opts);
}

function fromU(u1: number, n1: number, n2: number, tieTerm: number, ties: boolean, opts: MannWhitneyOptions): MannWhitneyResult {
  const alternative = opts.alternative ?? 'two-sided';
  const method: Method = opts.method ?? (!ties && n1 <= EXACT_MAX_N && n2 <= EXACT_MAX_N ? 'exact' : 'asymptotic');
  const u2 = n1 * n2 - u1;
  const [u, factor] = alternative === 'greater' ? [u1, 1] : alternative === 'less' ? [u2, 1] : [Math.max(u1, u2), 2];
  let p: number;
  let z: number | undefined;
  if (method === 'exact') {
    if (ties) throw new RangeError('Mann-Whitney: the exact method assumes no ties; use the asymptotic method');
    p = exactSf(n1, n2, Math.round(u));
  } else {
    const n = n1 + n2;
    const mu = (n1 * n2) / 2;
    const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
    if (!(variance > 0)) {
      p = 1; // all values equal: no evidence either way
    } else {
      z = (u - mu - (opts.continuity === false ? 0 : 0.5)) / Math.sqrt(variance);
      p = normalSf(z);
    }
  }
  p = Math.min(1, Math.max(0, p * factor));
  const probabilityOfSuperiority = u1 / (n1 * n2);
  return {
    u: u1,
    pValue: p,
    method,
    alternative,
    n1,
    n2,
    ties,
    ...(z !== undefined ? { z } : {}),
    rankBiserial: 2 * probabilityOfSuperiority - 1,
    probabilityOfSuperiority,
  };
}

const exactCache = new Map<string, Float64Array>();

/**
 * Number of orderings of n1 x's and n2 y's per value of U (pairs with x > y), for u = 0..n1*n2.
 * The largest element is an x (beating all j y's: U grows by j) or a y, so
 * f(i, j, u) = f(i-1, j, u-j) + f(i, j-1, u). Additions only; counts up to C(100, 50) ~ 1e29 stay
 * accurate to double precision relative error.
 */
export function exactUFrequencies(n1: number, n2: number): Float64Array {
  const key = `${n1},${n2}`;
  const hit = exactCache.get(key);
  if (hit) return hit;
  if (n1 > EXACT_MAX_N || n2 > EXACT_MAX_N) throw new RangeError(`Mann-Whitney: exact distribution only up to n = ${EXACT_MAX_N}`);
  const maxU = n1 * n2;
  // prev[i] = f(i, j-1, .), cur[i] = f(i, j, .)
  let prev: Float64Array[] = [];
  for (let i = 0; i <= n1; i++) {
    const a = new Float64Array(maxU + 1);
    a[0] = 1; // j = 0: no y's, U = 0
    prev.push(a);
  }
  for (let j = 1; j <= n2; j++) {
    const cur: Float64Array[] = [];
    for (let i = 0; i <= n1; i++) {
      const a = new Float64Array(maxU + 1);
      const fromY = prev[i];
      if (i === 0) a[0] = 1;
      else {
        const fromX = cur[i - 1];
        const top = i * j;
        for (let u = 0; u <= top; u++) a[u] = fromY[u] + (u >= j ? fromX[u - j] : 0);
      }
      cur.push(a);
    }
    prev = cur;
  }
  const out = prev[n1];
  if (exactCache.size > 64) exactCache.clear();
  exactCache.set(key, out);
  return out;
}

/** P(U >= u) under the null, exactly. */
function exactSf(n1: number, n2: number, u: number): number {
  const f = exactUFrequencies(n1, n2);
  let total = 0;
  let tail = 0;
  for (let k = 0; k < f.length; k++) {
    total += f[k];
    if (k >= u) tail += f[k];
  }
  return tail / total;
}

/**
 * erfc(x) to ~1e-15 relative error without tables: for |x| < 2.5 the series
 * erf(x) = 2/sqrt(pi) * exp(-x^2) * sum 2^n x^(2n+1) / (1*3*...*(2n+1)) (positive terms only),
 * beyond that the continued fraction erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).
 */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x === Infinity) return 0;
  if (x === -Infinity) return 2;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 0; n < 200; n++) {
      term *= (2 * x * x) / (2 * n + 3);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  }
  // Modified Lentz for the continued fraction x + a1/(x + a2/(x + ...)), a_k = k/2.
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** P(Z > z) for a standard normal Z. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/**
 * Hodges-Lehmann estimate of the shift of x relative to y: the median of all pairwise differences
 * xi - yj. O(n1*n2) memory, so undefined above `maxPairs` pairs (default 1e6).
 */
export function hodgesLehmann(x: readonly number[], y: readonly number[], maxPairs = 1_000_000): number | undefined {
  if (x.length === 0 || y.length === 0 || x.length * y.length > maxPairs) return undefined;
  const d = new Float64Array(x.length * y.length);
  let k = 0;
  for (const a of x) for (const b of y) d[k++] = a - b;
  d.sort();
  const m = d.length >> 1;
  return d.length % 2 ? d[m] : (d[m - 1] + d[m]) / 2;
}

export function median(s: readonly number[]): number | undefined {
  if (s.length === 0) return undefined;
  const a = Float64Array.from(s).sort();
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

export function mean(s: readonly number[]): number | undefined {
  if (s.length === 0) return undefined;
  let t = 0;
  for (const v of s) t += v;
  return t / s.length;
}

/** Nearest-rank quantile (q in 0..1) of raw samples. */
export function quantile(s: readonly number[], q: number): number | undefined {
  if (s.length === 0) return undefined;
  const a = Float64Array.from(s).sort();
  const idx = Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1));
  return a[idx];
}
