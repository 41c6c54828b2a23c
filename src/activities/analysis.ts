/**
 * Canary analysis: pick each target's metric source from the spec (native CloudWatch / Cloud
 * Monitoring, Prometheus, or synthetic traffic), judge the samples (threshold rule or statistical),
 * and fold in the custom checks. One verdict per target.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { RollbackRule, TargetSpec } from '../spec/schema';
import { durationMs } from '../spec/duration';
import { combineVerdicts, judgeThreshold } from '../analysis/threshold-judge';
import { judgeStatistical } from '../analysis/statistical-judge';
import { PrometheusMetrics } from '../analysis/prometheus';
import { SyntheticTraffic, httpEndpoints, lambdaEndpoints } from '../analysis/synthetic';
import { preflightCustomCheck, runCustomChecks, type CustomCheckSpec } from '../analysis/custom-check';
import type { CanarySamples, MetricProvider } from '../analysis/types';
import { NonRetryableProviderError } from '../providers/types';
import type { Verdict } from '../contract';
import { nativeMetricSource, providerFor, urlPolicyOf, type ActivityDeps } from './deps';
import { mapProviderErrors, withHeartbeat } from './heartbeat';

export interface AnalysisTarget {
  target: TargetSpec;
  stableVersion: string;
  newVersion: string;
  /**
   * Where the baseline comes from when the stable version no longer serves (the step at 100 %):
   * the window before the shift. Without it the baseline is the stable version in the same window.
   */
  baselineWindow?: { startMs: number; endMs: number };
}

const seconds = (d: string | undefined) => (d === undefined ? undefined : Math.round((durationMs(d) ?? 0) / 1000));

/** Every reason names where its numbers come from ("cloudwatch us-east-1", "synthetic 50 requests/revision; ..."). */
function withSource(v: Verdict, source: string): Verdict {
  return v.reason.includes(source) ? v : { ...v, reason: `${v.reason} [${source}]` };
}

/**
 * A source that answers with a final error (bad query, permission, missing resource) fails the
 * stage at once; a transient one (throttling, 5xx, a timeout) is retried by the activity's policy.
 */
function preflightFailure(what: string, err: unknown): ApplicationFailure {
  const e = err as Error;
  const final = err instanceof NonRetryableProviderError || (err instanceof ApplicationFailure && err.nonRetryable);
  const message = `${what}: ${e.message}`;
  return final
    ? ApplicationFailure.nonRetryable(message, 'MetricsPreflight')
    : ApplicationFailure.retryable(message, 'MetricsPreflightUnavailable');
}

