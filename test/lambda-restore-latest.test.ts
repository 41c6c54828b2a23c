/**
 * LambdaProvider.restoreLatest and the restoreLatest activity against moto (through the fault
 * proxy): after a deploy changed $LATEST (code + contract env), $LATEST goes back to what the stable
 * version runs; idempotent, cancellable, and its errors never quote the environment.
 *
 * moto's GetFunction(Qualifier) answers the version's Configuration (CodeSha256, Environment) but a
 * Code.Location that is not downloadable and names $LATEST's code for every version, so the
 * provider gets its zips from a LambdaZipCatalog (src/dev/lambda-code.ts) keyed by CodeSha256.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetFunctionConfigurationCommand, LambdaClient, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { MockActivityEnvironment } from '@temporalio/testing';
import { CancelledFailure } from '@temporalio/activity';
import { LambdaProvider, type CodeFetcher } from '../src/providers/aws-lambda';
import { NonRetryableProviderError } from '../src/providers/types';
import { LambdaZipCatalog } from '../src/dev/lambda-code';
import { createSampleFunction, sampleZip, sha256Hex, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { RecordedCall } from '../src/dev/fault-proxy';
import { targetActivities } from '../src/activities/targets';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { createHarness, lambdaTargets, type Harness } from './support/harness';
import { aliasState, publishedVersions } from './support/lambda';

const SECRET = 'restore-s3cret-value-42';
const ENV = { DB_PASSWORD: SECRET, LOG_LEVEL: 'info' };

let h: Harness;
const catalog = new LambdaZipCatalog();

beforeAll(async () => {
  h = await createHarness('restore-latest', { runner: false });
  h.proxy.observers.push(catalog.observer); // remembers the zips deploys send through the proxy
});
afterAll(async () => h?.close());

function provider(fetchCode: CodeFetcher = catalog.fetchCode): LambdaProvider {
  return new LambdaProvider({ endpoint: h.proxy.url, credentials: TEST_CREDENTIALS, maxAttempts: 2, fetchCode });
}

/** $LATEST or a version, straight from moto (not through the proxy). */
async function config(t: LambdaTargetSpec, qualifier?: string) {
  const c = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  const cfg = await c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function, Qualifier: qualifier }));
  return { sha: cfg.CodeSha256, env: cfg.Environment?.Variables ?? {} };
}

const isWrite = (t: LambdaTargetSpec) => (c: RecordedCall) => c.method !== 'GET' && c.path.includes(`/functions/${t.function}/`);
function writesSince(t: LambdaTargetSpec, mark: number): RecordedCall[] {
  return h.proxy.calls.slice(mark).filter(isWrite(t));
}

/** A function at version 1 (alias live -> 1), then a release deployed by the provider: version 2, $LATEST on r2. */
async function deployed(service: string): Promise<LambdaTargetSpec> {
  const [t] = lambdaTargets(service, 1);
  await createSampleFunction(h.motoUrl, t, ENV);
  catalog.add(sampleZip(`${t.function} v1`)); // the fixture's version-1 code (created straight in moto)
  const zip = sampleZip(`${service} release r2`);
  const path = join(h.workDir, `${sha256Hex(zip)}.zip`);
  writeFileSync(path, zip);
  const res = await provider().deployRevision(t, { digest: sha256Hex(zip), path }, { RELEASE_ID: 'r2', SCHEMA_REV: '7' }, 'rollout-x');
  expect(res).toEqual({ newVersion: '2', created: true });
  const [v1, latest] = [await config(t, '1'), await config(t)];
  expect(latest.sha).not.toBe(v1.sha);
  expect(latest.env.RELEASE_ID).toBe('r2');
  return t;
}

function activityEnv() {
  const env = new MockActivityEnvironment({
    scheduleToCloseTimeoutMs: 0, // none, as for the workflow's housekeeping (the mock's default ends in 1970)
    startToCloseTimeoutMs: 300_000,
    currentAttemptScheduledTimestampMs: Date.now(),
    heartbeatTimeoutMs: 10_000,
  });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d) => heartbeats.push(d));
  return { env, heartbeats };
}

