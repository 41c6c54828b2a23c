/** The Lambda provider against moto (through the fault proxy): Lambda's rules, idempotency, faults. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { FaultProxy, lambdaOp, type RecordedCall } from '../src/dev/fault-proxy';
import { createSampleFunction, sampleZip, sha256Hex, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { LambdaProvider, lambdaWeightFraction } from '../src/providers/aws-lambda';
import { NonRetryableProviderError } from '../src/providers/types';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { aliasState, publishedVersions } from './support/lambda';

let proxy: FaultProxy;
let p: LambdaProvider;
const motoUrl = () => process.env.ROLLGATE_TEST_MOTO!;

beforeAll(async () => {
  proxy = await new FaultProxy(motoUrl()).start();
  p = new LambdaProvider({ endpoint: proxy.url, credentials: TEST_CREDENTIALS, maxAttempts: 4 });
});
afterAll(async () => proxy.stop());

/** Each test its own function at version 1 (alias live -> 1): no test depends on what another one published. */
async function freshFunction(name: string): Promise<LambdaTargetSpec> {
  const t: LambdaTargetSpec = { name: 'x', provider: 'aws-lambda', region: 'eu-central-1', function: `provider-${name}`, alias: 'live' };
  await createSampleFunction(motoUrl(), t, { SECRET: 'v' });
  return t;
}

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
  const t = await freshFunction('idempotent');
  const a = await artifact('provider v2');
  const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '3' };
  const first = await p.deployRevision(t, a, contract, 'rollout-x');
  const second = await p.deployRevision(t, a, contract, 'rollout-x');
  expect(first).toEqual({ newVersion: '2', created: true });
  expect(second).toEqual({ newVersion: '2', created: false });
  expect(await publishedVersions(motoUrl(), t)).toEqual(['1', '2']);
  expect(proxy.count(lambdaOp.publishVersion(t.function))).toBe(1);
  const fp = await p.fingerprint(t, '2', 'k');
  expect(fp.contract).toEqual({ RELEASE_ID: 'r2', SCHEMA_REV: '3' });
  expect(fp.values.SECRET).toMatch(/^[0-9a-f]{12}$/);
  // Salted by the key it is given: another key, another hash of the same value; the same key, the same hash.
  expect((await p.fingerprint(t, '2', 'another-key')).values.SECRET).not.toBe(fp.values.SECRET);
  expect((await p.fingerprint(t, '2', 'k')).values.SECRET).toBe(fp.values.SECRET);
  expect(JSON.stringify(fp)).not.toContain('"v"');
});

test('an artifact changed after the build is refused', async () => {
  const t = await freshFunction('tampered');
  const a = await artifact('provider v3');
  writeFileSync(a.path, sampleZip('tampered'));
  await expect(p.deployRevision(t, a, { RELEASE_ID: 'r3', SCHEMA_REV: '3' }, 'rollout-x')).rejects.toThrow(/changed since build/);
});

test("Lambda's alias rules are enforced here (moto does not): no $LATEST, no same version", async () => {
  const t = await freshFunction('alias-rules');
  await expect(p.setTraffic(t, '$LATEST', '2', 10)).rejects.toThrow(/needs published versions/);
  await expect(p.setTraffic(t, '2', '2', 10)).rejects.toThrow(/same/);
  await expect(p.routeAll(t, '$LATEST')).rejects.toBeInstanceOf(NonRetryableProviderError);
});

test('traffic steps are idempotent and throttling is absorbed', async () => {
  const t = await freshFunction('traffic');
  expect(await p.deployRevision(t, await artifact('provider traffic v2'), { RELEASE_ID: 'r2', SCHEMA_REV: '3' }, 'rollout-x')).toEqual({
    newVersion: '2',
    created: true,
  });
  const updates = () => proxy.count(lambdaOp.updateAlias(t.function));
  const before = updates();
  proxy.inject({
    match: lambdaOp.updateAlias(t.function),
    times: 2,
    action: { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded' },
  });
  expect(await p.setTraffic(t, '1', '2', 25)).toEqual({ changed: true });
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '1', weights: { '2': 0.25 } });
  expect(updates() - before).toBe(3); // 2 throttled + 1
  expect(await p.setTraffic(t, '1', '2', 25)).toEqual({ changed: false });
  expect(updates() - before).toBe(3); // no second shift
  expect(await p.readTraffic(t)).toEqual({ stableVersion: '1', newVersion: '2', newWeight: 25 });
  expect(await p.setTraffic(t, '1', '2', 100)).toEqual({ changed: true });
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '2', weights: {} });
  expect(await p.routeAll(t, '2')).toEqual({ changed: false });
  expect(await p.routeAll(t, '1')).toEqual({ changed: true });
});

