/**
 * Prometheus provider against a REAL Prometheus (/usr/bin/prometheus, Debian package) started on
 * loopback with a 1 s scrape interval, scraping an exporter this test controls. Fails (never skips)
 * with install instructions when the binary is missing.
 */
import type { ThresholdRule } from '../src/analysis/threshold-judge';
import { createServer, type Server } from 'node:http';
import { PrometheusMetrics, renderQuery, templateVars, type PrometheusQueries } from '../src/analysis/prometheus';
import { MetricSourceUnavailableError } from '../src/analysis/errors';
import { NonRetryableProviderError } from '../src/providers/types';
import { judgeThreshold } from '../src/analysis/threshold-judge';
import { analyzeStatistical, DEFAULT_STATISTICAL_CONFIG } from '../src/analysis/statistical-judge';
import { EXPORTER_METRICS, MetricsExporter, prometheusPath, startPrometheus, type PrometheusServer } from '../src/dev/prometheus';
import { freePort } from '../src/dev/processes';
import type { CloudRunTargetSpec, LambdaTargetSpec } from '../src/spec/schema';

const lambda: LambdaTargetSpec = { name: 'eu', provider: 'aws-lambda', region: 'eu-west-1', function: 'shop-fn', alias: 'live' };
const run: CloudRunTargetSpec = { name: 'gcp', provider: 'cloud-run', project: 'shop-project', region: 'europe-west1', service: 'shop' };

const { requests: REQ, latency: LAT } = EXPORTER_METRICS;
const QUERIES: PrometheusQueries = {
  requests: `sum(increase(${REQ}{revision="{{revision}}"}[{{window}}]))`,
  errors: `sum(increase(${REQ}{revision="{{revision}}",code=~"5.."}[{{window}}]))`,
  latency_p99_ms: `histogram_quantile(0.99, sum by (le) (rate(${LAT}_bucket{revision="{{revision}}"}[{{window}}]))) * 1000`,
};
const RULE: ThresholdRule = { max_error_rate_increase_pp: 2, min_requests: 20 };

let exporter: MetricsExporter;
let prom: PrometheusServer;
let provider: PrometheusMetrics;
let windowStartMs: number;

beforeAll(async () => {
  exporter = await new MetricsExporter().start();
  exporter.set('1', { requests: 50, errors: 1, latencyMs: 120 }); // stable: 2 % errors, 120 ms
  exporter.set('2', { requests: 10, errors: 5, latencyMs: 600 }); // broken canary: 50 % errors, 600 ms
  exporter.set('partial', { requests: 10, errors: 0 }); // no 5xx series, no latency histogram
  prom = await startPrometheus({ targets: [exporter.hostPort], scrapeIntervalSeconds: 1 });
  await prom.waitForTargetsUp(20_000);
  windowStartMs = Date.now();
  provider = new PrometheusMetrics({
    url: prom.url,
    queries: { 'aws-lambda': QUERIES },
    minWindowSeconds: 2,
    stepSeconds: 1,
    rangeWindowSeconds: 2,
  });
  await new Promise((r) => setTimeout(r, 4_000));
  exporter.set('late', { requests: 10, errors: 0, latencyMs: 30 }); // appears half-way through the window
  await new Promise((r) => setTimeout(r, 4_000));
}, 60_000);

afterAll(async () => {
  await prom?.stop();
  await exporter?.stop();
});

const window = (canaryVersion: string, baselineVersion = '1') => ({
  target: lambda,
  canaryVersion,
  baselineVersion,
  startMs: windowStartMs,
  endMs: Date.now() + 60_000, // the activity adds a minute for clock skew: the provider must clamp it
});

test('the harness runs the real binary and Prometheus scrapes our exporter', async () => {
  const info = (await (await fetch(`${prom.url}/api/v1/status/buildinfo`)).json()) as { data: { version: string } };
  expect(info.data.version).toMatch(/^2\./);
  expect(exporter.scrapes).toBeGreaterThanOrEqual(6);
});

