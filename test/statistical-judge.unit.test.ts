/** Statistical judge: Mann-Whitney per metric, effect-size gate, weighted Kayenta-style score, reasons. */
import {
  analyzeStatistical,
  DEFAULT_STATISTICAL_CONFIG,
  judgeStatistical,
  parseStatisticalConfig,
  type StatisticalJudgeInput,
  type StatMetricInput,
} from '../src/analysis/statistical-judge';
import type { CanarySamples, RevisionSamples } from '../src/analysis/types';
import type { StatisticalJudgeSpec } from '../src/spec/schema';
import { validateSpec } from '../src/spec/validate';

/** Deterministic lognormal samples (mulberry32 + Box-Muller). */
function lognormal(seed: number, n: number, medianMs: number, sigma = 0.3): number[] {
  let a = seed >>> 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, () => {
    const z = Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
    return Math.round(medianMs * Math.exp(sigma * z) * 10) / 10;
  });
}

const rev = (requests: number, errors: number, latencies?: number[], series?: Record<string, number[]>): RevisionSamples =>
  ({ requests, errors, ...(latencies ? { latencies } : {}), ...(series ? { series } : {}) }) as RevisionSamples;
const samples = (canary: RevisionSamples, baseline: RevisionSamples): CanarySamples => ({ source: 'test', canary, baseline });
const cfg = (over: Partial<StatisticalJudgeInput> = {}): StatisticalJudgeInput => ({ ...DEFAULT_STATISTICAL_CONFIG, ...over });
const noNaN = (x: unknown) => expect(JSON.stringify(x)).not.toMatch(/NaN/);

test('healthy canary passes with score 100 and a one-line reason with both values', () => {
  const r = analyzeStatistical(cfg(), samples(rev(2000, 2, lognormal(1, 60, 120)), rev(18000, 20, lognormal(2, 60, 120))), 'eu');
  expect(r.verdict.verdict).toBe('pass');
  expect(r.score).toBe(100);
  expect(r.verdict.reason).toMatch(
    /^eu: statistical \(test\): score 100 >= pass 95 \(worse needs p < 0\.05 and a change beyond the allowed ratio\): error_rate 0\.10 % vs 0\.11 % \(x0\.9\S*, p=\S+\); latency \S+ ms vs \S+ ms \(x\S+, p=\S+\)$/,
  );
  expect(r.verdict.reason).not.toContain('\n');
  noNaN(r);
});

test('slower canary fails: reason names the metric, both medians, the allowed ratio and the p threshold', () => {
  const r = analyzeStatistical(cfg(), samples(rev(2000, 2, lognormal(3, 40, 200)), rev(18000, 20, lognormal(4, 40, 120))), 'eu');
  expect(r.verdict.verdict).toBe('fail');
  expect(r.verdict.metric).toBe('latency');
  expect(r.score).toBe(60); // errors group (60) passes, latency group (40) fails
  expect(r.groupScores).toEqual({ errors: 100, latency: 0 });
  expect(r.verdict.reason).toMatch(
    /score 60 < marginal 75: latency: canary median \d+(\.\d+)? ms vs baseline \d+(\.\d+)? ms \(x1\.\d+ > allowed x1\.1\), p=\S+ < 0\.05 \(Mann-Whitney one-sided \(higher-is-worse\), exact, n=40\/40\): worse$/,
  );
});

test('error-rate breach fails on per-request 0/1 samples (O(1) even for large counts)', () => {
  const r = analyzeStatistical(cfg(), samples(rev(1_000, 30, lognormal(5, 40, 120)), rev(2_000_000, 2_000, lognormal(6, 40, 120))), 'us');
  expect(r.verdict.verdict).toBe('fail');
  expect(r.verdict.metric).toBe('error_rate');
  expect(r.score).toBe(40);
  expect(r.verdict.reason).toContain('error_rate: canary rate 3.00 % vs baseline 0.10 % (x30 > allowed x1.1 and +0.50 pp (+2.90 pp))');
  expect(r.verdict.reason).toMatch(/asymptotic, n=1000\/2000000\): worse/);
});