/** A function at 90 % on 1 and 10 % on 2, and every alias update failing slowly (503 after 400 ms). */
async function splitWithFailingUpdates(name: string): Promise<{ t: LambdaTargetSpec; updates: () => number }> {
  const t = await freshFunction(name);
  await p.deployRevision(t, await artifact(`provider ${name} v2`), { RELEASE_ID: 'r2', SCHEMA_REV: '3' }, 'rollout-x');
  await p.setTraffic(t, '1', '2', 10);
  const isUpdate = lambdaOp.updateAlias(t.function);
  const before = proxy.count(isUpdate);
  proxy.inject({ match: isUpdate, times: 100, action: { status: 503, errorType: 'ServiceException', afterMs: 400 } });
  return { t, updates: () => proxy.count(isUpdate) - before };
}

test("the SDK's own retries of a write stop at the activity's deadline: a revert timed out by the server sends nothing more", async () => {
  const { t, updates } = await splitWithFailingUpdates('late-retry');
  const now = Date.now();
  // rollback.revert_retry_for runs out 250 ms from now, while the first update is in flight.
  const env = new MockActivityEnvironment({
    scheduledTimestampMs: now,
    scheduleToCloseTimeoutMs: 250,
    currentAttemptScheduledTimestampMs: now,
    startToCloseTimeoutMs: 120_000,
  });
  const err = await env.run(() => p.routeAll(t, '1', { revert: true })).catch((e: unknown) => e);
  // The failure is the answer that kept failing (what the escalation names), not the stop.
  expect(err).not.toBeInstanceOf(CancelledFailure);
  expect((err as Error).message).toBe('x: ServiceException: Lambda service error, HTTP 503 (lambda eu-central-1/provider-late-retry)');
  await new Promise((r) => setTimeout(r, 1_500)); // past any backoff the SDK would have waited
  expect(updates()).toBe(1); // without the guard: all 4 of the client's attempts

  // An attempt that reaches its write only after the deadline sends none; it names the earlier attempts' error if any.
  const late = (heartbeatDetails?: unknown) =>
    new MockActivityEnvironment({ scheduledTimestampMs: now, scheduleToCloseTimeoutMs: 1, heartbeatDetails }).run(() =>
      p.routeAll(t, '1', { revert: true }).catch((e: unknown) => e),
    );
  expect(((await late({ lastError: 'x: ServiceException: HTTP 503' })) as Error).message).toBe('x: ServiceException: HTTP 503');
  expect(((await late()) as Error).message).toBe(
    "the activity's deadline passed before UpdateAliasCommand (lambda eu-central-1): not sent",
  );
  expect(updates()).toBe(1);
  proxy.clearFaults();
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '1', weights: { '2': 0.1 } });
});

