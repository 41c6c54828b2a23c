/**
 * Synthetic traffic against real endpoints: a local HTTP server (a broken canary answers 500s, a
 * slow one takes longer) and moto's Lambda Invoke with a Qualifier, with failures injected by the
 * fault proxy in front of moto.
 */
import type { ThresholdRule } from '../src/analysis/threshold-judge';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  httpEndpoints,
  lambdaEndpoints,
  SYNTHETIC_LIMITS,
  SyntheticTraffic,
  type SyntheticRevisionSamples,
} from '../src/analysis/synthetic';
import { judgeThreshold } from '../src/analysis/threshold-judge';
import { analyzeStatistical, DEFAULT_STATISTICAL_CONFIG } from '../src/analysis/statistical-judge';
import { NonRetryableProviderError } from '../src/providers/types';
import { FaultProxy, lambdaOp } from '../src/dev/fault-proxy';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { freePort } from '../src/dev/processes';
import type { CloudRunTargetSpec, LambdaTargetSpec } from '../src/spec/schema';

const run: CloudRunTargetSpec = { name: 'gcp', provider: 'cloud-run', project: 'shop-project', region: 'europe-west1', service: 'shop' };
const RULE: ThresholdRule = { max_error_rate_increase_pp: 2, min_requests: 20 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Revision "servers" by path prefix: /<revision>/... with behaviour set per revision. */
type Behaviour = { status: number; delayMs: number; hang?: boolean };
let server: Server;
let base: string;
const behaviour = new Map<string, Behaviour>();
const hits = new Map<string, number>();
let inFlight = 0;
let maxInFlight = 0;

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const rev = (req.url ?? '/').split('/')[1];
    const b = behaviour.get(rev) ?? { status: 404, delayMs: 0 };
    hits.set(rev, (hits.get(rev) ?? 0) + 1);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const done = () => {
      inFlight--;
      res.writeHead(b.status, { 'content-type': 'text/plain' });
      res.end(b.status === 200 ? `hello from ${rev}` : 'internal error');
    };
    if (b.hang) {
      res.on('close', () => inFlight--);
      return; // never answers
    }
    setTimeout(done, b.delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

beforeEach(() => {
  behaviour.clear();
  hits.clear();
  maxInFlight = 0;
});

const http = (over: Partial<ConstructorParameters<typeof SyntheticTraffic>[0]> = {}, timeoutMs = 2000) =>
  new SyntheticTraffic({
    resolve: httpEndpoints({ url: (_t, version) => `${base}/${version}/healthz`, timeoutMs, expectContains: 'hello' }),
    requests: 40,
    concurrency: 4,
    timeoutMs,
    ...over,
  });
const win = (target: CloudRunTargetSpec | LambdaTargetSpec, canaryVersion: string, baselineVersion: string) => ({
  target,
  canaryVersion,
  baselineVersion,
  startMs: Date.now(),
  endMs: Date.now(),
});

test('HTTP: a broken canary (500s) is detected without any real traffic; the stable one is clean', async () => {
  behaviour.set('shop-00002', { status: 500, delayMs: 2 });
  behaviour.set('shop-00001', { status: 200, delayMs: 2 });
  const p = http();
  await p.preflight(run, 'shop-00001');
  const s = await p.collect(win(run, 'shop-00002', 'shop-00001'));
  expect(s.canary).toMatchObject({ requests: 40, errors: 40, latencyStat: 'p99' });
  expect(s.baseline).toMatchObject({ requests: 40, errors: 0 });
  expect((s.canary as SyntheticRevisionSamples).latencies).toHaveLength(40);
  expect(hits.get('shop-00002')).toBe(40);
  expect(hits.get('shop-00001')).toBe(40 + 1); // + the preflight request
  expect(s.source).toBe('synthetic 40 requests/revision; canary failures: HTTP 500');
  const v = judgeThreshold(RULE, s, run.name);
  expect(v.verdict).toBe('fail');
  expect(v.reason).toBe('gcp: error rate 100.00 % (canary) vs 0.00 % (baseline) > threshold 2.00 % (baseline + 2 pp)');
  expect(
    analyzeStatistical(
      { ...DEFAULT_STATISTICAL_CONFIG, metrics: [{ ...DEFAULT_STATISTICAL_CONFIG.metrics[0], min_samples: 20 }], groups: {} },
      s,
      run.name,
    ).verdict.verdict,
  ).toBe('fail');
});

test('HTTP: a slow canary fails the statistical judge on its raw latency samples', async () => {
  behaviour.set('slow', { status: 200, delayMs: 60 });
  behaviour.set('fast', { status: 200, delayMs: 5 });
  const s = await http({ requests: 30, concurrency: 6 }).collect(win(run, 'slow', 'fast'));
  expect(s.canary.errors).toBe(0);
  expect(s.canary.latencyP99Ms!).toBeGreaterThan(55);
  const latencyOnly = {
    ...DEFAULT_STATISTICAL_CONFIG,
    groups: {},
    metrics: [{ ...DEFAULT_STATISTICAL_CONFIG.metrics[1], min_samples: 20 }],
  };
  const r = analyzeStatistical(latencyOnly, s, run.name);
  expect(r.verdict.verdict).toBe('fail');
  const lat = r.metrics.find((m) => m.name === 'latency')!;
  expect(lat.classification).toBe('worse');
  expect(lat.reason).toMatch(
    /^latency: canary median \d+(\.\d+)? ms vs baseline \d+(\.\d+)? ms \(x\d+(\.\d+)? > allowed x1\.1\), p=\S+ < 0\.05/,
  );
});

test('HTTP: request count and concurrency are capped; the caps hold against a real server', async () => {
  behaviour.set('a', { status: 200, delayMs: 15 });
  behaviour.set('b', { status: 200, delayMs: 15 });
  const p = http({ requests: 1_000_000, concurrency: 1000 });
  expect(p.requests).toBe(SYNTHETIC_LIMITS.maxRequests);
  expect(p.concurrency).toBe(SYNTHETIC_LIMITS.maxConcurrency);
  const s = await p.collect(win(run, 'a', 'b'));
  expect(s.canary.requests).toBe(SYNTHETIC_LIMITS.maxRequests);
  expect(hits.get('a')).toBe(SYNTHETIC_LIMITS.maxRequests);
  expect(hits.get('b')).toBe(SYNTHETIC_LIMITS.maxRequests);
  expect(maxInFlight).toBeLessThanOrEqual(2 * SYNTHETIC_LIMITS.maxConcurrency); // both revisions at once
  expect(maxInFlight).toBeGreaterThan(SYNTHETIC_LIMITS.maxConcurrency / 2);
});

test('HTTP: a hanging canary costs at most the per-request timeout and counts as errors', async () => {
  behaviour.set('hang', { status: 200, delayMs: 0, hang: true });
  behaviour.set('ok', { status: 200, delayMs: 1 });
  const t0 = Date.now();
  const s = await http({ requests: 8, concurrency: 4 }, 300).collect(win(run, 'hang', 'ok'));
  expect(Date.now() - t0).toBeLessThan(2 * 300 + 1500); // two rounds of 4, plus slack
  expect(s.canary.errors).toBe(8);
  expect(s.source).toContain('timed out after 300 ms');
  expect(Math.min(...(s.canary as SyntheticRevisionSamples).latencies)).toBeGreaterThanOrEqual(290);
  expect(s.baseline.errors).toBe(0);
});

test('HTTP preflight: a stable endpoint that is down or failing fails preflight with the reason', async () => {
  const port = await freePort();
  const down = new SyntheticTraffic({ resolve: httpEndpoints({ url: () => `http://127.0.0.1:${port}/` }) });
  const err = await down.preflight(run, 'shop-00001').catch((e: Error) => e);
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect((err as Error).message).toBe('synthetic traffic: the stable version shop-00001 of gcp failed a test request: ECONNREFUSED');
  behaviour.set('broken-stable', { status: 503, delayMs: 0 });
  await expect(http().preflight(run, 'broken-stable')).rejects.toThrow(/failed a test request: HTTP 503/);
});

describe('Lambda Invoke with a Qualifier (moto behind the fault proxy)', () => {
  let proxy: FaultProxy;
  const fn: LambdaTargetSpec = { name: 'eu', provider: 'aws-lambda', region: 'eu-west-1', function: 'synthetic-fn', alias: 'live' };

  beforeAll(async () => {
    const moto = process.env.ROLLGATE_TEST_MOTO;
    if (!moto) throw new Error('moto is not running: run through jest (globalSetup starts it)');
    proxy = await new FaultProxy(moto).start();
  });
  afterAll(async () => proxy?.stop());
  afterEach(() => proxy.clearFaults());

  const lambda = (requests = 20) =>
    new SyntheticTraffic({
      resolve: lambdaEndpoints({ endpoint: proxy.url, credentials: TEST_CREDENTIALS, payload: { synthetic: true } }),
      requests,
      concurrency: 4,
    });
  const invokes = (qualifier: string) => proxy.count((c) => lambdaOp.invoke(fn.function)(c) && c.path.includes(`Qualifier=${qualifier}`));

  test('a canary version raising FunctionError is detected; the stable version echoes fine', async () => {
    // moto without Docker echoes the payload; Lambda reports a handler error as 200 + X-Amz-Function-Error.
    proxy.inject({
      match: (c) => lambdaOp.invoke(fn.function)(c) && c.path.includes('Qualifier=2'),
      times: 1000,
      action: {
        respond: () => ({ status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: JSON.stringify({ errorMessage: 'boom' }) }),
      },
    });
    const before = { c: invokes('2'), b: invokes('1') };
    const p = lambda();
    await p.preflight(fn, '1');
    const s = await p.collect(win(fn, '2', '1'));
    expect(invokes('2') - before.c).toBe(20);
    expect(invokes('1') - before.b).toBe(21);
    expect(s.canary).toMatchObject({ requests: 20, errors: 20 });
    expect(s.baseline).toMatchObject({ requests: 20, errors: 0 });
    expect(s.source).toBe('synthetic 20 requests/revision; canary failures: FunctionError Unhandled');
    expect(judgeThreshold(RULE, s, fn.name).verdict).toBe('fail');
  });

  test('throttles and 5xx count as errors (no SDK retries); partial failure gives a partial error rate', async () => {
    const match = (c: Parameters<ReturnType<typeof lambdaOp.invoke>>[0]) =>
      lambdaOp.invoke(fn.function)(c) && c.path.includes('Qualifier=3');
    proxy.inject({ match, times: 3, action: { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded' } });
    proxy.inject({ match, times: 2, action: { status: 500, errorType: 'ServiceException', message: 'boom' } });
    const before = invokes('3');
    const s = await lambda(20).collect(win(fn, '3', '1'));
    expect(invokes('3') - before).toBe(20); // one call per request: no retries
    expect(s.canary.errors).toBe(5);
    expect(s.source).toMatch(/TooManyRequestsException/);
    expect(s.source).toMatch(/ServiceException/);
    const v = judgeThreshold(RULE, s, fn.name);
    expect(v.verdict).toBe('fail');
    expect(v.reason).toContain('error rate 25.00 % (canary) vs 0.00 % (baseline)');
  });

  test('a slow Invoke is cut at the timeout', async () => {
    proxy.inject({ match: (c) => lambdaOp.invoke(fn.function)(c) && c.path.includes('Qualifier=4'), times: 2, action: { delayMs: 1500 } });
    const p = new SyntheticTraffic({
      resolve: lambdaEndpoints({ endpoint: proxy.url, credentials: TEST_CREDENTIALS, timeoutMs: 400 }),
      requests: 4,
      concurrency: 2,
      timeoutMs: 400,
    });
    const s = await p.collect(win(fn, '4', '1'));
    expect(s.canary.errors).toBe(2);
    expect(s.source).toContain('timed out after 400 ms');
    await sleep(1200); // let the delayed proxy answers drain before the proxy stops
  });

  test('the Lambda resolver refuses other target kinds', async () => {
    await expect(lambda().preflight(run, 'x')).rejects.toThrow(/lambda synthetic traffic cannot reach cloud-run target gcp/);
  });
});