test('only "worse" counts: a faster canary with fewer errors passes', () => {
  const r = analyzeStatistical(cfg(), samples(rev(5000, 0, lognormal(7, 50, 60)), rev(5000, 100, lognormal(8, 50, 120))), 't');
  expect(r.verdict.verdict).toBe('pass');
  expect(r.metrics.every((m) => m.classification === 'pass')).toBe(true);
});

test('lower-is-worse: a drop in a series (e.g. throughput) is worse; a rise is not', () => {
  const metric: StatMetricInput = {
    name: 'throughput',
    samples: 'series:rps',
    group: 'traffic',
    direction: 'lower-is-worse',
    min_samples: 5,
    allowed_change: 0.1,
    min_abs_change: 0,
    unit: 'req/s',
  };
  const c = cfg({ groups: {}, metrics: [metric] });
  const low = [50, 52, 49, 51, 48, 50.5, 47, 53];
  const high = [100, 98, 103, 99, 101, 97, 102, 100.5];
  const down = analyzeStatistical(c, samples(rev(0, 0, undefined, { rps: low }), rev(0, 0, undefined, { rps: high })), 't');
  expect(down.verdict.verdict).toBe('fail');
  expect(down.verdict.reason).toContain(
    'throughput: canary median 50.25 req/s vs baseline 100.3 req/s (x0.5012 < allowed x0.9), p=7.8e-5 < 0.05',
  );
  expect(down.metrics[0].method).toBe('exact');
  expect(down.metrics[0].shift).toBe(-50); // Hodges-Lehmann: median of pairwise differences
  expect(down.metrics[0].rankBiserial).toBe(-1); // every canary value below every baseline value
  const up = analyzeStatistical(c, samples(rev(0, 0, undefined, { rps: high }), rev(0, 0, undefined, { rps: low })), 't');
  expect(up.verdict.verdict).toBe('pass');
});

test('significant but tiny shifts pass (effect-size gate); large but noisy ones pass too', () => {
  const base = lognormal(9, 400, 100, 0.05);
  const tiny = base.map((v) => v * 1.03);
  const r = analyzeStatistical(cfg(), samples(rev(1000, 0, tiny), rev(1000, 0, base)), 't');
  const lat = r.metrics.find((m) => m.name === 'latency')!;
  expect(lat.pValue!).toBeLessThan(0.001);
  expect(lat.classification).toBe('pass');
  expect(r.verdict.verdict).toBe('pass');
  // Too few to be significant at 95 %: three values each, even though the median doubled.
  const noisy = analyzeStatistical(
    cfg({ metrics: [{ ...DEFAULT_STATISTICAL_CONFIG.metrics[1], min_samples: 3 }], groups: {} }),
    samples(rev(0, 0, [100, 400, 250]), rev(0, 0, [120, 90, 300])),
    't',
  );
  expect(noisy.verdict.verdict).toBe('pass');
  expect(noisy.verdict.reason).toMatch(
    /worse needs p < 0\.05 and a change beyond the allowed ratio\): latency 250 ms vs 120 ms \(x2\.083, p=0\.35\)$/,
  );
});

test('confidence is configurable: p between 0.01 and 0.05 is worse at 95 % and passes at 99 %', () => {
  const canary = [130, 125, 142, 118, 150, 135, 128, 140];
  const baseline = [120, 112, 131, 105, 126, 119, 133, 110];
  const metric = { ...DEFAULT_STATISTICAL_CONFIG.metrics[1], min_samples: 5 };
  const at = (confidence: number) =>
    analyzeStatistical(cfg({ confidence, groups: {}, metrics: [metric] }), samples(rev(0, 0, canary), rev(0, 0, baseline)), 't');
  const p = at(0.95).metrics[0].pValue!;
  expect(p).toBeGreaterThan(0.01);
  expect(p).toBeLessThan(0.05);
  expect(at(0.95).verdict.verdict).toBe('fail');
  expect(at(0.99).verdict.verdict).toBe('pass');
  expect(at(0.99).verdict.reason).toContain('worse needs p < 0.01');
});

