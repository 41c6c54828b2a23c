/**
 * Canary/production parity (preflight) on the real dev server, moto and the Cloud Run fake: targets
 * configured unlike their canary target are refused (`parity: fail`) before anything is deployed or
 * let through with the differences recorded (`warn`); env values are compared by salted hash only.
 */
import { LambdaClient, PublishLayerVersionCommand, PutFunctionConcurrencyCommand } from '@aws-sdk/client-lambda';
import { startRollout } from '../src/client';
import { createSampleFunction, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { makeZip } from '../src/dev/zip';
import { saltedHash } from '../src/providers/fingerprint';
import { LambdaProvider } from '../src/providers/aws-lambda';
import type { CloudRunTargetSpec, LambdaTargetSpec } from '../src/spec/schema';
import { abortSignal, statusQuery, type RolloutResult } from '../src/contract';
import { historyText, recordHistory } from './support/history';
import { aliasState, publishedVersions } from './support/lambda';
import { cloudRunState, cloudRunTarget, imageFor, mixedSpec } from './support/cloud-run';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForAlert, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('parity', { cloudRun: true });
  await h.startWorker();
});
afterAll(async () => h?.close());

/** Hash of an env value as the worker computes it (the harness's ROLLGATE_HASH_KEY). */
const hashOf = (key: string, value: string) => saltedHash(h.deps.hashKey, key, value);

/** Calls through the fault proxy from `from` on that could change something (non-GET). */
const writesSince = (from: number) => h.proxy.calls.slice(from).filter((c) => c.method !== 'GET');

test('parity fail: a Lambda wave target with other memory, timeout and a missing env key stops the rollout in preflight', async () => {
  const spec = lambdaSpec(h, 'par-fail', { parity: 'fail' }, 2);
  const [canaryT, waveT] = spec.targets as LambdaTargetSpec[];
  await createSampleFunction(h.motoUrl, canaryT, { FEATURE_X: 'on', LOG_LEVEL: 'info' }, { MemorySize: 512 });
  await createSampleFunction(h.motoUrl, waveT, { LOG_LEVEL: 'info' }, { MemorySize: 1024, Timeout: 30 });
  const from = h.proxy.calls.length;
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const res = (await handle.result()) as RolloutResult;

  const message = 'parity: eu-west-1 differs from canary us-east-1: memory 1024 vs 512; timeout 30 vs 3; env keys missing: FEATURE_X';
  expect(res.state).toBe('failed');
  expect(res.reason).toBe(message);
  expect(res.status.failedStage).toBe('preflight');
  const stages = res.status.history.filter((e) => e.kind === 'stage').map((e) => e.text.split(':')[0]);
  expect(stages).toEqual(['stage preflight', 'stage done']); // no build, nothing deployed
  // moto: no version published, aliases untouched, no write went out at all.
  for (const t of spec.targets) {
    expect(await publishedVersions(h.motoUrl, t)).toEqual(['1']);
    expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  }
  expect(writesSince(from)).toEqual([]);
  const alert = await waitForAlert(h, spec.service);
  expect(alert.body.text).toContain(`failed in stage preflight before anything was deployed: ${message}`);
  await recordHistory(handle, 'rollout-v2-parity-fail');
});