test('a cancelled traffic step sends no SDK retry of a write: the one in flight is let finish, none follows', async () => {
  const { t, updates } = await splitWithFailingUpdates('cancel-retry');
  // No schedule-to-close (what the server sends for a forward step): the mock's default would have ended in 1970.
  const env = new MockActivityEnvironment({
    scheduleToCloseTimeoutMs: 0,
    startToCloseTimeoutMs: 120_000,
    currentAttemptScheduledTimestampMs: Date.now(),
  });
  const step = env.run(() => p.setTraffic(t, '1', '2', 50)).catch((e: unknown) => e);
  for (const end = Date.now() + 5_000; updates() === 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  env.cancel();
  const err = await step;
  expect(err).toBeInstanceOf(CancelledFailure);
  await new Promise((r) => setTimeout(r, 1_500));
  expect(updates()).toBe(1);
  proxy.clearFaults();
  expect(await aliasState(motoUrl(), t)).toEqual({ version: '1', weights: { '2': 0.1 } });
});

test('"update in progress" (ResourceConflictException) waits for the function, then retries', async () => {
  const t = await freshFunction('conflict');
  const fn = t.function;
  const isGetFunction = (c: RecordedCall) => c.method === 'GET' && c.path.split('?')[0] === `/2015-03-31/functions/${fn}`;
  // The first PublishVersion is answered 409; the function then reads "InProgress" once before it is updated.
  const conflictAt: number[] = [];
  proxy.inject({
    match: lambdaOp.publishVersion(fn),
    times: 1,
    action: {
      respond: () => {
        conflictAt.push(Date.now());
        return {
          status: 409,
          headers: { 'x-amzn-errortype': 'ResourceConflictException' },
          body: JSON.stringify({ Type: 'User', message: 'An update is in progress', __type: 'ResourceConflictException' }),
        };
      },
    },
  });
  const inProgressAt: number[] = [];
  proxy.inject({
    match: (c) => isGetFunction(c) && conflictAt.length > 0,
    times: 1,
    action: {
      respond: () => {
        inProgressAt.push(Date.now());
        return {
          status: 200,
          body: JSON.stringify({ Configuration: { FunctionName: fn, State: 'Active', LastUpdateStatus: 'InProgress' } }),
        };
      },
    },
  });
  const answered: { call: RecordedCall; status: number }[] = [];
  const observer = (call: RecordedCall, _body: Buffer, status: number) => void answered.push({ call, status });
  proxy.observers.push(observer);
  try {
    const res = await p.deployRevision(t, await artifact('provider v4'), { RELEASE_ID: 'r4', SCHEMA_REV: '4' }, 'rollout-x');
    expect(res).toEqual({ newVersion: '2', created: true });
  } finally {
    proxy.observers.splice(proxy.observers.indexOf(observer), 1);
  }
  // Served: the 409, then the in-progress read; after it the function was read again (updated) and the write retried.
  expect(conflictAt).toHaveLength(1);
  expect(inProgressAt).toHaveLength(1);
  expect(inProgressAt[0]).toBeGreaterThanOrEqual(conflictAt[0]);
  const publishes = proxy.calls.filter(lambdaOp.publishVersion(fn));
  expect(publishes).toHaveLength(2);
  const reads = proxy.calls.filter(isGetFunction).filter((c) => c.atMs >= conflictAt[0] && c.atMs <= publishes[1].atMs);
  expect(reads.length).toBeGreaterThanOrEqual(2); // the "InProgress" one and the "Successful" one
  expect(answered.filter((a) => lambdaOp.publishVersion(fn)(a.call)).map((a) => a.status)).toEqual([201]);
  expect(await publishedVersions(motoUrl(), t)).toEqual(['1', '2']);
});

test('a missing function is a non-retryable error naming the target', async () => {
  const ghost: LambdaTargetSpec = { name: 'x', provider: 'aws-lambda', region: 'eu-central-1', function: 'no-such-fn', alias: 'live' };
  await expect(p.readTraffic(ghost)).rejects.toThrow(/x: ResourceNotFoundException: .*\(lambda eu-central-1\/no-such-fn\)/);
});

test('service errors get fixed messages: never the service text (which can quote the environment)', async () => {
  const t = await freshFunction('fixed-messages');
  const a = await artifact('fixed messages');
  const leaked = 'env-value-quoted-by-lambda-42';
  proxy.inject({
    match: (c) => c.method === 'PUT' && c.path.split('?')[0] === `/2015-03-31/functions/${t.function}/configuration`,
    action: {
      status: 400,
      errorType: 'InvalidParameterValueException',
      message: `Lambda was unable to configure your environment variables: String measured: {"SECRET":"${leaked}"}`,
    },
  });
  const err = (await p.deployRevision(t, a, { RELEASE_ID: 'r9', SCHEMA_REV: '9' }, 'rollout-x').catch((e: Error) => e)) as Error;
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect(err.message).toBe(
    'x: InvalidParameterValueException: Lambda refused a parameter, HTTP 400 (lambda eu-central-1/provider-fixed-messages)',
  );
  expect(JSON.stringify({ m: err.message, s: err.stack })).not.toContain(leaked);
  // Denied: the action is kept (an identifier), the rest of the text is not.
  proxy.inject({
    match: lambdaOp.updateAlias(t.function),
    action: {
      status: 403,
      errorType: 'AccessDeniedException',
      message: `User arn:aws:iam::1:user/${leaked} is not authorized to perform: lambda:UpdateAlias`,
    },
  });
  const denied = (await p.setTraffic(t, '1', '2', 10).catch((e: Error) => e)) as Error;
  expect(denied.message).toMatch(/^x: AccessDeniedException: the worker's credentials may not do this, lambda:UpdateAlias, HTTP 403/);
  expect(denied.message).not.toContain(leaked);
  proxy.clearFaults();
});