test('too few samples: that metric is inconclusive with counts and minimum, never NaN', () => {
  const r = analyzeStatistical(cfg(), samples(rev(3000, 3, [100, 900, 1200]), rev(3000, 3, lognormal(10, 40, 120))), 'eu');
  expect(r.verdict.verdict).toBe('inconclusive');
  expect(r.verdict.metric).toBe('latency');
  expect(r.verdict.reason).toContain(
    'latency: no data: 3 canary / 40 baseline samples < minimum 10 per revision (test); score 100 from the other metrics',
  );
  noNaN(r);
  // Nothing at all: no requests, no latencies.
  const none = analyzeStatistical(cfg(), samples(rev(0, 0), rev(0, 0)), 'eu');
  expect(none.verdict.verdict).toBe('inconclusive');
  expect(none.score).toBeUndefined();
  expect(none.verdict.reason).toContain('error_rate: no data: 0 canary / 0 baseline requests < minimum 50');
  expect(none.verdict.reason).toContain('(+1 more: latency)');
  noNaN(none);
});

test('a source without latency samples (CloudWatch) makes the latency metric no-data with a reason naming the source', () => {
  const r = analyzeStatistical(cfg(), samples(rev(500, 1), rev(5000, 5)), 'eu');
  expect(r.verdict.verdict).toBe('inconclusive');
  expect(r.verdict.reason).toContain('latency: no data: the source (test) gave no latency samples for the canary');
});

test('missing data does not hide a breach: the metrics with data can still fail the analysis', () => {
  const r = analyzeStatistical(cfg(), samples(rev(1000, 200), rev(1000, 1)), 'eu');
  expect(r.verdict.verdict).toBe('fail');
  expect(r.score).toBe(0); // only the errors group has data
});

test('all-equal values pass with p = 1', () => {
  const c = cfg({ groups: {}, metrics: [{ ...DEFAULT_STATISTICAL_CONFIG.metrics[1], min_samples: 5 }] });
  const r = analyzeStatistical(c, samples(rev(0, 0, Array(20).fill(100)), rev(0, 0, Array(30).fill(100))), 't');
  expect(r.verdict.verdict).toBe('pass');
  expect(r.metrics[0].pValue).toBe(1);
  expect(r.metrics[0].ratio).toBe(1);
  noNaN(r);
});

test('zero baseline errors: ratio is inf, not NaN; zero on both sides is x1', () => {
  const r = analyzeStatistical(
    cfg({ groups: {}, metrics: [DEFAULT_STATISTICAL_CONFIG.metrics[0]] }),
    samples(rev(2000, 40), rev(2000, 0)),
    't',
  );
  expect(r.verdict.verdict).toBe('fail');
  expect(r.verdict.reason).toContain('canary rate 2.00 % vs baseline 0.00 % (xinf > allowed x1.1');
  const z = analyzeStatistical(
    cfg({ groups: {}, metrics: [DEFAULT_STATISTICAL_CONFIG.metrics[0]] }),
    samples(rev(2000, 0), rev(2000, 0)),
    't',
  );
  expect(z.verdict.verdict).toBe('pass');
  expect(z.metrics[0].ratio).toBe(1);
});

