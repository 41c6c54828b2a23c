/**
 * Prometheus metrics over the HTTP API (/api/v1/query and /api/v1/query_range), for any target
 * whose service exports per-revision metrics. Queries are PromQL templates per target kind:
 *
 *   requests:       sum(increase(http_requests_total{revision="{{revision}}"}[{{window}}]))
 *   errors:         sum(increase(http_requests_total{revision="{{revision}}",code=~"5.."}[{{window}}]))
 *   latency_p99_ms: histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{revision="{{revision}}"}[{{window}}]))) * 1000
 *
 * Placeholders: {{revision}} (also {{version}}: the canary or baseline version / revision name,
 * escaped for a PromQL string), {{window}} (a PromQL duration such as "300s"), {{target}} (the
 * target's name) and the target's own fields ({{function}}, {{alias}}, {{region}}, {{project}},
 * {{service}}). An unknown placeholder is a configuration error.
 *
 * collect():
 * - totals: one instant query per template at the window's end, with {{window}} = the window
 *   length (at least `minWindowSeconds`). The end is clamped to "now": Prometheus has nothing
 *   newer, and a range reaching into the future would silently shorten the window.
 * - series, for the statistical judge: the same templates as range queries with
 *   {{window}} = the step (or `rangeWindowSeconds`), giving one value per step: "requests", "errors", "error_rate" (steps
 *   with requests only) and "latency_p99_ms" (finite values only).
 * - No series (the revision has no traffic yet) means zero requests and no latency: the judges
 *   see "no data" (inconclusive), it is not an error. NaN (histogram_quantile over no traffic) is
 *   dropped, never passed on. Several series (a template without sum()) are added up (counts) or
 *   maxed (latency).
 *
 * Errors: Prometheus unreachable, timing out or answering 5xx / 429 → MetricSourceUnavailableError
 * (retryable). A query Prometheus rejects (400 bad_data, 422 execution error) →
 * NonRetryableProviderError "MetricQuery" naming the query.
 *
 * preflight(): Prometheus answers /api/v1/status/buildinfo, every template renders and parses,
 * and the `requests` and `latency_p99_ms` queries return at least one series for the stable
 * revision over `preflightLookbackSeconds`. The `errors` query only has to parse: a healthy
 * service may never have had a 5xx series.
 */
import type { TargetSpec } from '../spec/schema';
import { MetricSourceUnavailableError, NonRetryableProviderError } from './errors';
import type { RevisionSamplesWithSeries } from './statistical-judge';
import type { CanarySamples, MetricProvider, MetricWindow } from './types';
import { OutboundRefused, outboundRequest, type OutboundResponse } from '../security/outbound';
import { bodyExcerpt } from '../security/redact';
import type { UrlPolicy } from '../security/url-policy';

/** Range answers of a statistical judge can be large; beyond this a body is cut (and fails to parse). */
const MAX_PROM_BODY = 32 * 1024 * 1024;

export interface PrometheusQueries {
  requests: string;
  errors: string;
  latency_p99_ms?: string;
}

export type PrometheusQueryName = keyof PrometheusQueries;

export interface PrometheusOptions {
  /** Base URL (may carry a path prefix, e.g. https://host/prometheus). */
  url: string;
  /** Query templates per target kind; the provider supports exactly these kinds. */
  queries: Partial<Record<TargetSpec['provider'], PrometheusQueries>>;
  /** Extra request headers (e.g. Authorization for a managed Prometheus). */
  headers?: Record<string, string>;
  /** Per HTTP request (default 10 s). */
  timeoutMs?: number;
  /** query_range step in seconds (default 30). */
  stepSeconds?: number;
  /** {{window}} of the range queries (default: the step; must cover >= 2 scrapes). */
  rangeWindowSeconds?: number;
  /** Shortest {{window}} of the instant queries (default 60 s). */
  minWindowSeconds?: number;
  /** How far back preflight looks for series of the stable revision (default 3600 s). */
  preflightLookbackSeconds?: number;
  /** Skip the range queries (no series for statistical judges). Default false. */
  totalsOnly?: boolean;
  /** The worker's outbound URL policy (src/security/url-policy.ts); absent: only the hard refusals. */
  policy?: UrlPolicy;
}

interface PromResponse {
  status: 'success' | 'error';
  data?: { resultType: 'vector' | 'matrix' | 'scalar' | 'string'; result: unknown };
  errorType?: string;
  error?: string;
}
type VectorSample = { metric: Record<string, string>; value: [number, string] };
type MatrixSeries = { metric: Record<string, string>; values: [number, string][] };

const PLACEHOLDER = /\{\{\s*([a-zA-Z_]+)\s*\}\}/g;

