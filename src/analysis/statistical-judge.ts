/**
 * Statistical judge, after Kayenta: per metric a one-sided Mann-Whitney U test of canary versus
 * baseline samples in the "worse" direction, plus an effect-size gate, then a weighted 0-100 score.
 *
 * Per metric (classification pass | worse | nodata):
 * - nodata: fewer than `min_samples` values on either side (or the source has no such samples).
 *   Never NaN: a metric without data has no score, only a reason.
 * - worse: p < 1 - confidence in the configured direction AND the central value (median, or the
 *   rate for errors) moved beyond both tolerances: relative (`allowed_change`, e.g. 0.1 = 10 %) and
 *   absolute (`min_abs_change`). Significant-but-tiny shifts pass, as do big-but-noisy ones.
 *   Better than baseline always passes (only "worse" counts).
 * - pass: otherwise.
 *
 * Score: per group, 100 * passing / (metrics with data); the summary is the weighted mean over
 * groups that have data (weights renormalised, as Kayenta's WeightedSumScorer does).
 * Verdict, in this order:
 * 1. a critical metric is worse → fail (score 0);
 * 2. no metric has data → inconclusive;
 * 3. score < marginal → fail (the data we have already shows a breach, whatever is missing);
 * 4. any metric without data → inconclusive (the spec's no-data policy decides);
 * 5. score >= pass → pass; else (marginal) → inconclusive.
 */
import type { z } from 'zod';
import { checkStatisticalJudge, statisticalJudgeFields, type StatisticalJudgeSpec } from '../spec/schema';
import type { Verdict } from '../contract';
import { hodgesLehmann, mannWhitneyBinary, mannWhitneyU, mean, median, type MannWhitneyResult } from './mann-whitney';
import type { CanarySamples, RevisionSamples } from './types';

export type Direction = 'higher-is-worse' | 'lower-is-worse';

/** Samples a provider may add for statistical judges: per-interval series by name (e.g. Prometheus query_range steps). */
export type RevisionSamplesWithSeries = RevisionSamples & { series?: Record<string, number[]> };

/**
 * The judge's config is the spec's `rollback.judge` (kind statistical) without its `kind`: fields,
 * defaults and checks are defined once, by the zod schema in src/spec/schema.ts.
 */
const statisticalConfigSchema = statisticalJudgeFields.superRefine(checkStatisticalJudge);

/** A config as written (defaults may be left out). */
export type StatisticalJudgeInput = z.input<typeof statisticalJudgeFields>;
/** A config with every default applied, as the judge uses it. */
export type StatisticalJudgeConfig = z.output<typeof statisticalJudgeFields>;
export type StatMetricConfig = StatisticalJudgeConfig['metrics'][number];
export type StatMetricInput = NonNullable<StatisticalJudgeInput['metrics']>[number];

/** The schema's defaults: what `judge: { kind: statistical }` alone means. */
export const DEFAULT_STATISTICAL_CONFIG: StatisticalJudgeConfig = statisticalConfigSchema.parse({});

/** Applies the defaults, or throws naming every problem (the spec schema's own messages, with their paths). */
export function parseStatisticalConfig(c: StatisticalJudgeInput): StatisticalJudgeConfig {
  const parsed = statisticalConfigSchema.safeParse(c);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
  throw new Error(`statistical judge config: ${problems.join('; ')}`);
}

export type MetricClassification = 'pass' | 'worse' | 'nodata';

export interface MetricResult {
  name: string;
  group: string;
  classification: MetricClassification;
  critical: boolean;
  nCanary: number;
  nBaseline: number;
  canary?: number;
  baseline?: number;
  /** canary / baseline central value (Infinity when the baseline is 0 and the canary is not). */
  ratio?: number;
  pValue?: number;
  u?: number;
  method?: MannWhitneyResult['method'];
  rankBiserial?: number;
  /** Hodges-Lehmann shift canary - baseline (sample metrics up to 1e6 pairs; for errors: the rate difference). */
  shift?: number;
  reason: string;
}

export interface StatisticalResult {
  verdict: Verdict;
  /** 0-100, over the groups with data; undefined when no metric had data. */
  score?: number;
  groupScores: Record<string, number>;
  metrics: MetricResult[];
}

const isErrors = (m: StatMetricConfig) => m.samples === 'errors';

