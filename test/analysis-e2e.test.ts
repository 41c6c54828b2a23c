/**
 * Canary analysis end to end on the real Temporal dev server, moto behind the fault proxy, real HTTP
 * endpoints and a real Prometheus (/usr/bin/prometheus):
 * - interval analysis: a canary that degrades mid-bake is rolled back within one interval;
 * - synthetic traffic: a broken canary without real traffic is caught, a healthy one promotes;
 * - custom checks: drift above 0.03 blocks the wave; an unreachable check fails verify;
 * - Prometheus as the metric source: healthy promotes, broken rolls back;
 * - the statistical judge (Mann-Whitney) on synthetic latencies.
 */
import { createServer, type Server } from 'node:http';
import { startRollout } from '../src/client';
import { abortSignal, type RolloutResult, type RolloutStatus } from '../src/contract';
import { lambdaOp, type RecordedCall } from '../src/dev/fault-proxy';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { freePort } from '../src/dev/processes';
import { EXPORTER_METRICS, MetricsExporter, startPrometheus, type PrometheusServer } from '../src/dev/prometheus';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { PrometheusMetrics } from '../src/analysis/prometheus';
import { judgeThreshold } from '../src/analysis/threshold-judge';
import type { LambdaTargetSpec, RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import { TrafficSimulator } from '../src/dev/traffic-simulator';
import { aliasState, watchAliasWrites } from './support/lambda';
import { workflowEvents, type HistoryEvent } from './support/history';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
let exporter: MetricsExporter;
let promReady: Promise<PrometheusServer>;

beforeAll(async () => {
  // Prometheus takes a few seconds to start and scrape: start it now, await it in its own test.
  exporter = await new MetricsExporter().start();
  promReady = startPrometheus({ targets: [exporter.hostPort], scrapeIntervalSeconds: 1 }).then(async (p) => {
    await p.waitForTargetsUp(30_000);
    return p;
  });
  promReady.catch(() => undefined); // reported by the Prometheus test, not as an unhandled rejection
  h = await createHarness('analysis');
  await h.startWorker({ synthetic: { lambda: { endpoint: h.proxy.url, credentials: TEST_CREDENTIALS } } });
});

afterAll(async () => {
  await h?.close();
  await promReady?.then(
    (p) => p.stop(),
    () => undefined,
  );
  await exporter?.stop();
});

/** One Lambda target (canary only) or two (canary + one wave at 100 %). */
function spec(service: string, over: Partial<RolloutSpecInput>, n = 1): RolloutSpec {
  return lambdaSpec(
    h,
    service,
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
      waves: n > 1 ? [{ name: 'wave-1', targets: ['eu-west-1'], steps: [100], bake: '1 second' }] : [],
      ...over,
    },
    n,
  );
}

const fnOf = (s: RolloutSpec) => `${s.service}-fn`;
/** Lambda Invoke of one function with Qualifier = version, as recorded by the fault proxy. */
const invokeOf = (fn: string, version: string) => (c: RecordedCall) => lambdaOp.invoke(fn)(c) && c.path.includes(`Qualifier=${version}`);
const functionError = {
  respond: () => ({ status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: '{"errorMessage":"boom"}' }),
};

async function start(s: RolloutSpec) {
  await createFunctions(h, s);
  return startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue });
}

async function expectStable(s: RolloutSpec) {
  for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
}

async function expectPromoted(s: RolloutSpec) {
  for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
}

async function pausedThenAbort(handle: Awaited<ReturnType<typeof start>>, what: string): Promise<RolloutStatus> {
  const paused = await waitForStatus(handle, (st) => st.state === 'paused', 60_000, what);
  await handle.signal(abortSignal, { by: 'carol' });
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  return paused;
}

const verdicts = (st: RolloutStatus) => st.history.filter((e) => e.kind === 'verdict');
const historyText = (st: RolloutStatus) => st.history.map((e) => `${e.kind}: ${e.text}`).join('\n');