test('parity warn: the rollout proceeds, differences are recorded by key; env values only as salted hashes, never in clear', async () => {
  const spec = lambdaSpec(h, 'par-warn', {}, 3);
  expect(spec.parity).toBe('warn'); // the default
  const [canaryT, waveT, thirdT] = spec.targets as LambdaTargetSpec[];
  const secrets = { canary: 'canary-only-pw-4711', wave: 'wave-only-pw-4712', third: 'third-only-pw-4713' };
  await createSampleFunction(
    h.motoUrl,
    canaryT,
    { DB_PASSWORD: secrets.canary, FEATURE_X: 'on', LOG_LEVEL: 'info' },
    { MemorySize: 512, Architectures: ['arm64'] },
  );
  await createSampleFunction(h.motoUrl, waveT, { DB_PASSWORD: secrets.canary, LOG_LEVEL: 'info' }, { MemorySize: 1024, Timeout: 30 });
  await new LambdaClient({ endpoint: h.motoUrl, region: waveT.region, credentials: TEST_CREDENTIALS }).send(
    new PutFunctionConcurrencyCommand({ FunctionName: waveT.function, ReservedConcurrentExecutions: 5 }),
  );
  // The third target differs from the canary only in one env value.
  await createSampleFunction(
    h.motoUrl,
    thirdT,
    { DB_PASSWORD: secrets.third, FEATURE_X: 'on', LOG_LEVEL: 'info' },
    { MemorySize: 512, Architectures: ['arm64'] },
  );
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });

    const waveMessage =
      'eu-west-1 differs from canary us-east-1: architecture x86_64 vs arm64; memory 1024 vs 512; reserved concurrency 5 vs none; timeout 30 vs 3; env keys missing: FEATURE_X';
    const thirdMessage = `ap-southeast-2 differs from canary us-east-1: env values differ (salted hash): DB_PASSWORD ${hashOf('DB_PASSWORD', secrets.third)} vs ${hashOf('DB_PASSWORD', secrets.canary)}`;
    expect(res.status.parityWarnings).toEqual([waveMessage, thirdMessage]);
    const decisions = res.status.history.filter((e) => e.kind === 'decision').map((e) => e.text);
    expect(decisions).toContain(`parity (warn): ${waveMessage}`);
    expect(decisions).toContain(`parity (warn): ${thirdMessage}`);
    // The parity check ran in preflight, before the build.
    const texts = res.status.history.map((e) => e.text);
    expect(texts.findIndex((t) => t.startsWith('parity (warn)'))).toBeLessThan(texts.findIndex((t) => t.startsWith('stage build')));

    // No value in clear anywhere: status, result, the whole decoded workflow history.
    const history = await historyText(handle);
    expect(history).toContain('RELEASE_ID'); // decoded payloads: the scan below can see values
    for (const text of [history, JSON.stringify(res), JSON.stringify(await handle.query(statusQuery))])
      for (const v of Object.values(secrets)) expect(text.split(v).length - 1).toBe(0);
  } finally {
    traffic.stop();
  }
});

test('identical targets: no difference reported, even with parity fail', async () => {
  const spec = lambdaSpec(h, 'par-same', { parity: 'fail' }, 3);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.parityWarnings).toBeUndefined();
    const parity = res.status.history.filter((e) => e.text.startsWith('parity'));
    expect(parity.map((e) => e.text)).toEqual(['parity: 2 target(s) configured like the canary']);
  } finally {
    traffic.stop();
  }
});

test('Cloud Run: cpu, memory, concurrency, max instances, ingress and a secret version are detected; parity fail deploys nothing', async () => {
  const targets = [cloudRunTarget('cr-eu', 'par-run', 'europe-west1'), cloudRunTarget('cr-us', 'par-run', 'us-central1')];
  const spec = mixedSpec(
    h,
    'par-run',
    targets,
    {
      canary: { targets: ['cr-eu'], weight: 10, bake: '1 second' },
      waves: [{ name: 'wave-1', targets: ['cr-us'], steps: [50, 100], bake: '1 second' }],
    },
    { parity: 'fail' },
  );
  const fake = h.cloudRun!;
  const seed = (t: CloudRunTargetSpec, over: Partial<Parameters<typeof fake.seedService>[0]>) =>
    (
      fake.seedService({
        project: t.project,
        region: t.region,
        service: t.service,
        image: imageFor(t.service, 'r1'),
        env: { RELEASE_ID: 'initial', SCHEMA_REV: '0', LOG_LEVEL: 'info' },
        secretEnv: { DB_PASSWORD: ['db-password', '3'] },
        ...over,
      }).latestReadyRevision as string
    )
      .split('/')
      .pop()!;
  const first = {
    'cr-eu': seed(targets[0], { limits: { cpu: '1', memory: '512Mi' } }),
    'cr-us': seed(targets[1], {
      limits: { cpu: '2', memory: '1Gi' },
      maxInstanceRequestConcurrency: 40,
      scaling: { maxInstanceCount: 5 },
      ingress: 'INGRESS_TRAFFIC_INTERNAL_ONLY',
      secretEnv: { DB_PASSWORD: ['db-password', '2'] },
    }),
  };
  const updatesBefore = fake.callCount('UpdateService');
  const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
  expect(res.state).toBe('failed');
  expect(res.reason).toBe(
    'parity: cr-us differs from canary cr-eu: concurrency 40 vs 80; cpu 2 vs 1; ingress internal_only vs all; max instances 5 vs 100; memory 1Gi vs 512Mi; secret references differ: DB_PASSWORD db-password:2 vs db-password:3',
  );
  expect(fake.callCount('UpdateService')).toBe(updatesBefore);
  for (const t of targets) {
    const s = cloudRunState(h, t);
    expect(s.revisions).toEqual([first[t.name as keyof typeof first]]);
    expect(s.split).toEqual({ [first[t.name as keyof typeof first]]: 100 });
    expect(s.tags).toEqual([]);
  }
});