test('restoreLatest puts $LATEST back on the stable version: code and env, no alias change, no publish', async () => {
  const t = await deployed('restore-basic');
  const v1 = await config(t, '1');
  const mark = h.proxy.calls.length;
  expect(await provider().restoreLatest(t, '1')).toEqual({ changed: true });

  const latest = await config(t);
  expect(latest.sha).toBe(v1.sha);
  expect(latest.env).toEqual(v1.env);
  expect(latest.env).toEqual({ RELEASE_ID: 'initial', SCHEMA_REV: '0', ...ENV });
  expect(writesSince(t, mark).map((c) => `${c.method} ${c.path.split('?')[0]}`)).toEqual([
    `PUT /2015-03-31/functions/${t.function}/code`,
    `PUT /2015-03-31/functions/${t.function}/configuration`,
  ]);
  expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);

  // Idempotent: a second call reads, finds $LATEST already there, and writes nothing.
  const mark2 = h.proxy.calls.length;
  const fetches = catalog.fetched.length;
  expect(await provider().restoreLatest(t, '1')).toEqual({ changed: false });
  expect(writesSince(t, mark2)).toEqual([]);
  expect(catalog.fetched.length).toBe(fetches);

  // The next deploy's baseline is the stable release again: it carries r3's contract on top of v1's env.
  const zip = sampleZip('restore-basic release r3');
  const path = join(h.workDir, `${sha256Hex(zip)}.zip`);
  writeFileSync(path, zip);
  expect(await provider().deployRevision(t, { digest: sha256Hex(zip), path }, { RELEASE_ID: 'r3', SCHEMA_REV: '8' }, 'rollout-y')).toEqual({
    newVersion: '3',
    created: true,
  });
  expect((await config(t, '3')).env).toEqual({ RELEASE_ID: 'r3', SCHEMA_REV: '8', ...ENV });
});

test('only what differs is written: env drift alone is one UpdateFunctionConfiguration, no download', async () => {
  const [t] = lambdaTargets('restore-env-only', 1);
  await createSampleFunction(h.motoUrl, t, ENV);
  const c = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  await c.send(
    new UpdateFunctionConfigurationCommand({
      FunctionName: t.function,
      Environment: { Variables: { RELEASE_ID: 'r9', DB_PASSWORD: 'x' } },
    }),
  );
  const mark = h.proxy.calls.length;
  const fetches = catalog.fetched.length;
  expect(await provider().restoreLatest(t, '1')).toEqual({ changed: true });
  expect(writesSince(t, mark).map((w) => `${w.method} ${w.path.split('?')[0]}`)).toEqual([
    `PUT /2015-03-31/functions/${t.function}/configuration`,
  ]);
  expect(catalog.fetched.length).toBe(fetches);
  expect((await config(t)).env).toEqual((await config(t, '1')).env);
});

test("code that is not the version's (moto's Code.Location names $LATEST's) is refused before any write", async () => {
  const t = await deployed('restore-wrong-code');
  const before = await config(t);
  const latestZip = sampleZip('restore-wrong-code release r2'); // what moto's Location really points at
  const mark = h.proxy.calls.length;
  const err = await provider(async () => latestZip)
    .restoreLatest(t, '1')
    .catch((e: Error) => e);
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect((err as NonRetryableProviderError).code).toBe('CodeSha256Mismatch');
  expect((err as Error).message).toContain(`lambda us-east-1/${t.function}`);
  expect(writesSince(t, mark)).toEqual([]);
  expect(await config(t)).toEqual(before);
});

