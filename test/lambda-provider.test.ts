/** The Lambda provider against moto (through the fault proxy): Lambda's rules, idempotency, faults. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FaultProxy, lambdaOp } from '../src/dev/fault-proxy';
import { createSampleFunction, sampleZip, sha256Hex, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { LambdaProvider, lambdaWeightFraction } from '../src/providers/aws-lambda';
import { NonRetryableProviderError } from '../src/providers/types';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { aliasState, publishedVersions } from './support/lambda';

let proxy: FaultProxy;
let p: LambdaProvider;
const motoUrl = () => process.env.ROLLGATE_TEST_MOTO!;
const t: LambdaTargetSpec = { name: 'x', provider: 'aws-lambda', region: 'eu-central-1', function: 'provider-fn', alias: 'live' };

beforeAll(async () => {
  proxy = await new FaultProxy(motoUrl()).start();
  p = new LambdaProvider({ endpoint: proxy.url, credentials: TEST_CREDENTIALS, maxAttempts: 4 });
  await createSampleFunction(motoUrl(), t, { SECRET: 'v' });
});
afterAll(async () => proxy.stop());

async function artifact(text: string) {
  const zip = sampleZip(text);
  const path = join(process.env.ROLLGATE_TEST_STATE!, `${sha256Hex(zip)}.zip`);
  writeFileSync(path, zip);
  return { digest: sha256Hex(zip), path };
}

test('weights: fractions with 0.01 % resolution, only strictly between 0 and 100', () => {
  expect(lambdaWeightFraction(10)).toBe(0.1);
  expect(lambdaWeightFraction(33.333)).toBe(0.3333);
  expect(() => lambdaWeightFraction(0)).toThrow(NonRetryableProviderError);
  expect(() => lambdaWeightFraction(100)).toThrow(/between 0 and 100 exclusive/);
});

test('deploy is idempotent: a second call finds the version instead of publishing again', async () => {
  const a = await artifact('provider v2');
  const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '3' };
  const first = await p.deployRevision(t, a, contract, 'rollout-x');
  const second = await p.deployRevision(t, a, contract, 'rollout-x');
  expect(first).toEqual({ newVersion: '2', created: true });
  expect(second).toEqual({ newVersion: '2', created: false });
  expect(await publishedVersions(motoUrl(), t)).toEqual(['1', '2']);
  expect(proxy.count(lambdaOp.publishVersion('provider-fn'))).toBe(1);
  const fp = await p.fingerprint(t, '2', 'k');
  expect(fp.contract).toEqual({ RELEASE_ID: 'r2', SCHEMA_REV: '3' });
  expect(fp.values.SECRET).toMatch(/^[0-9a-f]{12}$/);
  expect(JSON.stringify(fp)).not.toContain('"v"');
});

test('an artifact changed after the build is refused', async () => {
  const a = await artifact('provider v3');
  writeFileSync(a.path, sampleZip('tampered'));
  await expect(p.deployRevision(t, a, { RELEASE_ID: 'r3', SCHEMA_REV: '3' }, 'rollout-x')).rejects.toThrow(/changed since build/);
});

test("Lambda's alias rules are enforced here (moto does not): no $LATEST, no same version", async () => {
  await expect(p.setTraffic(t, '$LATEST', '2', 10)).rejects.toThrow(/needs published versions/);
  await expect(p.setTraffic(t, '2', '2', 10)).rejects.toThrow(/same/);
  await expect(p.routeAll(t, '$LATEST')).rejects.toBeInstanceOf(NonRetryableProviderError);
});

test('traffic steps are idempotent and throttling is absorbed', async () => {
  const before = proxy.count(lambdaOp.updateAlias('provider-fn'));
  proxy.inject({
    match: lambdaOp.updateAlias('provider-fn'),
    times: 2,
    action: { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded' },
  });
  expect(await p.setTraffic(t, '1', '2', 25)).toEqual({ changed: true });
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '1', weights: { '2': 0.25 } });
  expect(proxy.count(lambdaOp.updateAlias('provider-fn')) - before).toBe(3); // 2 throttled + 1
  expect(await p.setTraffic(t, '1', '2', 25)).toEqual({ changed: false });
  expect(proxy.count(lambdaOp.updateAlias('provider-fn')) - before).toBe(3); // no second shift
  expect(await p.readTraffic(t)).toEqual({ stableVersion: '1', newVersion: '2', newWeight: 25 });
  expect(await p.setTraffic(t, '1', '2', 100)).toEqual({ changed: true });
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '2', weights: {} });
  expect(await p.routeAll(t, '2')).toEqual({ changed: false });
  expect(await p.routeAll(t, '1')).toEqual({ changed: true });
});

test('"update in progress" (ResourceConflictException) waits for the function, then retries', async () => {
  const a = await artifact('provider v4');
  proxy.inject({
    match: lambdaOp.publishVersion('provider-fn'),
    times: 1,
    action: { status: 409, errorType: 'ResourceConflictException', message: 'An update is in progress' },
  });
  const res = await p.deployRevision(t, a, { RELEASE_ID: 'r4', SCHEMA_REV: '4' }, 'rollout-x');
  expect(res).toEqual({ newVersion: '3', created: true });
});

test('a missing function is a non-retryable error naming the target', async () => {
  const ghost = { ...t, function: 'no-such-fn' };
  await expect(p.readTraffic(ghost)).rejects.toThrow(/x: ResourceNotFoundException: .*\(lambda eu-central-1\/no-such-fn\)/);
});
