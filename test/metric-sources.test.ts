/**
 * The native metric sources against their servers: CloudWatch in moto (through the fault proxy) and
 * Cloud Monitoring in its wire fake. Happy, missing and partial data; retryable and final errors.
 */
import { status as Code } from '@grpc/grpc-js';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import { FaultProxy } from '../src/dev/fault-proxy';
import { putVersionMetrics, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { NonRetryableProviderError } from '../src/providers/types';
import { judgeThreshold } from '../src/analysis/threshold-judge';
import type { CloudRunTargetSpec, LambdaTargetSpec } from '../src/spec/schema';

const lambda: LambdaTargetSpec = { name: 'cw', provider: 'aws-lambda', region: 'eu-west-3', function: 'cw-fn', alias: 'live' };
const run: CloudRunTargetSpec = { name: 'cm', provider: 'cloud-run', project: 'metrics-proj', region: 'europe-west4', service: 'shop' };
const isGetMetricData = (c: { target?: string; method: string; path: string }) =>
  (c.target ?? '').includes('GetMetricData') || (c.method === 'POST' && c.path === '/');

describe('CloudWatch (moto)', () => {
  let proxy: FaultProxy;
  let cw: CloudWatchMetrics;
  beforeAll(async () => {
    proxy = await new FaultProxy(process.env.ROLLGATE_TEST_MOTO!).start();
    cw = new CloudWatchMetrics({ endpoint: proxy.url, credentials: TEST_CREDENTIALS });
  });
  afterAll(async () => proxy.stop());
  const window = (startMs: number) => ({ target: lambda, canaryVersion: '2', baselineVersion: '1', startMs, endMs: Date.now() + 60_000 });

  test('happy, missing and partial data', async () => {
    const start = Date.now() - 1000;
    expect(await cw.collect(window(start))).toMatchObject({ canary: { requests: 0, errors: 0 }, baseline: { requests: 0, errors: 0 } }); // missing
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, lambda, '2', { invocations: 40, errors: 4, durationMs: 250 });
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, lambda, '1', { invocations: 400, errors: 0 }); // partial: no Duration
    const s = await cw.collect(window(start));
    expect(s.canary).toMatchObject({ requests: 40, errors: 4, latencyP99Ms: 250, latencyStat: 'max' }); // moto has no percentiles
    expect(s.baseline).toEqual({ requests: 400, errors: 0 });
    expect(s.source).toBe('cloudwatch eu-west-3');
  });

  test('Lambda Throttles count as requests that failed: a throttled canary breaches the error rate', async () => {
    const throttled: LambdaTargetSpec = { ...lambda, function: 'cw-throttled-fn' };
    const start = Date.now() - 1000;
    // Lambda leaves throttled requests out of Invocations (and Errors): 60 served, 40 refused with a 429.
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, throttled, '2', { invocations: 60, errors: 0, throttles: 40 });
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, throttled, '1', { invocations: 900, errors: 9 });
    const s = await cw.collect({ ...window(start), target: throttled });
    expect(s.canary).toMatchObject({ requests: 100, errors: 40, throttled: 40 });
    expect(s.baseline).toMatchObject({ requests: 900, errors: 9 });
    expect(s.baseline.throttled).toBeUndefined();
    const v = judgeThreshold({ max_error_rate_increase_pp: 2, min_requests: 5 }, s, 'cw');
    expect(v).toMatchObject({ verdict: 'fail', metric: 'error_rate', canaryErrorRate: 0.4 });
    expect(v.reason).toBe(
      'cw: error rate 40.00 % (canary, 40 of 100 requests throttled) vs 1.00 % (baseline) > threshold 3.00 % (baseline + 2 pp)',
    );
  });

  test('throttling (400 Throttling, as CloudWatch answers it) and 5xx are retried; a bad request is final', async () => {
    const calls = () => proxy.count(isGetMetricData);
    let before = calls();
    proxy.inject({ match: isGetMetricData, times: 2, action: { status: 400, errorType: 'Throttling', message: 'Rate exceeded' } });
    await expect(cw.preflight(lambda, '1')).resolves.toBeUndefined();
    expect(calls() - before).toBe(3); // two throttled answers, then the one that went through
    // Throttled for longer than the SDK's own attempts: a retryable error for Temporal, not a final one.
    before = calls();
    proxy.inject({ match: isGetMetricData, times: 4, action: { status: 400, errorType: 'Throttling', message: 'Rate exceeded' } });
    const throttled = await cw.preflight(lambda, '1').catch((e) => e);
    expect(calls() - before).toBe(4); // maxAttempts 4
    expect(throttled).toBeInstanceOf(Error);
    expect(throttled.name).toBe('Throttling');
    expect(throttled).not.toBeInstanceOf(NonRetryableProviderError);
    before = calls();
    proxy.inject({ match: isGetMetricData, times: 2, action: { status: 503, errorType: 'ServiceUnavailable', message: 'try again' } });
    await expect(cw.preflight(lambda, '1')).resolves.toBeUndefined();
    expect(calls() - before).toBe(3);
    proxy.inject({
      match: isGetMetricData,
      times: 1,
      action: { status: 400, errorType: 'InvalidParameterValueException', message: 'bad stat' },
    });
    const err = await cw.collect(window(Date.now() - 1000)).catch((e) => e);
    expect(err).toBeInstanceOf(NonRetryableProviderError);
    expect(err.message).toMatch(/cloudwatch: InvalidParameterValueException: bad stat/);
  });

  test('the latency query falls back to Maximum only where percentiles are unsupported: throttling or a refused permission on p99 is raised, not judged on Maximum', async () => {
    type Call = { target?: string; method: string; path: string };
    const withStat = (stat: string) => (c: Call, body: Buffer) => isGetMetricData(c) && body.toString('utf8').includes(`"Stat":"${stat}"`);
    const target: LambdaTargetSpec = { ...lambda, function: 'cw-latency-fn' };
    const start = Date.now() - 1000;
    const collect = () => cw.collect({ ...window(start), target });
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, target, '2', { invocations: 50, errors: 0, durationMs: 120 });
    await putVersionMetrics(process.env.ROLLGATE_TEST_MOTO!, target, '1', { invocations: 50, errors: 0, durationMs: 100 });
    try {
      // moto serves no percentiles (HTTP 500): the labelled stand-in, as in the first test.
      expect((await collect()).canary).toMatchObject({ latencyP99Ms: 120, latencyStat: 'max' });
      // Throttled past the SDK's 4 attempts (canary and baseline): retryable for Temporal, not judged on Maximum.
      proxy.inject({ match: withStat('p99'), times: 8, action: { status: 400, errorType: 'Throttling', message: 'Rate exceeded' } });
      const throttled = await collect().catch((e) => e);
      expect(throttled).toBeInstanceOf(Error);
      expect(throttled.name).toBe('Throttling');
      expect(throttled).not.toBeInstanceOf(NonRetryableProviderError);
      proxy.clearFaults();
      // A refused permission on p99 is final and named.
      proxy.inject({ match: withStat('p99'), times: 8, action: { status: 400, errorType: 'AccessDenied', message: 'not allowed' } });
      const denied = await collect().catch((e) => e);
      expect(denied).toBeInstanceOf(NonRetryableProviderError);
      expect(denied.message).toMatch(/cloudwatch: AccessDenied: not allowed/);
      proxy.clearFaults();
      // A refused Maximum query is final too (it went through no error mapping before).
      proxy.inject({ match: withStat('Maximum'), times: 8, action: { status: 400, errorType: 'AccessDenied', message: 'no max' } });
      const deniedMax = await collect().catch((e) => e);
      expect(deniedMax).toBeInstanceOf(NonRetryableProviderError);
      expect(deniedMax.message).toMatch(/cloudwatch: AccessDenied: no max/);
    } finally {
      proxy.clearFaults();
    }
  });
});