test('a canary that degrades mid-bake is rolled back within one analysis interval, long before the bake ends', async () => {
  const BAKE_MS = 20_000;
  const INTERVAL_MS = 2_000;
  const s = spec(
    'ae-degrade',
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '20 seconds' },
      rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '2 seconds' },
    },
    2,
  );
  const canaryTarget = s.targets[0];
  let broken = false;
  const traffic = simulateTraffic(h, s, (t, v) => broken && t.name === 'us-east-1' && v === '2');
  try {
    const handle = await start(s);
    // Healthy first: at least two interval analyses pass during the canary bake.
    const baking = await waitForStatus(
      handle,
      (st) => st.stage === 'canary' && st.bakeEndsAtMs !== undefined,
      60_000,
      'canary bake started',
    );
    // Seen during the first slice of the bake: the end it announces minus the bake is the analysis window's start.
    expect(verdicts(baking)).toHaveLength(0);
    const windowStartMs = baking.bakeEndsAtMs! - BAKE_MS;
    const healthy = await waitForStatus(
      handle,
      (st) => verdicts(st).filter((e) => e.text.startsWith('pass: us-east-1: error rate')).length >= 2,
      30_000,
      'two passing interval analyses',
    );
    expect(healthy.state).toBe('running');
    expect(healthy.detail).toMatch(/baking .* left: canary 10 %/);

    // Flip: the new version now fails 30 % of its invocations.
    const flipMs = Date.now();
    broken = true;
    // When is the breach readable? Judge the same window ourselves, straight from moto, every 50 ms.
    const cw = new CloudWatchMetrics({ endpoint: h.motoUrl, credentials: TEST_CREDENTIALS });
    let readableMs: number | undefined;
    const watch = (async () => {
      while (readableMs === undefined && Date.now() - flipMs < 15_000) {
        const samples = await cw.collect({
          target: canaryTarget,
          canaryVersion: '2',
          baselineVersion: '1',
          startMs: windowStartMs,
          endMs: Date.now() + 60_000,
        });
        if (judgeThreshold(s.rollback, samples, canaryTarget.name).verdict === 'fail') readableMs = Date.now();
        else await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const paused = await waitForStatus(handle, (st) => st.state === 'paused', 30_000, 'paused after the mid-bake breach');
    await watch;
    traffic.stop();

    const revert = h.proxy.calls.find((c) => c.atMs >= flipMs && lambdaOp.updateAlias(fnOf(s))(c));
    expect(revert).toBeDefined();
    expect(readableMs).toBeDefined();
    const failVerdictMs = verdicts(paused).find((e) => e.text.startsWith('fail:'))!.atMs;
    console.log(
      `mid-bake breach: readable ${readableMs! - flipMs} ms after the flip; first revert call ${revert!.atMs - flipMs} ms after the flip, ` +
        `${revert!.atMs - readableMs!} ms after the breach was readable (fail verdict recorded ${failVerdictMs - readableMs!} ms after readable, ` +
        `revert call ${revert!.atMs - failVerdictMs} ms after the verdict; interval ${INTERVAL_MS} ms, bake ${BAKE_MS} ms)`,
    );
    // Within one interval: the analysis in flight when the breach became readable may still pass,
    // the next one (started at most one interval later) fails. Judged by what happened, not by the
    // clock: on a loaded machine every step takes longer, but not more of them.
    expect(verdicts(paused).filter((e) => e.atMs > readableMs! && e.text.startsWith('pass:')).length).toBeLessThanOrEqual(1);
    // In the workflow's history: the failing analysis ran mid-bake (a bake slice was still to come)
    // and the saga's revert was the next thing scheduled, with no timer in between.
    const events = await workflowEvents(handle);
    const canaryBake = (e: HistoryEvent) => e.type === 'TIMER_FIRED' && /^bake .* at canary 10 %$/.test(e.timer?.summary ?? '');
    const firstRevert = events.findIndex((e) => e.type === 'ACTIVITY_TASK_SCHEDULED' && e.activity === 'routeAll');
    const failing = events
      .slice(0, firstRevert)
      .filter((e) => e.type === 'ACTIVITY_TASK_COMPLETED' && e.activity === 'analyzeCanary')
      .pop()!;
    const between = events.filter((e) => e.id > failing.id && e.id < events[firstRevert].id);
    expect(between.filter((e) => e.type.startsWith('TIMER_') || e.type === 'ACTIVITY_TASK_SCHEDULED')).toEqual([]);
    const slicesBaked = events.slice(0, firstRevert).filter(canaryBake);
    expect(slicesBaked.every((e) => e.timer!.ms === INTERVAL_MS)).toBe(true);
    // Within one interval, in slices: after the breach was readable at most two slice timers fired (the
    // one running then, whose analysis may still pass, and the next); and the bake never reached its end.
    expect(slicesBaked.filter((e) => e.timeMs > readableMs!).length).toBeLessThanOrEqual(2);
    expect(slicesBaked.length).toBeLessThan(BAKE_MS / INTERVAL_MS);
    console.log(
      `mid-bake breach: reverted after ${slicesBaked.length} of ${BAKE_MS / INTERVAL_MS} bake slices (workflow time ${events[firstRevert].timeMs - windowStartMs} ms)`,
    );

    expect(paused.rollbackReason).toMatch(/^us-east-1: error rate \d+\.\d+ % \(canary\) vs \d+\.\d+ % \(baseline\) > threshold/);
    const text = historyText(paused);
    expect(text).toMatch(/stage: stage canary/);
    expect(text).not.toMatch(/stage: stage wave/);
    expect(text).not.toMatch(/eu-west-1 at 100 %/);
    expect(paused.targets.map((t) => t.weight)).toEqual([0, 0]);
    await expectStable(s);
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    traffic.stop();
  }
});

describe('CloudWatch as the metric source, end to end', () => {
  test('a throttled canary and a slow canary are rolled back; no data with on_no_data fail stops at once, with pass promotes', async () => {
    const throttled = spec('ae-cw-throttled', {});
    const slow = spec('ae-cw-slow', { rollback: { max_error_rate_increase_pp: 2, min_requests: 5, p99_latency_ms: 500 } });
    const noDataFail = spec('ae-nodata-fail', { rollback: { min_requests: 5, on_no_data: 'fail' } });
    const noDataPass = spec('ae-nodata-pass', { rollback: { min_requests: 5, on_no_data: 'pass' } }, 2);
    // Simulated CloudWatch metrics for the first two only: the no-data ones get none at all.
    const lambdaTargets = [throttled, slow].flatMap((s) => s.targets) as LambdaTargetSpec[];
    const sim = new TrafficSimulator(h.motoUrl, h.motoUrl, lambdaTargets, {
      requestsPerTick: 100,
      errorRate: () => 0,
      // 30 % of the new version's requests refused by throttling: in Throttles, not in Invocations or Errors.
      throttleRate: (t, v) => (t.function === fnOf(throttled) && v === '2' ? 0.3 : 0),
      durationMs: (t, v) => (t.function === fnOf(slow) && v === '2' ? 900 : 120),
    }).start(250);
    try {
      const [ht, hs, hf, hp] = await Promise.all([start(throttled), start(slow), start(noDataFail), start(noDataPass)]);
      const [pt, ps, pf, rp] = await Promise.all([
        pausedThenAbort(ht, 'throttled canary paused'),
        pausedThenAbort(hs, 'slow canary paused'),
        pausedThenAbort(hf, 'no-data canary paused (on_no_data: fail)'),
        waitForStatus(hp, (st) => st.state !== 'running', 60_000, 'the on_no_data pass rollout to settle'),
      ]);

      expect(pt.rollbackReason).toMatch(
        /^us-east-1: error rate 30\.00 % \(canary, \d+ of \d+ requests throttled\) vs 0\.00 % \(baseline\) > threshold 2\.00 % \(baseline \+ 2 pp\) \[cloudwatch us-east-1\]$/,
      );
      await expectStable(throttled);

      // moto serves no percentiles: the stand-in is Maximum, and the reason says so.
      expect(ps.rollbackReason).toBe('us-east-1: max latency 900 ms (canary) vs 120 ms (baseline) > SLO 500 ms [cloudwatch us-east-1]');
      expect(ps.lastAnalysis).toMatchObject({ verdict: 'fail', metric: 'latency_p99' });
      await expectStable(slow);

      // fail: the first inconclusive verdict stops the rollout, no extension.
      expect(pf.rollbackReason).toBe('us-east-1: no data: 0 canary requests < minimum 5 (cloudwatch us-east-1)');
      expect(verdicts(pf).map((e) => e.text)).toEqual([`inconclusive: ${pf.rollbackReason}`]);
      expect(historyText(pf)).not.toMatch(/extending the bake/);
      await expectStable(noDataFail);

      // pass: an explicit opt-in, recorded for the canary and for the wave; never a silent pass.
      expect(rp.state).toBe('succeeded');
      await expectPromoted(noDataPass);
      const passes = rp.history.filter((e) => /^no data, passing because rollback\.on_no_data is "pass": /.test(e.text));
      expect(passes).toHaveLength(2);
      expect(verdicts(rp).length).toBeGreaterThanOrEqual(2);
      for (const v of verdicts(rp)) expect(v.text).toMatch(/^inconclusive: .*no data: 0 canary requests < minimum 5/);
    } finally {
      sim.stop();
    }
  });
});

describe('synthetic traffic', () => {
  test('catches a broken canary that has no real traffic (on_no_data: synthetic); healthy canaries promote on synthetic traffic alone', async () => {
    // No simulated metrics at all: CloudWatch has nothing for any version.
    const broken = spec('ae-syn-broken', { rollback: { min_requests: 5, on_no_data: 'synthetic' } });
    const healthyFallback = spec('ae-syn-ok', { rollback: { min_requests: 5, on_no_data: 'synthetic' } }, 2);
    const healthyOnly = spec(
      'ae-syn-only',
      {
        canary: { targets: ['us-east-1'], weight: 10, bake: '2 seconds' },
        rollback: {
          min_requests: 5,
          interval: '1 second',
          metrics: {
            'aws-lambda': { source: 'synthetic', synthetic: { requests: 30, payload: { synthetic: 'hello' }, expect_contains: 'hello' } },
          },
        },
      },
      2,
    );
    const wrongAnswer = spec('ae-syn-content', {
      rollback: {
        min_requests: 5,
        metrics: {
          'aws-lambda': { source: 'synthetic', synthetic: { requests: 30, payload: { synthetic: 'hello' }, expect_contains: 'hello' } },
        },
      },
    });
    // Once they serve canary traffic (the probe in verify passed), the new version of one function
    // fails every invocation, the other's answers 200 without what callers expect.
    const fn = fnOf(broken);
    const afterCanaryShift = (f: string) => (c: RecordedCall) => invokeOf(f, '2')(c) && h.proxy.count(lambdaOp.updateAlias(f)) > 0;
    h.proxy.inject({ match: afterCanaryShift(fn), times: 1_000_000, action: functionError });
    h.proxy.inject({
      match: afterCanaryShift(fnOf(wrongAnswer)),
      times: 1_000_000,
      action: { respond: () => ({ status: 200, body: '{"answer":"index missing"}' }) },
    });
    const [b, ok1, ok2, w] = await Promise.all([start(broken), start(healthyFallback), start(healthyOnly), start(wrongAnswer)]);
    const [paused, r1, r2, pausedW] = await Promise.all([
      pausedThenAbort(b, 'broken synthetic canary paused'),
      ok1.result() as Promise<RolloutResult>,
      ok2.result() as Promise<RolloutResult>,
      pausedThenAbort(w, 'wrong-answer canary paused'),
    ]);
    expect(pausedW.rollbackReason).toMatch(
      /^us-east-1: error rate 100\.00 % \(canary\) vs 0\.00 % \(baseline\) > threshold 2\.00 % \(baseline \+ 2 pp\) \[synthetic 30 requests\/revision; canary failures: response lacks "hello"\]$/,
    );
    await expectStable(wrongAnswer);

    expect(paused.rollbackReason).toMatch(
      /^us-east-1: error rate 100\.00 % \(canary\) vs 0\.00 % \(baseline\) > threshold 2\.00 % \(baseline \+ 2 pp\) \[synthetic 50 requests\/revision; canary failures: FunctionError Unhandled\]$/,
    );
    expect(historyText(paused)).toMatch(/no data, switching to synthetic traffic: us-east-1: no data: 0 canary requests/);
    // 50 synthetic invocations of each version went through the proxy (plus the probe on version 2, and the preflight on 1).
    expect(h.proxy.count(invokeOf(fn, '2'))).toBeGreaterThanOrEqual(51);
    expect(h.proxy.count(invokeOf(fn, '1'))).toBeGreaterThanOrEqual(51);
    await expectStable(broken);

    for (const [r, s] of [
      [r1, healthyFallback],
      [r2, healthyOnly],
    ] as const) {
      expect(r.state).toBe('succeeded');
      await expectPromoted(s);
    }
    // The fallback: CloudWatch had no data, synthetic traffic passed the canary and the wave.
    expect(historyText(r1.status).match(/no data, switching to synthetic traffic/g)?.length).toBe(2);
    expect(verdicts(r1.status).filter((e) => /^pass: us-east-1: error rate 0\.00 % \(canary, 50 req\)/.test(e.text))).toHaveLength(1);
    // Synthetic as the metric source: every analysis (interval and bake end) sent 30 requests per version, no CloudWatch reads needed.
    expect(historyText(r2.status)).not.toMatch(/no data/);
    expect(
      verdicts(r2.status).filter((e) => /^pass: us-east-1: error rate 0\.00 % \(canary, 30 req\)/.test(e.text)).length,
    ).toBeGreaterThanOrEqual(2);
    expect(h.proxy.count(invokeOf(fnOf(healthyOnly), '2'))).toBeGreaterThanOrEqual(60);
  });

  test('synthetic traffic that is itself inconclusive extends the bake, then fails: never a silent pass', async () => {
    // No real traffic, and the synthetic fallback sends fewer requests than the minimum.
    const s = spec('ae-syn-few', {
      rollback: { min_requests: 20, on_no_data: 'synthetic', max_extensions: 1, metrics: { 'aws-lambda': { synthetic: { requests: 5 } } } },
    });
    const paused = await pausedThenAbort(await start(s), 'paused after inconclusive synthetic traffic');
    expect(paused.rollbackReason).toMatch(
      /^us-east-1: no data: 5 canary requests < minimum 20 \(synthetic 5 requests\/revision\) \(synthetic traffic, after 1 extension\(s\)\)$/,
    );
    const text = historyText(paused);
    expect(text.match(/no data, switching to synthetic traffic/g)).toHaveLength(2);
    expect(text.match(/synthetic traffic inconclusive, extending the bake \(1\/1\)/g)).toHaveLength(1);
    expect(verdicts(paused).some((e) => e.text.startsWith('pass:'))).toBe(false);
    // 5 synthetic invocations of each version per try, two tries.
    expect(h.proxy.count(invokeOf(fnOf(s), '1'))).toBeGreaterThanOrEqual(10);
    await expectStable(s);
  });
});

describe('custom checks', () => {
  let server: Server;
  let checkUrl: string;
  const seen: string[] = [];
  beforeAll(async () => {
    // A RAG quality endpoint: retrieval drift per service and revision.
    server = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      seen.push(`${u.pathname}?${u.searchParams.toString()}`);
      const service = u.pathname.split('/')[2];
      const drift = service === 'ae-drift-bad' && u.searchParams.get('rev') === '2' ? 0.041 : 0.01;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ rag: { drift, n: 200 } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    checkUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/drift`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const driftCheck = (url: string) => ({
    name: 'drift',
    url,
    json_path: 'rag.drift',
    threshold: 0.03,
    direction: 'higher-is-worse' as const,
    timeout: '2 seconds',
  });

  test('drift 0.041 > 0.03 on the canary blocks the wave; drift 0.01 promotes', async () => {
    const bad = spec(
      'ae-drift-bad',
      { rollback: { min_requests: 5, custom_checks: [driftCheck(`${checkUrl}/ae-drift-bad?rev={{revision}}&t={{target}}`)] } },
      2,
    );
    const good = spec(
      'ae-drift-ok',
      { rollback: { min_requests: 5, custom_checks: [driftCheck(`${checkUrl}/ae-drift-ok?rev={{revision}}&t={{target}}`)] } },
      2,
    );
    const traffic = [simulateTraffic(h, bad), simulateTraffic(h, good)];
    try {
      const [b, g] = await Promise.all([start(bad), start(good)]);
      const [paused, ok] = await Promise.all([pausedThenAbort(b, 'paused after the drift breach'), g.result() as Promise<RolloutResult>]);

      expect(paused.rollbackReason).toBe(
        `us-east-1: custom check drift: drift 0.041 > threshold 0.03 (higher-is-worse) from ${checkUrl}/ae-drift-bad?rev=2&t=us-east-1`,
      );
      const text = historyText(paused);
      expect(text).toMatch(/verdict: fail: us-east-1: custom check drift: drift 0.041 > threshold 0.03/);
      expect(text).not.toMatch(/stage: stage wave:wave-1/);
      expect(text).not.toMatch(/eu-west-1 at 100 %/);
      expect(paused.targets.map((t) => [t.name, t.weight])).toEqual([
        ['us-east-1', 0],
        ['eu-west-1', 0],
      ]);
      await expectStable(bad);
      // The preflight asked about the stable version, the analysis about the canary.
      expect(seen).toContain('/drift/ae-drift-bad?rev=1&t=us-east-1');
      expect(seen).toContain('/drift/ae-drift-bad?rev=2&t=us-east-1');

      expect(ok.state).toBe('succeeded');
      await expectPromoted(good);
      const okText = historyText(ok.status);
      expect(okText).toMatch(/stage: stage wave:wave-1/);
      // Checked on every analysed target: the canary and the wave's.
      expect(seen).toContain('/drift/ae-drift-ok?rev=2&t=us-east-1');
      expect(seen).toContain('/drift/ae-drift-ok?rev=2&t=eu-west-1');
      expect(okText).toMatch(/verdict: pass: .*custom check drift: drift 0.01 <= threshold 0.03/);
    } finally {
      traffic.forEach((t) => t.stop());
    }
  });

  test('an unreachable check endpoint fails verify before any traffic moves', async () => {
    const port = await freePort(); // nothing listens there
    const s = spec('ae-drift-down', {
      rollback: { min_requests: 5, custom_checks: [driftCheck(`http://127.0.0.1:${port}/drift?rev={{revision}}`)] },
    });
    const aliasWrites = watchAliasWrites(h.proxy);
    const handle = await start(s);
    const paused = await pausedThenAbort(handle, 'paused after the failed preflight');
    aliasWrites.stop();
    expect(paused.rollbackReason).toMatch(
      /^stage verify failed: custom check drift preflight failed for us-east-1: .*no value \(unreachable: ECONNREFUSED\) from http:\/\/127\.0\.0\.1:\d+\/drift\?rev=1/,
    );
    expect(historyText(paused)).not.toMatch(/stage: stage canary/);
    // No traffic moved (the revert's alias write only adds its fence mark, on version 1).
    expect(aliasWrites.forward(fnOf(s), '1')).toEqual([]);
    await expectStable(s);
  });
});