test('parity warn, then a breach: the alert names the parity differences preflight let through', async () => {
  const spec = lambdaSpec(h, 'par-alert', {}, 2);
  const [canaryT, waveT] = spec.targets as LambdaTargetSpec[];
  await createSampleFunction(h.motoUrl, canaryT, { LOG_LEVEL: 'info' }, { MemorySize: 512 });
  await createSampleFunction(h.motoUrl, waveT, { LOG_LEVEL: 'info' }, { MemorySize: 1024 });
  const traffic = simulateTraffic(h, spec, (t, v) => t.region === waveT.region && v !== '1');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.state === 'paused', 90_000, 'paused after the breach');
    const alert = await waitForAlert(h, spec.service);
    expect(alert.body.text).toMatch(/rolled back after breach in wave:wave-1/);
    expect(alert.body.text).toContain('Parity warnings from preflight: eu-west-1 differs from canary us-east-1: memory 1024 vs 512.');
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    traffic.stop();
  }
});

test('Lambda provider: layers by name, VPC by shape, runtime; region and account differ by design (moto)', async () => {
  const p = new LambdaProvider({ endpoint: h.proxy.url, credentials: TEST_CREDENTIALS, maxAttempts: 4 });
  const layerZip = makeZip([{ name: 'nodejs/otel.js', data: Buffer.from('module.exports = 1;\n') }]);
  const fn = (region: string): LambdaTargetSpec => ({
    name: region,
    provider: 'aws-lambda',
    region,
    function: 'par-provider-fn',
    alias: 'live',
  });
  const configs = [];
  for (const [region, vpc, runtime] of [
    ['us-east-1', { SubnetIds: ['subnet-a1', 'subnet-a2'], SecurityGroupIds: ['sg-a'] }, 'nodejs20.x'],
    ['eu-west-1', { SubnetIds: ['subnet-b1', 'subnet-b2'], SecurityGroupIds: ['sg-b'] }, 'nodejs20.x'],
    ['ap-southeast-2', { SubnetIds: ['subnet-c1'], SecurityGroupIds: ['sg-c'] }, 'nodejs22.x'],
  ] as const) {
    const layer = await new LambdaClient({ endpoint: h.motoUrl, region, credentials: TEST_CREDENTIALS }).send(
      new PublishLayerVersionCommand({ LayerName: 'otel', Content: { ZipFile: layerZip } }),
    );
    const layers = region === 'ap-southeast-2' ? [] : [layer.LayerVersionArn!];
    await createSampleFunction(
      h.motoUrl,
      fn(region),
      {},
      { Layers: layers, VpcConfig: { SubnetIds: [...vpc.SubnetIds], SecurityGroupIds: [...vpc.SecurityGroupIds] }, Runtime: runtime },
    );
    configs.push(await p.readParityConfig(fn(region), '1', 'k'));
  }
  expect(configs[0].settings).toMatchObject({
    runtime: 'nodejs20.x',
    layers: expect.stringMatching(/^otel:\d+$/),
    vpc: '2 subnet(s), 1 security group(s)',
  });
  expect(configs[1].settings).toEqual(configs[0].settings); // other region, other subnets and layer ARN: same configuration
  expect(configs[2].settings).toMatchObject({ runtime: 'nodejs22.x', layers: 'none', vpc: '1 subnet(s), 1 security group(s)' });
});

test('a configuration the worker may not read (no lambda:GetFunctionConcurrency): warn goes on and says so, fail stops in preflight', async () => {
  const concurrency = (fn: string) => (c: { method: string; path: string }) =>
    c.method === 'GET' && c.path.includes(`/functions/${fn}/concurrency`);
  const denied = { status: 403, errorType: 'AccessDeniedException', message: 'not authorized to perform lambda:GetFunctionConcurrency' };

  const warn = lambdaSpec(h, 'par-denied-warn', {}, 2);
  await createFunctions(h, warn);
  h.proxy.inject({ match: concurrency(`${warn.service}-fn`), times: 1, action: denied });
  const traffic = simulateTraffic(h, warn);
  try {
    const res = (await (await startRollout(h.client, warn, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.parityWarnings).toEqual([expect.stringMatching(/^not checked: .*lambda:GetFunctionConcurrency/)]);
  } finally {
    traffic.stop();
  }

  const fail = lambdaSpec(h, 'par-denied-fail', { parity: 'fail' }, 2);
  await createFunctions(h, fail);
  h.proxy.inject({ match: concurrency(`${fail.service}-fn`), times: 1, action: denied });
  const res = (await (await startRollout(h.client, fail, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
  expect(res.state).toBe('failed');
  expect(res.reason).toMatch(/^parity: could not read the targets' configuration: .*lambda:GetFunctionConcurrency/);
  for (const t of fail.targets) expect(await publishedVersions(h.motoUrl, t)).toEqual(['1']);
});