describe('Cloud Monitoring (wire fake)', () => {
  let fake: CloudMonitoringFake;
  let cm: CloudMonitoringMetrics;
  beforeAll(async () => {
    process.env.METADATA_SERVER_DETECTION = 'none';
    fake = await new CloudMonitoringFake().start();
    cm = new CloudMonitoringMetrics({ endpoint: fake.address });
  });
  afterAll(async () => {
    await cm.close();
    await fake.stop();
  });
  const window = (startMs: number) => ({
    target: run,
    canaryVersion: 'shop-r2',
    baselineVersion: 'shop-r1',
    startMs,
    endMs: Date.now() + 60_000,
  });
  const traffic = (revision: string, requests: number, errors: number, latenciesMs?: number[]) =>
    fake.recordRevisionTraffic({ project: run.project, region: run.region, service: run.service, revision, requests, errors, latenciesMs });

  test('happy, missing and partial data', async () => {
    const start = Date.now() - 1000;
    expect(await cm.collect(window(start))).toMatchObject({ canary: { requests: 0, errors: 0 }, baseline: { requests: 0, errors: 0 } });
    traffic('shop-r2', 50, 5, [100, 120, 900]);
    traffic('shop-r1', 500, 0); // no latency points
    const s = await cm.collect(window(start));
    expect(s.canary).toMatchObject({ requests: 50, errors: 5, latencyStat: 'p99' });
    expect(s.canary.latencyP99Ms!).toBeGreaterThan(500);
    expect(s.baseline).toEqual({ requests: 500, errors: 0 });
  });

  test('UNAVAILABLE is retryable (not a NonRetryableProviderError); PERMISSION_DENIED is final', async () => {
    fake.failNext('ListTimeSeries', 1, Code.PERMISSION_DENIED);
    const denied = await cm.collect(window(Date.now() - 1000)).catch((e) => e);
    expect(denied).toBeInstanceOf(NonRetryableProviderError);
    fake.clear();
    fake.failNext('ListTimeSeries', 1, Code.UNAVAILABLE);
    await expect(cm.preflight(run, 'shop-r1')).resolves.toBeUndefined(); // one blip: the client's retry absorbs it
    fake.failNext('ListTimeSeries', 20, Code.UNAVAILABLE);
    const down = await cm.preflight(run, 'shop-r1').catch((e) => e);
    fake.clear();
    expect(down).toBeInstanceOf(Error);
    expect(down).not.toBeInstanceOf(NonRetryableProviderError); // left to Temporal's retry policy
  });
});