describe('Prometheus as the metric source', () => {
  const { requests: REQ, latency: LAT } = EXPORTER_METRICS;
  // The exporter labels series "FUNCTION:VERSION": the queries select them by {{function}} and {{version}} / {{revision}}.
  const prometheusBlock = (url: string) => ({
    url,
    requests: `sum(increase(${REQ}{revision="{{function}}:{{version}}"}[{{window}}]))`,
    errors: `sum(increase(${REQ}{revision="{{function}}:{{version}}",code=~"5.."}[{{window}}]))`,
    latency_p99_ms: `histogram_quantile(0.99, sum by (le) (rate(${LAT}_bucket{revision="{{function}}:{{revision}}"}[{{window}}]))) * 1000`,
    min_window: '3 seconds',
  });

  test('a healthy canary promotes and a broken one rolls back, judged on real Prometheus data', async () => {
    const prom = await promReady;
    const rollback = (): RolloutSpecInput['rollback'] => ({
      min_requests: 5,
      p99_latency_ms: 500,
      interval: '1 second',
      metrics: { 'aws-lambda': { source: 'prometheus', prometheus: prometheusBlock(prom.url) } },
    });
    const good = spec('ae-prom-ok', { canary: { targets: ['us-east-1'], weight: 10, bake: '4 seconds' }, rollback: rollback() });
    // A long bake for the broken one: only an interval analysis can catch it before its end.
    const bad = spec('ae-prom-bad', { canary: { targets: ['us-east-1'], weight: 10, bake: '30 seconds' }, rollback: rollback() });
    // The stable versions have served traffic for a while (preflight needs their series).
    exporter.set('ae-prom-ok-fn:1', { requests: 50, errors: 0, latencyMs: 40 });
    exporter.set('ae-prom-bad-fn:1', { requests: 50, errors: 0, latencyMs: 40 });
    // Wait until the rollout's own preflight passes against Prometheus for both stable series (a
    // scrape counted by the exporter is not yet a queryable increase() on a loaded machine, and the
    // preflight needs the latency histogram too).
    const block = prometheusBlock(prom.url);
    const preflight = new PrometheusMetrics({
      url: block.url,
      queries: { 'aws-lambda': { requests: block.requests, errors: block.errors, latency_p99_ms: block.latency_p99_ms } },
      minWindowSeconds: 3,
    });
    for (const s of [good, bad]) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const err = await preflight.preflight(s.targets[0], '1').then(
          () => undefined,
          (e: Error) => e,
        );
        if (!err) break;
        if (Date.now() > deadline) throw new Error(`Prometheus never answered the preflight for ${s.service}: ${err.message}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const [g, b] = await Promise.all([start(good), start(bad)]);
    // The canary versions get traffic once the canary starts.
    await Promise.all([
      waitForStatus(g, (st) => st.stage === 'canary', 60_000, 'healthy canary started').then(() =>
        exporter.set('ae-prom-ok-fn:2', { requests: 10, errors: 0, latencyMs: 40 }),
      ),
      waitForStatus(b, (st) => st.stage === 'canary', 60_000, 'broken canary started').then(() =>
        exporter.set('ae-prom-bad-fn:2', { requests: 10, errors: 5, latencyMs: 40 }),
      ),
    ]);
    const [ok, paused] = await Promise.all([g.result() as Promise<RolloutResult>, pausedThenAbort(b, 'broken Prometheus canary paused')]);

    expect(ok.state).toBe('succeeded');
    await expectPromoted(good);
    expect(
      verdicts(ok.status).some((e) =>
        /^pass: us-east-1: error rate 0\.00 % \(canary, \d+(\.\d)? req\) .*; p99 \d+ ms <= SLO 500 ms \[prometheus http:/.test(e.text),
      ),
    ).toBe(true);
    // 50 % errors can only come from the exporter: CloudWatch has no data for these functions.
    expect(paused.rollbackReason).toMatch(
      /^us-east-1: error rate 50\.00 % \(canary\) vs 0\.00 % \(baseline\) > threshold 2\.00 % \(baseline \+ 2 pp\) \[prometheus http:\/\/127\.0\.0\.1:\d+\]$/,
    );
    // Caught by an interval analysis: in workflow time, the revert was scheduled before the 30 s bake could end.
    const events = await workflowEvents(b);
    const bakeStart = events.find((e) => e.type === 'TIMER_STARTED' && /^bake .* at canary 10 %$/.test(e.timer?.summary ?? ''))!;
    const revert = events.find((e) => e.type === 'ACTIVITY_TASK_SCHEDULED' && e.activity === 'routeAll')!;
    expect(revert.timeMs - bakeStart.timeMs).toBeLessThan(30_000);
    await expectStable(bad);
  });
});

test('the statistical judge fails a canary with clearly worse latency (synthetic traffic as the source)', async () => {
  const s = spec('ae-stat', {
    rollback: {
      judge: { kind: 'statistical' },
      metrics: { 'aws-lambda': { source: 'synthetic', synthetic: { requests: 50, concurrency: 8 } } },
    },
  });
  h.proxy.inject({ match: invokeOf(fnOf(s), '2'), times: 1_000_000, action: { delayMs: 150 } });
  const handle = await start(s);
  const paused = await pausedThenAbort(handle, 'slow canary paused');
  expect(paused.rollbackReason).toMatch(
    /^us-east-1: statistical \(synthetic 50 requests\/revision\): score 60 < marginal 75: latency: canary median (\d+(\.\d+)?) ms vs baseline \d+(\.\d+)? ms \(x\d+(\.\d+)? > allowed x1\.1\), p=\S+ < 0\.05 \(Mann-Whitney one-sided \(higher-is-worse\).*n=50\/50\): worse$/,
  );
  const median = Number(/canary median (\d+(?:\.\d+)?) ms/.exec(paused.rollbackReason!)![1]);
  expect(median).toBeGreaterThanOrEqual(150);
  await expectStable(s);
});