test('errors are fixed messages naming the function and the reason code, never an env value', async () => {
  const t = await deployed('restore-errors');
  const configPath = `/2015-03-31/functions/${t.function}/configuration`;

  // An SDK error whose message quotes the environment (Lambda's validation errors can).
  h.proxy.inject({
    match: (c) => c.method === 'PUT' && c.path.split('?')[0] === configPath,
    action: {
      status: 400,
      errorType: 'InvalidParameterValueException',
      message: `Environment variable DB_PASSWORD=${SECRET} is not valid`,
    },
  });
  const e1 = (await provider()
    .restoreLatest(t, '1')
    .catch((e: Error) => e)) as NonRetryableProviderError;
  expect(e1).toBeInstanceOf(NonRetryableProviderError);
  expect(e1.code).toBe('InvalidParameterValueException');
  expect(e1.message).toBe(
    `us-east-1: restoring $LATEST of lambda us-east-1/${t.function} to version 1 failed at UpdateFunctionConfiguration: InvalidParameterValueException`,
  );
  expect(JSON.stringify({ m: e1.message, s: e1.stack })).not.toContain(SECRET);

  // A waiter FAILURE: the SDK's own error would be the JSON of the last GetFunction, env included.
  h.proxy.inject({
    match: (c) => c.method === 'GET' && c.path === `/2015-03-31/functions/${t.function}`,
    action: {
      respond: () => ({
        status: 200,
        body: JSON.stringify({
          Configuration: {
            FunctionName: t.function,
            LastUpdateStatus: 'Failed',
            LastUpdateStatusReason: `bad value ${SECRET}`,
            Environment: { Variables: ENV },
          },
        }),
      }),
    },
  });
  const e2 = (await provider()
    .restoreLatest(t, '1')
    .catch((e: Error) => e)) as Error;
  expect(e2).toBeInstanceOf(Error);
  expect(e2).not.toBeInstanceOf(NonRetryableProviderError); // retryable: the activity tries again
  expect(e2.name).toBe('LastUpdateStatusFailed');
  expect(e2.message).toMatch(new RegExp(`lambda us-east-1/${t.function} to version 1 failed at wait after UpdateFunctionConfiguration`));
  expect(JSON.stringify({ m: e2.message, s: e2.stack })).not.toContain(SECRET);
  h.proxy.clearFaults();

  // A version that does not exist, and one that is no published version at all.
  const e3 = (await provider()
    .restoreLatest(t, '42')
    .catch((e: Error) => e)) as NonRetryableProviderError;
  expect(e3.code).toBe('ResourceNotFoundException');
  expect(e3.message).toMatch(/to version 42 failed at read: ResourceNotFoundException \(no such function or version\)$/);
  const mark = h.proxy.calls.length;
  await expect(provider().restoreLatest(t, '$LATEST')).rejects.toThrow(/InvalidVersion/);
  expect(h.proxy.calls.length).toBe(mark); // refused before any call
});

test('the activity restores $LATEST, heartbeats through a slow download, and a second run is a no-op', async () => {
  const t = await deployed('restore-activity');
  const slow: CodeFetcher = async (req) => {
    await new Promise((r) => setTimeout(r, 1600));
    return catalog.fetchCode(req);
  };
  const acts = targetActivities({ ...h.deps, providers: { 'aws-lambda': provider(slow) } });
  const { env, heartbeats } = activityEnv();
  expect(await env.run(acts.restoreLatest, { target: t, version: '1' })).toEqual({ changed: true });
  expect(heartbeats.length).toBeGreaterThanOrEqual(1);
  expect(await config(t)).toEqual(await config(t, '1'));

  const mark = h.proxy.calls.length;
  expect(await activityEnv().env.run(acts.restoreLatest, { target: t, version: '1' })).toEqual({ changed: false });
  expect(writesSince(t, mark)).toEqual([]);

  // A provider without an unqualified head (Cloud Run) has nothing to restore.
  const cloudRunLike = { ...h.deps, providers: { 'cloud-run': { kind: 'cloud-run' } as never } };
  const crTarget = { name: 'cr', provider: 'cloud-run' as const, project: 'p', region: 'europe-west1', service: 's' };
  expect(await activityEnv().env.run(targetActivities(cloudRunLike).restoreLatest, { target: crTarget, version: 's-r1' })).toEqual({
    changed: false,
  });
});

test('a cancelled activity makes no write: cancelled before it starts, or while the code downloads', async () => {
  const t = await deployed('restore-cancel');
  const before = await config(t);

  const pre = activityEnv().env;
  pre.cancel();
  const acts = targetActivities({ ...h.deps, providers: { 'aws-lambda': provider() } });
  const mark = h.proxy.calls.length;
  await expect(pre.run(acts.restoreLatest, { target: t, version: '1' })).rejects.toBeInstanceOf(CancelledFailure);
  expect(writesSince(t, mark)).toEqual([]);

  // The cancel arrives while the zip downloads; the download itself completes.
  const during = activityEnv().env;
  const cancelling: CodeFetcher = async (req) => {
    const zip = await catalog.fetchCode(req);
    during.cancel();
    return zip;
  };
  const acts2 = targetActivities({ ...h.deps, providers: { 'aws-lambda': provider(cancelling) } });
  const mark2 = h.proxy.calls.length;
  const err = await during.run(acts2.restoreLatest, { target: t, version: '1' }).catch((e: Error) => e);
  expect(err).toBeInstanceOf(CancelledFailure);
  expect((err as Error).message).toBe('cancelled before UpdateFunctionCode');
  expect(writesSince(t, mark2)).toEqual([]);
  expect(await config(t)).toEqual(before);
});