function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : v < 0 ? '-inf' : 'n/a';
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
function fmtP(p: number): string {
  return p < 0.001 ? p.toExponential(1) : String(Number(p.toPrecision(2)));
}
const fmtPct = (x: number) => `${(x * 100).toFixed(2)} %`;
const fmtPp = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)} pp`;

function fmtValue(m: StatMetricConfig, v: number): string {
  if (isErrors(m)) return fmtPct(v);
  return `${fmtNum(v)}${m.unit ? ` ${m.unit}` : ''}`;
}

function sampleArrays(m: StatMetricConfig, s: RevisionSamplesWithSeries): number[] | undefined {
  if (m.samples === 'latencies') return s.latencies?.filter(Number.isFinite);
  if (m.samples.startsWith('series:')) return s.series?.[m.samples.slice('series:'.length)]?.filter(Number.isFinite);
  return undefined;
}

function counts(s: RevisionSamples): { n: number; k: number } {
  const n = Number.isFinite(s.requests) ? Math.max(0, Math.round(s.requests)) : 0;
  const k = Number.isFinite(s.errors) ? Math.min(n, Math.max(0, Math.round(s.errors))) : 0;
  return { n, k };
}

/** Classify one metric. Exported for tests and for detailed status output. */
export function judgeMetric(m: StatMetricConfig, samples: CanarySamples, confidence: number): MetricResult {
  const canaryS = samples.canary as RevisionSamplesWithSeries;
  const baseS = samples.baseline as RevisionSamplesWithSeries;
  const critical = !!m.critical;
  const base = { name: m.name, group: m.group, critical };
  const alternative = m.direction === 'higher-is-worse' ? 'greater' : 'less';
  const alpha = 1 - confidence;
  let nCanary: number;
  let nBaseline: number;
  let test: MannWhitneyResult | undefined;
  let cv: number | undefined;
  let bv: number | undefined;
  let shift: number | undefined;
  if (isErrors(m)) {
    const c = counts(canaryS);
    const b = counts(baseS);
    nCanary = c.n;
    nBaseline = b.n;
    if (c.n >= m.min_samples && b.n >= m.min_samples && c.n > 0 && b.n > 0) {
      test = mannWhitneyBinary(c.k, c.n, b.k, b.n, { alternative });
      cv = c.k / c.n;
      bv = b.k / b.n;
      shift = cv - bv;
    }
  } else {
    const c = sampleArrays(m, canaryS);
    const b = sampleArrays(m, baseS);
    nCanary = c?.length ?? 0;
    nBaseline = b?.length ?? 0;
    if (!c || !b) {
      const what = m.samples === 'latencies' ? 'latency samples' : `series "${m.samples.slice(7)}"`;
      return {
        ...base,
        classification: 'nodata',
        nCanary,
        nBaseline,
        reason: `${m.name}: no data: the source (${samples.source}) gave no ${what} for the ${!c ? 'canary' : 'baseline'}`,
      };
    }
    if (nCanary >= m.min_samples && nBaseline >= m.min_samples && nCanary > 0 && nBaseline > 0) {
      test = mannWhitneyU(c, b, { alternative });
      const central = m.statistic === 'mean' ? mean : median;
      cv = central(c)!;
      bv = central(b)!;
      shift = hodgesLehmann(c, b);
    }
  }
  if (!test || cv === undefined || bv === undefined) {
    const unit = isErrors(m) ? 'requests' : 'samples';
    return {
      ...base,
      classification: 'nodata',
      nCanary,
      nBaseline,
      reason: `${m.name}: no data: ${nCanary} canary / ${nBaseline} baseline ${unit} < minimum ${m.min_samples} per revision (${samples.source})`,
    };
  }
  const ratio = bv === 0 ? (cv === 0 ? 1 : cv > 0 ? Infinity : -Infinity) : cv / bv;
  const diff = cv - bv;
  const worseDiff = m.direction === 'higher-is-worse' ? diff : -diff;
  const relLimit = m.direction === 'higher-is-worse' ? 1 + m.allowed_change : 1 - m.allowed_change;
  const beyondRel = m.direction === 'higher-is-worse' ? ratio > relLimit : ratio < relLimit;
  const beyondAbs = worseDiff > m.min_abs_change;
  const significant = test.pValue < alpha;
  const worse = significant && beyondRel && beyondAbs;
  const stat = isErrors(m) ? 'rate' : (m.statistic ?? 'median');
  const cmp = m.direction === 'higher-is-worse' ? '>' : '<';
  const tol =
    `x${fmtNum(ratio)} ${worse ? cmp : 'vs'} allowed x${fmtNum(relLimit)}` +
    (m.min_abs_change > 0
      ? ` and ${isErrors(m) ? fmtPp(m.min_abs_change) : fmtNum(m.min_abs_change)} (${isErrors(m) ? fmtPp(diff) : fmtNum(diff)})`
      : '');
  const pText = `p=${fmtP(test.pValue)} ${significant ? '<' : '>='} ${fmtP(alpha)}`;
  const testText = `Mann-Whitney one-sided (${m.direction}), ${test.method}, n=${nCanary}/${nBaseline}`;
  return {
    ...base,
    classification: worse ? 'worse' : 'pass',
    nCanary,
    nBaseline,
    canary: cv,
    baseline: bv,
    ratio,
    pValue: test.pValue,
    u: test.u,
    method: test.method,
    rankBiserial: test.rankBiserial,
    ...(shift !== undefined ? { shift } : {}),
    reason: `${m.name}: canary ${stat} ${fmtValue(m, cv)} vs baseline ${fmtValue(m, bv)} (${tol}), ${pText} (${testText})${worse ? ': worse' : ''}`,
  };
}

export function analyzeStatistical(input: StatisticalJudgeInput, samples: CanarySamples, target: string): StatisticalResult {
  const config = parseStatisticalConfig(input);
  const metrics = config.metrics.map((m) => judgeMetric(m, samples, config.confidence));
  const prefix = `${target}: statistical (${samples.source})`;
  const mk = (verdict: Verdict['verdict'], metric: string, reason: string): Verdict => ({
    verdict,
    target,
    metric,
    reason: `${prefix}: ${reason}`,
  });

  // Group scores over metrics with data.
  const groupScores: Record<string, number> = {};
  const byGroup = new Map<string, MetricResult[]>();
  for (const r of metrics) if (r.classification !== 'nodata') byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
  for (const [g, rs] of byGroup) groupScores[g] = (100 * rs.filter((r) => r.classification === 'pass').length) / rs.length;
  const weight = (g: string) => (Object.keys(config.groups).length === 0 ? 1 : (config.groups[g] ?? 0));
  const totalWeight = [...byGroup.keys()].reduce((a, g) => a + weight(g), 0);
  const score =
    byGroup.size === 0
      ? undefined
      : totalWeight > 0
        ? [...byGroup.keys()].reduce((a, g) => a + weight(g) * groupScores[g], 0) / totalWeight
        : undefined;

  const worse = metrics.filter((r) => r.classification === 'worse').sort((a, b) => (a.pValue ?? 1) - (b.pValue ?? 1));
  const nodata = metrics.filter((r) => r.classification === 'nodata');
  const more = (list: MetricResult[]) =>
    list.length > 1
      ? ` (+${list.length - 1} more: ${list
          .slice(1)
          .map((r) => r.name)
          .join(', ')})`
      : '';
  const scoreText = (s: number) => String(Math.round(s * 10) / 10);

  const criticalWorse = worse.find((r) => r.critical);
  if (criticalWorse) {
    return {
      verdict: mk('fail', criticalWorse.name, `critical metric worse, score 0: ${criticalWorse.reason}`),
      score: 0,
      groupScores,
      metrics,
    };
  }
  if (score === undefined) {
    const first = nodata[0] ?? metrics[0];
    return { verdict: mk('inconclusive', first.name, `${first.reason}${more(nodata)}`), score, groupScores, metrics };
  }
  if (score < config.marginal_score) {
    const w = worse[0];
    return {
      verdict: mk(
        'fail',
        w?.name ?? 'score',
        `score ${scoreText(score)} < marginal ${config.marginal_score}: ${w ? `${w.reason}${more(worse)}` : 'no passing metric'}`,
      ),
      score,
      groupScores,
      metrics,
    };
  }
  if (nodata.length > 0) {
    return {
      verdict: mk('inconclusive', nodata[0].name, `${nodata[0].reason}${more(nodata)}; score ${scoreText(score)} from the other metrics`),
      score,
      groupScores,
      metrics,
    };
  }
  if (score >= config.pass_score) {
    const cfgOf = (r: MetricResult) => config.metrics.find((m) => m.name === r.name)!;
    const summary = metrics
      .map(
        (r) =>
          `${r.name} ${fmtValue(cfgOf(r), r.canary!)} vs ${fmtValue(cfgOf(r), r.baseline!)} (x${fmtNum(r.ratio!)}, p=${fmtP(r.pValue!)})`,
      )
      .join('; ');
    return {
      verdict: mk(
        'pass',
        'score',
        `score ${scoreText(score)} >= pass ${config.pass_score} (worse needs p < ${fmtP(1 - config.confidence)} and a change beyond the allowed ratio): ${summary}`,
      ),
      score,
      groupScores,
      metrics,
    };
  }
  const w = worse[0];
  return {
    verdict: mk(
      'inconclusive',
      w?.name ?? 'score',
      `marginal: score ${scoreText(score)} < pass ${config.pass_score} (>= marginal ${config.marginal_score}): ${w ? `${w.reason}${more(worse)}` : ''}`,
    ),
    score,
    groupScores,
    metrics,
  };
}

/** Same signature shape as judgeThreshold: one verdict for one target, judged by the spec's `rollback.judge`. */
export function judgeStatistical(judge: StatisticalJudgeSpec, samples: CanarySamples, target: string): Verdict {
  const { kind: _kind, ...config } = judge;
  return analyzeStatistical(config, samples, target).verdict;
}
