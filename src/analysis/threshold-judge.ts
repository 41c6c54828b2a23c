/**
 * The seed's rollback rule: canary error rate > baseline error rate + N percentage points, or
 * canary p99 latency > SLO, is a breach. Too few canary requests is "no data": inconclusive,
 * never a silent pass and never a NaN.
 */
import type { RollbackRule } from '../spec/schema';
import type { Verdict } from '../contract';
import type { CanarySamples } from './types';

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
/** Request counts: integers as they are; extrapolated ones (Prometheus increase()) with one decimal. */
const count = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

export type ThresholdRule = Pick<RollbackRule, 'max_error_rate_increase_pp' | 'p99_latency_ms' | 'min_requests'>;

export function judgeThreshold(rule: ThresholdRule, s: CanarySamples, target: string): Verdict {
  const { canary, baseline } = s;
  if (canary.requests < rule.min_requests || canary.requests === 0) {
    return {
      verdict: 'inconclusive',
      target,
      metric: 'requests',
      reason: `${target}: no data: ${count(canary.requests)} canary requests < minimum ${rule.min_requests} (${s.source})`,
    };
  }
  const canaryRate = canary.errors / canary.requests;
  const baseRate = baseline.requests > 0 ? baseline.errors / baseline.requests : 0;
  const limit = baseRate + rule.max_error_rate_increase_pp / 100;
  const rates = { canaryErrorRate: canaryRate, baselineErrorRate: baseRate };
  if (canaryRate > limit) {
    return {
      verdict: 'fail',
      target,
      metric: 'error_rate',
      ...rates,
      reason: `${target}: error rate ${pct(canaryRate)} (canary${canary.throttled ? `, ${count(canary.throttled)} of ${count(canary.requests)} requests throttled` : ''}) vs ${pct(baseRate)} (baseline) > threshold ${pct(limit)} (baseline + ${rule.max_error_rate_increase_pp} pp)`,
    };
  }
  if (rule.p99_latency_ms !== undefined && canary.latencyP99Ms !== undefined && canary.latencyP99Ms > rule.p99_latency_ms) {
    const stat = canary.latencyStat ?? 'p99';
    return {
      verdict: 'fail',
      target,
      metric: 'latency_p99',
      ...rates,
      reason: `${target}: ${stat} latency ${canary.latencyP99Ms.toFixed(0)} ms (canary) vs ${baseline.latencyP99Ms?.toFixed(0) ?? 'n/a'} ms (baseline) > SLO ${rule.p99_latency_ms} ms`,
    };
  }
  return {
    verdict: 'pass',
    target,
    metric: 'error_rate',
    ...rates,
    reason: `${target}: error rate ${pct(canaryRate)} (canary, ${count(canary.requests)} req) vs ${pct(baseRate)} (baseline) <= threshold ${pct(limit)}${
      canary.latencyP99Ms !== undefined && rule.p99_latency_ms !== undefined
        ? `; ${canary.latencyStat ?? 'p99'} ${canary.latencyP99Ms.toFixed(0)} ms <= SLO ${rule.p99_latency_ms} ms`
        : ''
    }`,
  };
}

/** Several targets' verdicts: any fail fails; else any inconclusive is inconclusive; else pass. */
export function combineVerdicts(verdicts: Verdict[]): Verdict {
  const fail = verdicts.find((v) => v.verdict === 'fail');
  if (fail) return fail;
  const inc = verdicts.find((v) => v.verdict === 'inconclusive');
  if (inc) return inc;
  if (verdicts.length === 0) return { verdict: 'inconclusive', reason: 'no targets analysed' };
  return { verdict: 'pass', reason: verdicts.map((v) => v.reason).join('; ') };
}