/** Escape a value for a double-quoted PromQL string. */
export function promString(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function templateVars(target: TargetSpec, revision: string, windowSeconds: number): Record<string, string> {
  const base: Record<string, string> = {
    revision: promString(revision),
    version: promString(revision),
    window: `${windowSeconds}s`,
    target: target.name,
  };
  if (target.provider === 'aws-lambda') return { ...base, function: target.function, alias: target.alias, region: target.region };
  return { ...base, project: target.project, region: target.region, service: target.service };
}

/** Fill {{placeholders}}; an unknown one is a non-retryable configuration error naming it. */
export function renderQuery(name: string, template: string, vars: Record<string, string>): string {
  const unknown = new Set<string>();
  const out = template.replace(PLACEHOLDER, (m, key: string) => {
    if (key in vars) return vars[key];
    unknown.add(key);
    return m;
  });
  if (unknown.size)
    throw new NonRetryableProviderError(
      `prometheus query "${name}" uses unknown placeholder(s) ${[...unknown].map((k) => `{{${k}}}`).join(', ')} (known: ${Object.keys(vars)
        .map((k) => `{{${k}}}`)
        .join(', ')}): ${template}`,
      'MetricQuery',
    );
  return out;
}

const num = (s: string) => (s === 'NaN' ? NaN : s === '+Inf' ? Infinity : s === '-Inf' ? -Infinity : Number(s));

export class PrometheusMetrics implements MetricProvider {
  readonly name = 'prometheus';
  private readonly base: string;

  constructor(private readonly opts: PrometheusOptions) {
    this.base = opts.url.replace(/\/+$/, '');
  }

  supports(t: TargetSpec): boolean {
    return this.opts.queries[t.provider] !== undefined;
  }

  private queriesFor(t: TargetSpec): PrometheusQueries {
    const q = this.opts.queries[t.provider];
    if (!q) throw new NonRetryableProviderError(`prometheus has no queries for ${t.provider} targets (target ${t.name})`, 'MetricQuery');
    return q;
  }

  private async api(path: string, params: Record<string, string>, queryName?: string, query?: string): Promise<PromResponse> {
    const url = `${this.base}${path}`;
    const what = queryName ? `query "${queryName}" (${query})` : path;
    let res: OutboundResponse;
    try {
      res = await outboundRequest(url, {
        method: Object.keys(params).length ? 'POST' : 'GET',
        headers: { ...(Object.keys(params).length ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...this.opts.headers },
        body: Object.keys(params).length ? new URLSearchParams(params).toString() : undefined,
        timeoutMs: this.opts.timeoutMs ?? 10_000,
        maxBodyBytes: MAX_PROM_BODY,
        policy: this.opts.policy,
      });
    } catch (err) {
      if (err instanceof OutboundRefused) throw new NonRetryableProviderError(`prometheus ${err.message}`, 'OutboundRefused');
      const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
      const cause = e.code ?? e.cause?.code ?? e.cause?.message ?? e.message;
      throw new MetricSourceUnavailableError(
        `prometheus at ${this.base} unreachable for ${what}: ${e.name === 'TimeoutError' ? 'timed out' : cause}`,
        'prometheus',
      );
    }
    const text = res.text;
    let body: PromResponse | undefined;
    try {
      body = JSON.parse(text) as PromResponse;
    } catch {
      body = undefined;
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408)
      throw new MetricSourceUnavailableError(
        `prometheus at ${this.base} answered HTTP ${res.status} for ${what}: ${bodyExcerpt(body?.error ?? text, 200)}`,
        'prometheus',
      );
    if (res.status < 200 || res.status >= 300 || !body || body.status !== 'success')
      throw new NonRetryableProviderError(
        `prometheus rejected ${what}: HTTP ${res.status}${body?.errorType ? ` ${body.errorType}` : ''}: ${bodyExcerpt(body?.error ?? text, 200)}`,
        'MetricQuery',
      );
    return body;
  }

  /** Instant query; the numeric values of its series (empty when there are none). */
  private async instant(name: string, query: string, timeSec: number): Promise<number[]> {
    const r = await this.api('/api/v1/query', { query, time: String(timeSec) }, name, query);
    const d = r.data!;
    if (d.resultType === 'scalar') return [num((d.result as [number, string])[1])];
    if (d.resultType !== 'vector')
      throw new NonRetryableProviderError(
        `prometheus query "${name}" returned a ${d.resultType}, expected an instant vector: ${query}`,
        'MetricQuery',
      );
    return (d.result as VectorSample[]).map((s) => num(s.value[1]));
  }

  /** Range query; per step timestamp, the values of all series at that step. */
  private async range(name: string, query: string, startSec: number, endSec: number, step: number): Promise<Map<number, number[]>> {
    const r = await this.api(
      '/api/v1/query_range',
      { query, start: String(startSec), end: String(endSec), step: String(step) },
      name,
      query,
    );
    const out = new Map<number, number[]>();
    if (r.data!.resultType !== 'matrix') return out;
    for (const s of r.data!.result as MatrixSeries[])
      for (const [ts, v] of s.values) {
        const arr = out.get(ts) ?? [];
        arr.push(num(v));
        out.set(ts, arr);
      }
    return out;
  }

  async preflight(target: TargetSpec, baselineVersion: string): Promise<void> {
    const q = this.queriesFor(target);
    await this.api('/api/v1/status/buildinfo', {});
    const lookback = this.opts.preflightLookbackSeconds ?? 3600;
    const vars = templateVars(target, baselineVersion, lookback);
    const now = Math.floor(Date.now() / 1000);
    const mustHaveSeries: PrometheusQueryName[] = ['requests', 'latency_p99_ms'];
    // Render all first, so a placeholder typo is reported before anything is sent.
    const rendered = (Object.keys(q) as PrometheusQueryName[])
      .filter((n) => q[n] !== undefined)
      .map((n) => ({ n, query: renderQuery(n, q[n]!, vars) }));
    for (const { n, query } of rendered) {
      const values = await this.instant(n, query, now);
      if (mustHaveSeries.includes(n) && values.length === 0)
        throw new NonRetryableProviderError(
          `prometheus query "${n}" returned no series for the stable revision ${baselineVersion} of ${target.name} over the last ${lookback}s: ${query}`,
          'MetricQuery',
        );
    }
  }

  async collect(w: MetricWindow): Promise<CanarySamples> {
    const q = this.queriesFor(w.target);
    const endMs = Math.min(w.endMs, Date.now());
    const [canary, baseline] = await Promise.all([
      this.revision(w.target, q, w.canaryVersion, w.startMs, endMs),
      this.revision(w.target, q, w.baselineVersion, w.startMs, endMs),
    ]);
    return { source: `prometheus ${this.base}`, canary, baseline };
  }

  private async revision(
    t: TargetSpec,
    q: PrometheusQueries,
    version: string,
    startMs: number,
    endMs: number,
  ): Promise<RevisionSamplesWithSeries> {
    const endSec = endMs / 1000;
    const windowSec = Math.max(this.opts.minWindowSeconds ?? 60, Math.ceil((endMs - startMs) / 1000));
    const vars = templateVars(t, version, windowSec);
    const sum = (vs: number[]) => vs.filter(Number.isFinite).reduce((a, b) => a + b, 0);
    const maxFinite = (vs: number[]) => {
      const f = vs.filter(Number.isFinite);
      return f.length ? Math.max(...f) : undefined;
    };
    const [req, err, lat] = await Promise.all([
      this.instant('requests', renderQuery('requests', q.requests, vars), endSec),
      this.instant('errors', renderQuery('errors', q.errors, vars), endSec),
      q.latency_p99_ms
        ? this.instant('latency_p99_ms', renderQuery('latency_p99_ms', q.latency_p99_ms, vars), endSec)
        : Promise.resolve([]),
    ]);
    const requests = Math.max(0, sum(req));
    const errors = Math.min(requests, Math.max(0, sum(err)));
    const p99 = maxFinite(lat);
    const out: RevisionSamplesWithSeries = {
      requests,
      errors,
      ...(p99 !== undefined ? { latencyP99Ms: p99, latencyStat: 'p99' as const } : {}),
    };
    if (!this.opts.totalsOnly) out.series = await this.series(t, q, version, startMs, endMs);
    return out;
  }

  private async series(
    t: TargetSpec,
    q: PrometheusQueries,
    version: string,
    startMs: number,
    endMs: number,
  ): Promise<Record<string, number[]>> {
    const step = this.opts.stepSeconds ?? 30;
    const rangeWindow = this.opts.rangeWindowSeconds ?? step;
    const vars = templateVars(t, version, rangeWindow);
    // The first step ends one range window after the start, so every step covers only window time.
    const startSec = Math.ceil(startMs / 1000) + rangeWindow;
    const endSec = Math.floor(endMs / 1000);
    if (endSec < startSec) return { requests: [], errors: [], error_rate: [], latency_p99_ms: [] };
    const [req, err, lat] = await Promise.all([
      this.range('requests', renderQuery('requests', q.requests, vars), startSec, endSec, step),
      this.range('errors', renderQuery('errors', q.errors, vars), startSec, endSec, step),
      q.latency_p99_ms
        ? this.range('latency_p99_ms', renderQuery('latency_p99_ms', q.latency_p99_ms, vars), startSec, endSec, step)
        : Promise.resolve(new Map<number, number[]>()),
    ]);
    const steps = [...req.keys()].sort((a, b) => a - b);
    const sumAt = (m: Map<number, number[]>, ts: number) => (m.get(ts) ?? []).filter(Number.isFinite).reduce((a, b) => a + b, 0);
    const requests = steps.map((ts) => Math.max(0, sumAt(req, ts)));
    const errors = steps.map((ts) => Math.max(0, sumAt(err, ts)));
    const error_rate = steps.flatMap((ts, i) => (requests[i] > 0 ? [Math.min(1, errors[i] / requests[i])] : []));
    const latency_p99_ms = [...lat.keys()]
      .sort((a, b) => a - b)
      .flatMap((ts) => {
        const f = lat.get(ts)!.filter(Number.isFinite);
        return f.length ? [Math.max(...f)] : [];
      });
    return { requests, errors, error_rate, latency_p99_ms };
  }
}