test('marginal score is inconclusive; pass and marginal thresholds and weights are applied', () => {
  const latency = DEFAULT_STATISTICAL_CONFIG.metrics[1];
  const c = cfg({
    groups: { errors: 50, latency: 10, cpu: 40 },
    metrics: [
      DEFAULT_STATISTICAL_CONFIG.metrics[0],
      latency,
      {
        name: 'cpu',
        samples: 'series:cpu',
        group: 'cpu',
        direction: 'higher-is-worse',
        min_samples: 5,
        allowed_change: 0.1,
        min_abs_change: 0,
      },
    ],
  });
  const s = samples(
    rev(5000, 5, lognormal(11, 30, 300), { cpu: [0.3, 0.31, 0.29, 0.3, 0.32, 0.3] }),
    rev(5000, 5, lognormal(12, 30, 100), { cpu: [0.3, 0.3, 0.31, 0.29, 0.3, 0.31] }),
  );
  const r = analyzeStatistical(c, s, 't');
  expect(r.score).toBe(90);
  expect(r.verdict.verdict).toBe('inconclusive');
  expect(r.verdict.reason).toMatch(/marginal: score 90 < pass 95 \(>= marginal 75\): latency: canary median/);
  // The activity's entry point takes the spec's rollback.judge as it is (kind included).
  const spec = (over: Partial<StatisticalJudgeInput>) => ({ kind: 'statistical' as const, ...parseStatisticalConfig({ ...c, ...over }) });
  expect(judgeStatistical(spec({ pass_score: 90 }), s, 't').verdict).toBe('pass');
  expect(judgeStatistical(spec({ marginal_score: 91, pass_score: 95 }), s, 't').verdict).toBe('fail');
});

test('a worse critical metric fails whatever the score', () => {
  const latency = { ...DEFAULT_STATISTICAL_CONFIG.metrics[1], critical: true };
  const c = cfg({
    groups: { errors: 99, latency: 1 },
    marginal_score: 0,
    pass_score: 0,
    metrics: [DEFAULT_STATISTICAL_CONFIG.metrics[0], latency],
  });
  const r = analyzeStatistical(c, samples(rev(5000, 5, lognormal(13, 30, 300)), rev(5000, 5, lognormal(14, 30, 100))), 't');
  expect(r.verdict.verdict).toBe('fail');
  expect(r.score).toBe(0);
  expect(r.verdict.reason).toContain('critical metric worse, score 0: latency: canary median');
});

test("config validation names every problem, with the spec schema's own paths and messages (one definition)", () => {
  expect(parseStatisticalConfig(DEFAULT_STATISTICAL_CONFIG)).toEqual(DEFAULT_STATISTICAL_CONFIG);
  expect(() =>
    parseStatisticalConfig({
      confidence: 1.2,
      pass_score: 50,
      marginal_score: 60,
      groups: { errors: 0 },
      metrics: [DEFAULT_STATISTICAL_CONFIG.metrics[0], DEFAULT_STATISTICAL_CONFIG.metrics[1], DEFAULT_STATISTICAL_CONFIG.metrics[1]],
    }),
  ).toThrow(
    'statistical judge config: confidence: Number must be less than 1; marginal_score: must be <= pass_score; ' +
      'metrics.1.group: group "latency" has no weight in groups; metrics.2.name: duplicate metric "latency"; ' +
      'metrics.2.group: group "latency" has no weight in groups; groups: at least one weight must be > 0',
  );
});

test("the judge's defaults are the spec's: `judge: { kind: statistical }` alone validates to DEFAULT_STATISTICAL_CONFIG", () => {
  const { kind, ...config } = validateSpec({
    service: 'checkout',
    release: 'r42',
    schema_rev: 7,
    artifact: { file: './fn.zip' },
    targets: [{ name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: 'checkout', alias: 'live' }],
    canary: { targets: ['use1'], weight: 10, bake: '5 minutes' },
    waves: [],
    rollback: { judge: { kind: 'statistical' }, on_no_data: 'synthetic' }, // latency samples need synthetic traffic on Lambda
  }).rollback.judge as StatisticalJudgeSpec;
  expect(kind).toBe('statistical');
  expect(config).toEqual(DEFAULT_STATISTICAL_CONFIG);
});