export function analysisActivities(deps: ActivityDeps) {
  const prometheus = new Map<string, PrometheusMetrics>();

  function syntheticSource(rule: RollbackRule, t: TargetSpec): SyntheticTraffic {
    const cfg = rule.metrics[t.provider].synthetic;
    const timeoutMs = durationMs(cfg.timeout);
    const resolve =
      t.provider === 'aws-lambda'
        ? lambdaEndpoints({ ...deps.synthetic?.lambda, payload: cfg.payload, timeoutMs, expectContains: cfg.expect_contains })
        : httpEndpoints({
            url: async (target, version) => {
              const p = providerFor(deps, target);
              if (!p.revisionUrl)
                throw ApplicationFailure.nonRetryable(`${target.provider} cannot address a single revision`, 'NoRevisionUrl');
              const url = `${await p.revisionUrl(target, version)}${cfg.path}`;
              return deps.synthetic?.httpUrlRewrite ? deps.synthetic.httpUrlRewrite(url) : url;
            },
            timeoutMs,
            expectContains: cfg.expect_contains,
          });
    return new SyntheticTraffic({ resolve, requests: cfg.requests, concurrency: cfg.concurrency, timeoutMs });
  }

  function sourceFor(rule: RollbackRule, t: TargetSpec): MetricProvider {
    const m = rule.metrics[t.provider];
    if (m.source === 'synthetic') return syntheticSource(rule, t);
    if (m.source === 'prometheus') {
      const cfg = m.prometheus!;
      // Every option shapes the answers: two specs differing only in step or window must not share an instance.
      const key = JSON.stringify([t.provider, cfg]);
      let p = prometheus.get(key);
      if (!p) {
        p = new PrometheusMetrics({
          url: cfg.url,
          queries: { [t.provider]: { requests: cfg.requests, errors: cfg.errors, latency_p99_ms: cfg.latency_p99_ms } },
          stepSeconds: seconds(cfg.step),
          rangeWindowSeconds: seconds(cfg.range_window),
          minWindowSeconds: seconds(cfg.min_window),
          policy: urlPolicyOf(deps),
        });
        prometheus.set(key, p);
      }
      return p;
    }
    return nativeMetricSource(deps, t);
  }

  function judge(rule: RollbackRule, samples: CanarySamples, target: string): Verdict {
    return rule.judge.kind === 'statistical' ? judgeStatistical(rule.judge, samples, target) : judgeThreshold(rule, samples, target);
  }

  function checksFor(rule: RollbackRule, t: TargetSpec): CustomCheckSpec[] {
    return rule.custom_checks
      .filter((c) => !c.targets || c.targets.includes(t.name))
      .map((c) => ({
        name: c.name,
        url: c.url,
        json_path: c.json_path,
        threshold: c.threshold,
        direction: c.direction,
        timeout_ms: durationMs(c.timeout),
        policy: urlPolicyOf(deps),
      }));
  }

  return {
    /** Every metric source and custom check answers for the stable revision before any traffic moves. */
    async preflightMetrics(input: { targets: AnalysisTarget[]; rule: RollbackRule }): Promise<string[]> {
      return withHeartbeat(async () => {
        const out: string[] = [];
        for (const t of input.targets) {
          const sources = [sourceFor(input.rule, t.target)];
          if (input.rule.on_no_data === 'synthetic' && input.rule.metrics[t.target.provider].source !== 'synthetic')
            sources.push(syntheticSource(input.rule, t.target));
          for (const m of sources) {
            try {
              await m.preflight(t.target, t.stableVersion);
            } catch (err) {
              throw preflightFailure(`metrics preflight failed for ${t.target.name} (${m.name})`, err);
            }
            out.push(`${t.target.name}: ${m.name} ok`);
          }
          for (const c of checksFor(input.rule, t.target)) {
            try {
              await preflightCustomCheck(c, t.target, t.stableVersion);
            } catch (err) {
              throw ApplicationFailure.nonRetryable(
                `custom check ${c.name} preflight failed for ${t.target.name}: ${(err as Error).message}`,
                'MetricsPreflight',
              );
            }
            out.push(`${t.target.name}: check ${c.name} ok`);
          }
        }
        return out;
      });
    },

    /**
     * One verdict per target over [startMs, now]: the judge's verdict on the configured source (or
     * synthetic traffic, when `synthetic` is set by the no-data policy) combined with the custom checks.
     */
    async analyzeCanary(input: {
      targets: AnalysisTarget[];
      rule: RollbackRule;
      startMs: number;
      synthetic?: boolean;
    }): Promise<Verdict[]> {
      return withHeartbeat(() =>
        mapProviderErrors(() =>
          Promise.all(
            input.targets.map(async (t) => {
              const source = input.synthetic ? syntheticSource(input.rule, t.target) : sourceFor(input.rule, t.target);
              const window = { target: t.target, canaryVersion: t.newVersion, baselineVersion: t.stableVersion };
              const samples = await source.collect({
                ...window,
                startMs: input.startMs,
                endMs: Date.now() + 60_000, // include samples stamped up to a minute ahead (clock skew)
              });
              // Synthetic traffic measures both revisions now, whatever the window: no earlier baseline needed.
              if (t.baselineWindow && !(source instanceof SyntheticTraffic)) {
                const before = await source.collect({ ...window, startMs: t.baselineWindow.startMs, endMs: t.baselineWindow.endMs });
                samples.baseline = before.baseline;
              }
              const verdict = withSource(judge(input.rule, samples, t.target.name), samples.source);
              const checks = await runCustomChecks(checksFor(input.rule, t.target), {
                target: t.target,
                canaryVersion: t.newVersion,
                baselineVersion: t.stableVersion,
              });
              const combined = checks.length ? { ...combineVerdicts([verdict, ...checks]), target: t.target.name } : verdict;
              return { ...combined, atMs: Date.now() };
            }),
          ),
        ),
      );
    },
  };
}