test('happy data: totals, p99 from the histogram and per-step series for canary and baseline', async () => {
  await provider.preflight(lambda, '1');
  const s = await provider.collect(window('2'));
  expect(s.source).toBe(`prometheus ${prom.url}`);
  const { canary, baseline } = s as typeof s & {
    canary: { series: Record<string, number[]> };
    baseline: { series: Record<string, number[]> };
  };
  // increase() extrapolates to the window edges: ratios are exact, absolute counts approximate.
  expect(canary.requests).toBeGreaterThan(40);
  expect(baseline.requests / canary.requests).toBeCloseTo(5, 1);
  expect(canary.errors / canary.requests).toBeCloseTo(0.5, 5);
  expect(baseline.errors / baseline.requests).toBeCloseTo(0.02, 5);
  // All observations in one bucket: histogram_quantile interpolates linearly inside it.
  expect(canary.latencyP99Ms).toBeCloseTo(500 + 0.99 * 500, 6); // 600 ms is in (0.5 s, 1 s]
  expect(baseline.latencyP99Ms).toBeCloseTo(100 + 0.99 * 150, 6); // 120 ms is in (0.1 s, 0.25 s]
  expect(canary.latencyStat).toBe('p99');
  expect(canary.series.error_rate.length).toBeGreaterThanOrEqual(4);
  for (const r of canary.series.error_rate) expect(r).toBeCloseTo(0.5, 5);
  for (const r of baseline.series.error_rate) expect(r).toBeCloseTo(0.02, 5);
  for (const v of canary.series.latency_p99_ms) expect(v).toBeCloseTo(995, 6);

  // Both judges see the breach.
  const t = judgeThreshold({ ...RULE, p99_latency_ms: 500 }, s, lambda.name);
  expect(t.verdict).toBe('fail');
  expect(t.reason).toMatch(/error rate 50\.00 % \(canary\) vs 2\.00 % \(baseline\) > threshold 4\.00 %/);
  const stat = analyzeStatistical(
    {
      ...DEFAULT_STATISTICAL_CONFIG,
      metrics: [
        {
          name: 'error_rate',
          samples: 'series:error_rate',
          group: 'errors',
          direction: 'higher-is-worse',
          min_samples: 3,
          allowed_change: 0.1,
          min_abs_change: 0.005,
        },
        {
          name: 'latency_p99',
          samples: 'series:latency_p99_ms',
          group: 'latency',
          direction: 'higher-is-worse',
          min_samples: 3,
          allowed_change: 0.1,
          min_abs_change: 0,
          unit: 'ms',
        },
      ],
    },
    s,
    lambda.name,
  );
  expect(stat.verdict.verdict).toBe('fail');
  expect(stat.score).toBe(0);

  // Stable against itself passes.
  const same = await provider.collect(window('1'));
  expect(judgeThreshold(RULE, same, lambda.name).verdict).toBe('pass');
});

test('missing data: a revision with no series yields zero samples (inconclusive), not an error', async () => {
  const s = await provider.collect(window('never-deployed'));
  expect(s.canary).toEqual({ requests: 0, errors: 0, series: { requests: [], errors: [], error_rate: [], latency_p99_ms: [] } });
  expect(s.baseline.requests).toBeGreaterThan(0);
  const v = judgeThreshold(RULE, s, lambda.name);
  expect(v.verdict).toBe('inconclusive');
  expect(v.reason).toContain('no data: 0 canary requests < minimum 20');
  expect(analyzeStatistical(DEFAULT_STATISTICAL_CONFIG, s, lambda.name).verdict.verdict).toBe('inconclusive');
  expect(JSON.stringify(s)).not.toMatch(/NaN|null/);
});

test('partial data: no 5xx series means 0 errors, no histogram means no latency; a late revision has fewer steps', async () => {
  const p = await provider.collect(window('partial'));
  expect(p.canary.requests).toBeGreaterThan(40);
  expect(p.canary.errors).toBe(0);
  expect(p.canary.latencyP99Ms).toBeUndefined();
  expect(judgeThreshold({ ...RULE, p99_latency_ms: 500 }, p, lambda.name).verdict).toBe('pass');

  const late = (await provider.collect(window('late'))) as Awaited<ReturnType<PrometheusMetrics['collect']>> & {
    canary: { series: Record<string, number[]> };
  };
  const full = (await provider.collect(window('2'))) as typeof late;
  expect(late.canary.requests).toBeGreaterThan(0);
  expect(late.canary.requests).toBeLessThan(full.canary.requests);
  expect(late.canary.series.requests.length).toBeLessThan(full.canary.series.requests.length);
  expect(late.canary.latencyP99Ms).toBeCloseTo(25 + 0.99 * 25, 6); // 30 ms in (25 ms, 50 ms]

  // Preflight insists on latency series for the stable revision when a latency query is configured.
  await expect(provider.preflight(lambda, 'partial')).rejects.toThrow(
    /prometheus query "latency_p99_ms" returned no series for the stable revision partial of eu over the last 3600s: histogram_quantile/,
  );
});

