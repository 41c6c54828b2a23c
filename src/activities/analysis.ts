import { ApplicationFailure } from '@temporalio/activity';
import type { RollbackRule, TargetSpec } from '../spec/schema';
import { judgeThreshold } from '../analysis/threshold-judge';
import type { Verdict } from '../workflows/messages';
import type { ActivityDeps } from './deps';

export interface AnalysisTarget {
  target: TargetSpec;
  stableVersion: string;
  newVersion: string;
}

export function analysisActivities(deps: ActivityDeps) {
  const providerFor = (t: TargetSpec) => {
    const m = deps.metrics.find((p) => p.supports(t));
    if (!m) throw ApplicationFailure.nonRetryable(`no metric provider configured for ${t.provider} target ${t.name}`, 'NoMetricProvider');
    return m;
  };
  return {
    /** Every metric source answers for the stable revision before any traffic moves. */
    async preflightMetrics(input: { targets: AnalysisTarget[] }): Promise<string[]> {
      const out: string[] = [];
      for (const t of input.targets) {
        const m = providerFor(t.target);
        try {
          await m.preflight(t.target, t.stableVersion);
        } catch (err) {
          throw ApplicationFailure.nonRetryable(
            `metrics preflight failed for ${t.target.name} (${m.name}): ${(err as Error).message}`,
            'MetricsPreflight',
          );
        }
        out.push(`${t.target.name}: ${m.name} ok`);
      }
      return out;
    },

    /** One verdict per target over [startMs, now]. */
    async analyzeCanary(input: { targets: AnalysisTarget[]; rule: RollbackRule; startMs: number }): Promise<Verdict[]> {
      const endMs = Date.now() + 60_000; // include samples stamped up to a minute ahead (clock skew)
      return Promise.all(
        input.targets.map(async (t) => {
          const samples = await providerFor(t.target).collect({
            target: t.target,
            canaryVersion: t.newVersion,
            baselineVersion: t.stableVersion,
            startMs: input.startMs,
            endMs,
          });
          return { ...judgeThreshold(input.rule, samples, t.target.name), atMs: Date.now() };
        }),
      );
    },
  };
}
