import { combineVerdicts, judgeThreshold } from '../src/analysis/threshold-judge';

const rule = {
  max_error_rate_increase_pp: 2,
  p99_latency_ms: 500,
  min_requests: 20,
  on_no_data: 'extend-then-fail' as const,
  max_extensions: 2,
};
const s = (c: [number, number, number?], b: [number, number, number?]) => ({
  source: 'test',
  canary: { requests: c[0], errors: c[1], latencyP99Ms: c[2], latencyStat: 'p99' as const },
  baseline: { requests: b[0], errors: b[1], latencyP99Ms: b[2] },
});

test('error rate above baseline + 2 pp fails, with both values and the threshold in the reason', () => {
  const v = judgeThreshold(rule, s([100, 5], [1000, 20]), 'use1');
  expect(v).toMatchObject({ verdict: 'fail', metric: 'error_rate' });
  expect(v.reason).toBe('use1: error rate 5.00 % (canary) vs 2.00 % (baseline) > threshold 4.00 % (baseline + 2 pp)');
});

test('exactly at the threshold passes', () => {
  expect(judgeThreshold(rule, s([100, 4], [1000, 20]), 'use1').verdict).toBe('pass');
});

test('p99 latency above the SLO fails', () => {
  const v = judgeThreshold(rule, s([100, 0, 900], [1000, 0, 120]), 'use1');
  expect(v.reason).toBe('use1: p99 latency 900 ms (canary) vs 120 ms (baseline) > SLO 500 ms');
});

test('too few requests is inconclusive, never a pass and never NaN', () => {
  for (const c of [0, 19]) {
    const v = judgeThreshold(rule, s([c, 0], [0, 0]), 'use1');
    expect(v.verdict).toBe('inconclusive');
    expect(v.reason).not.toMatch(/NaN/);
  }
  expect(judgeThreshold({ ...rule, min_requests: 0 }, s([0, 0], [0, 0]), 'use1').verdict).toBe('inconclusive');
});

test('combining: any fail fails, else any inconclusive, else pass', () => {
  const pass = { verdict: 'pass' as const, reason: 'a' };
  const inc = { verdict: 'inconclusive' as const, reason: 'b' };
  const fail = { verdict: 'fail' as const, reason: 'c' };
  expect(combineVerdicts([pass, inc, fail]).reason).toBe('c');
  expect(combineVerdicts([pass, inc]).reason).toBe('b');
  expect(combineVerdicts([pass, pass]).verdict).toBe('pass');
  expect(combineVerdicts([]).verdict).toBe('inconclusive');
});
