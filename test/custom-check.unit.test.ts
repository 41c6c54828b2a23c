/** Custom checks against a real local HTTP server: numbers as text or JSON, thresholds, and every way of not getting a number. */
import { createServer, type Server } from 'node:http';
import { preflightCustomCheck, readJsonPath, runCustomCheck, runCustomChecks, type CustomCheckSpec } from '../src/analysis/custom-check';
import { combineVerdicts } from '../src/analysis/threshold-judge';
import { freePort } from '../src/dev/processes';
import type { CloudRunTargetSpec } from '../src/spec/schema';

const target: CloudRunTargetSpec = { name: 'gcp', provider: 'cloud-run', project: 'shop-project', region: 'europe-west1', service: 'shop' };
const ctx = { target, canaryVersion: 'shop-00002', baselineVersion: 'shop-00001' };

let server: Server;
let base: string;
const seen: string[] = [];
/** Drift per revision, as the seed's RAG check would report it. */
const drift: Record<string, string> = { 'shop-00001': '0.012', 'shop-00002': '0.041', 'shop-00003': '0.03' };

beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    seen.push(req.url ?? '');
    const text = (status: number, body: string, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    switch (u.pathname) {
      case '/drift':
        return text(200, `${drift[u.searchParams.get('revision') ?? ''] ?? 'unknown revision'}\n`);
      case '/kpi':
        return text(
          200,
          JSON.stringify({ metrics: { conversion: 0.031, items: [{ v: '17.5' }, { v: 'n/a' }] }, nan: 'NaN', nothing: null }),
          'application/json',
        );
      case '/empty':
        return text(200, '');
      case '/nan':
        return text(200, 'NaN');
      case '/hex':
        return text(200, '0x10');
      case '/html':
        return text(200, '<html>login</html>', 'text/html');
      case '/error':
        return text(503, 'upstream down');
      case '/multiline':
        return text(500, 'Traceback:\n  at handler\n  at main\n');
      case '/hang':
        return; // never answers
      default:
        return text(404, '');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const driftCheck = (): CustomCheckSpec => ({
  name: 'drift',
  url: `${base}/drift?revision={{revision}}&target={{target}}`,
  threshold: 0.03,
  direction: 'higher-is-worse',
});

test('drift above 0.03 fails, below passes, exactly at the threshold passes; reason names value and threshold', async () => {
  const fail = await runCustomCheck(driftCheck(), ctx);
  expect(fail).toEqual({
    verdict: 'fail',
    target: 'gcp',
    metric: 'drift',
    value: 0.041,
    reason: `gcp: custom check drift: drift 0.041 > threshold 0.03 (higher-is-worse) from ${base}/drift?revision=shop-00002&target=gcp`,
  });
  expect(seen).toContain('/drift?revision=shop-00002&target=gcp');
  const pass = await runCustomCheck(driftCheck(), { ...ctx, canaryVersion: 'shop-00001' });
  expect(pass.verdict).toBe('pass');
  expect(pass.reason).toContain('drift 0.012 <= threshold 0.03');
  expect((await runCustomCheck(driftCheck(), { ...ctx, canaryVersion: 'shop-00003' })).verdict).toBe('pass');
});

test('JSON field paths and lower-is-worse (a KPI that must not drop)', async () => {
  const kpi: CustomCheckSpec = {
    name: 'conversion',
    url: `${base}/kpi`,
    json_path: 'metrics.conversion',
    threshold: 0.03,
    direction: 'lower-is-worse',
  };
  const ok = await runCustomCheck(kpi);
  expect(ok.verdict).toBe('pass');
  expect(ok.reason).toBe(`custom check conversion: conversion 0.031 >= threshold 0.03 (lower-is-worse) from ${base}/kpi`);
  const low = await runCustomCheck({ ...kpi, threshold: 0.05 });
  expect(low.verdict).toBe('fail');
  expect(low.reason).toContain('conversion 0.031 < threshold 0.05');
  const nested = await runCustomCheck({
    ...kpi,
    name: 'score',
    json_path: 'metrics.items[0].v',
    threshold: 20,
    direction: 'higher-is-worse',
  });
  expect(nested).toMatchObject({ verdict: 'pass', value: 17.5 });
});

test.each([
  ['plain "NaN"', { url: '/nan' }, 'no value (not a number: "NaN")'],
  ['empty body (not 0)', { url: '/empty' }, 'no value (empty)'],
  ['hex is not accepted as a number', { url: '/hex' }, 'no value (not a number: "0x10")'],
  ['an HTML login page', { url: '/html' }, 'no value (not a number: "<html>login</html>")'],
  [
    'a JSON field that is text',
    { url: '/kpi', json_path: 'metrics.items[1].v' },
    'no value (field metrics.items[1].v not a number: "n/a")',
  ],
  ['a JSON field that is "NaN"', { url: '/kpi', json_path: 'nan' }, 'no value (field nan not a number: "NaN")'],
  ['a JSON null', { url: '/kpi', json_path: 'nothing' }, 'no value (field nothing not a number: null)'],
  ['a missing JSON field', { url: '/kpi', json_path: 'metrics.drift' }, 'no value (field metrics.drift missing)'],
  ['a body that is not JSON', { url: '/nan', json_path: 'x' }, 'no value (body is not JSON (text/plain))'],
  ['HTTP 503', { url: '/error' }, 'no value (HTTP 503: upstream down)'],
  ['HTTP 404', { url: '/missing' }, 'no value (HTTP 404)'],
  [
    'HTTP 500 with a multi-line body (the reason stays one line)',
    { url: '/multiline' },
    'no value (HTTP 500: Traceback: at handler at main)',
  ],
])('inconclusive with a reason: %s', async (_what, over, why) => {
  const v = await runCustomCheck({ ...driftCheck(), ...over, url: `${base}${over.url}` }, ctx);
  expect(v.verdict).toBe('inconclusive');
  expect(v.value).toBeUndefined();
  expect(v.reason).toBe(`gcp: custom check drift: ${why} from ${base}${over.url}; threshold <= 0.03`);
});

test('unreachable and hanging endpoints are inconclusive, within the timeout', async () => {
  const port = await freePort();
  const down = await runCustomCheck({ ...driftCheck(), url: `http://127.0.0.1:${port}/drift` });
  expect(down.verdict).toBe('inconclusive');
  expect(down.reason).toBe(
    `custom check drift: no value (unreachable: ECONNREFUSED) from http://127.0.0.1:${port}/drift; threshold <= 0.03`,
  );
  const t0 = Date.now();
  const hang = await runCustomCheck({ ...driftCheck(), url: `${base}/hang`, timeout_ms: 300 });
  expect(Date.now() - t0).toBeLessThan(2000);
  expect(hang.reason).toContain('no value (timed out after 300 ms)');
});

test('several checks combine: any fail blocks; preflight needs a number from the stable revision', async () => {
  const verdicts = await runCustomChecks(
    [
      driftCheck(),
      { name: 'conversion', url: `${base}/kpi`, json_path: 'metrics.conversion', threshold: 0.03, direction: 'lower-is-worse' },
    ],
    ctx,
  );
  expect(verdicts.map((v) => v.verdict)).toEqual(['fail', 'pass']);
  expect(combineVerdicts(verdicts).reason).toContain('drift 0.041 > threshold 0.03');
  await expect(preflightCustomCheck(driftCheck(), target, 'shop-00001')).resolves.toBe(0.012);
  await expect(preflightCustomCheck({ ...driftCheck(), url: `${base}/error` }, target, 'shop-00001')).rejects.toThrow(
    /^preflight: gcp: custom check drift: no value \(HTTP 503: upstream down\)/,
  );
});

test('readJsonPath', () => {
  const b = { a: { b: [{ c: 1 }, { c: [5, 6] }] } };
  expect(readJsonPath(b, 'a.b[1].c[1]')).toBe(6);
  expect(readJsonPath(b, 'a.x.y')).toBeUndefined();
  expect(readJsonPath([3, 4], '[1]')).toBe(4);
  expect(readJsonPath(b, 'a.b[')).toBeUndefined();
});