test('preflight fails before any traffic moves when the stable revision has no series', async () => {
  const err = await provider.preflight(lambda, 'nope').catch((e: Error) => e);
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect((err as Error).message).toBe(
    `prometheus query "requests" returned no series for the stable revision nope of eu over the last 3600s: sum(increase(${REQ}{revision="nope"}[3600s]))`,
  );
});

test('bad query: preflight (and collect) fail non-retryably, naming the query and the parse error', async () => {
  const bad = new PrometheusMetrics({
    url: prom.url,
    queries: { 'aws-lambda': { ...QUERIES, errors: `sum(increase(${REQ}{revision="{{revision}}",code=~"5.."}[{{window}}])` } },
  });
  const err = await bad.preflight(lambda, '1').catch((e: Error) => e);
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect((err as NonRetryableProviderError).code).toBe('MetricQuery');
  expect((err as Error).message).toMatch(
    /^prometheus rejected query "errors" \(sum\(increase\(rollgate_http_requests_total\{revision="1",code=~"5\.\."\}\[3600s\]\)\): HTTP 400 bad_data: .*parse error/,
  );
  await expect(bad.collect(window('2'))).rejects.toThrow(/rejected query "errors"/);

  const typo = new PrometheusMetrics({
    url: prom.url,
    queries: { 'aws-lambda': { ...QUERIES, requests: 'sum(x{revision="{{revison}}"})' } },
  });
  await expect(typo.preflight(lambda, '1')).rejects.toThrow(/query "requests" uses unknown placeholder\(s\) \{\{revison\}\}/);
});

test('Prometheus down: a retryable MetricSourceUnavailableError, for preflight and collect', async () => {
  const port = await freePort(); // nothing listens there
  const down = new PrometheusMetrics({ url: `http://127.0.0.1:${port}`, queries: { 'aws-lambda': QUERIES }, timeoutMs: 2000 });
  const err = await down.collect(window('2')).catch((e: Error) => e);
  expect(err).toBeInstanceOf(MetricSourceUnavailableError);
  expect((err as MetricSourceUnavailableError).retryable).toBe(true);
  expect((err as Error).message).toMatch(new RegExp(`prometheus at http://127.0.0.1:${port} unreachable .*ECONNREFUSED`));
  await expect(down.preflight(lambda, '1')).rejects.toBeInstanceOf(MetricSourceUnavailableError);
});

test('overloaded or slow Prometheus (503, timeout) is retryable too (loopback stand-in, in addition to the real server)', async () => {
  let mode: 'busy' | 'slow' = 'busy';
  const server: Server = createServer((_req, res) => {
    if (mode === 'busy') {
      res.writeHead(503, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'error', errorType: 'unavailable', error: 'too many queries' }));
    }
    setTimeout(() => res.end('{}'), 1500).unref();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const p = new PrometheusMetrics({ url, queries: { 'aws-lambda': QUERIES }, timeoutMs: 300 });
    await expect(p.collect(window('2'))).rejects.toThrow(/answered HTTP 503 .*too many queries/);
    mode = 'slow';
    await expect(p.collect(window('2'))).rejects.toThrow(/unreachable .*timed out/);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('templates: revision escaped, target fields available per kind, supports() follows the configured kinds', () => {
  const vars = templateVars(run, 'shop-00002-x"y', 300);
  expect(
    renderQuery('q', 'up{project="{{project}}",service="{{service}}",rev="{{revision}}"}[{{window}}] # {{target}} {{ version }}', vars),
  ).toBe('up{project="shop-project",service="shop",rev="shop-00002-x\\"y"}[300s] # gcp shop-00002-x\\"y');
  expect(renderQuery('q', '{{function}}:{{alias}}@{{region}}', templateVars(lambda, '7', 60))).toBe('shop-fn:live@eu-west-1');
  expect(() => renderQuery('q', '{{function}}', vars)).toThrow(/unknown placeholder\(s\) \{\{function\}\}/);
  expect(provider.supports(lambda)).toBe(true);
  expect(provider.supports(run)).toBe(false);
});

test('a missing binary fails with install instructions (never a skip)', () => {
  const saved = process.env.PROMETHEUS_PATH;
  process.env.PROMETHEUS_PATH = '/nonexistent/prometheus';
  try {
    expect(() => prometheusPath()).toThrow(
      'Prometheus not found at /nonexistent/prometheus. Install it with `apt-get update && apt-get install -y prometheus`',
    );
  } finally {
    if (saved === undefined) delete process.env.PROMETHEUS_PATH;
    else process.env.PROMETHEUS_PATH = saved;
  }
});
