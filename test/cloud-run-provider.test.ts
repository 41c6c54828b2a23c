/**
 * CloudRunProvider and CloudMonitoringMetrics: pure rules (rounding, naming, drift, error mapping,
 * histogram percentiles), then the provider and the metric source against the wire-level fakes.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { Status } from 'google-gax';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake, latencyDistribution, parseFilter } from '../src/dev/cloud-monitoring-fake';
import { CloudRunTrafficSimulator } from '../src/dev/cloud-run-traffic';
import {
  CloudRunProvider,
  cloudRunPercent,
  cloudRunRevisionName,
  cloudRunSplit,
  deployTraffic,
  labelValue,
  mapCloudRunError,
  revisionFingerprint,
  validateTraffic,
  withKeptTags,
} from '../src/providers/cloud-run';
import { CloudMonitoringMetrics, distributionQuantile } from '../src/analysis/cloud-monitoring';
import { compareFingerprints } from '../src/providers/fingerprint';
import { NonRetryableProviderError } from '../src/providers/types';
import { mapProviderErrors } from '../src/activities/targets';
import type { CloudRunTargetSpec } from '../src/spec/schema';

process.env.METADATA_SERVER_DETECTION = 'none';

const REV = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION' as const;
const IMG_1 = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'1'.repeat(64)}`;
const IMG_2 = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'2'.repeat(64)}`;
const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '7', INDEX_HASH: 'idx-abc' };

describe('pure rules', () => {
  test('integer percents: rounded, a real split never rounds to 0 or 100', () => {
    expect([0, -5, 0.3, 1.49, 10.5, 33.3, 99.7, 100, 250].map(cloudRunPercent)).toEqual([0, 0, 1, 1, 11, 33, 99, 100, 100]);
    expect(() => cloudRunPercent(NaN)).toThrow(NonRetryableProviderError);
    expect(cloudRunSplit('orders-r1', 'orders-r2', 33.3, 'canary')).toEqual([
      { type: REV, revision: 'orders-r1', percent: 67 },
      { type: REV, revision: 'orders-r2', percent: 33, tag: 'canary' },
    ]);
    expect(cloudRunSplit('orders-r1', 'orders-r2', 100)).toEqual([{ type: REV, revision: 'orders-r2', percent: 100 }]);
    expect(() => cloudRunSplit('a', 'a', 10)).toThrow(/same/);
    expect(() => validateTraffic([{ type: REV, revision: 'a', percent: 99 }])).toThrow(/sum to 99/);
    expect(() =>
      validateTraffic([
        { type: REV, revision: 'a', percent: 10.5 },
        { type: REV, revision: 'b', percent: 89.5 },
      ]),
    ).toThrow(/integer/);
    expect(() =>
      validateTraffic([
        { type: REV, revision: 'a', percent: 100, tag: 't' },
        { type: REV, revision: 'b', percent: 0, tag: 't' },
      ]),
    ).toThrow(/twice/);
  });

  test('revision names: SERVICE-RELEASE when clean, else sanitized + stable hash, always a <= 63 char DNS label', () => {
    expect(cloudRunRevisionName('orders', 'r2')).toBe('orders-r2');
    const label = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
    const names = ['R2', 'r2', 'v1.2', 'v1_2', 'v1-2', '2024.06.01-rc.1', 'x'.repeat(63)].map((r) => cloudRunRevisionName('orders', r));
    expect(new Set(names).size).toBe(names.length); // no two releases share a name
    for (const n of names) {
      expect(n).toMatch(label);
      expect(n.startsWith('orders-')).toBe(true);
    }
    expect(cloudRunRevisionName('orders', 'v1.2')).toMatch(/^orders-v1-2-[a-f0-9]{6}$/);
    expect(cloudRunRevisionName('orders', 'v1.2')).toBe(cloudRunRevisionName('orders', 'v1.2'));
    const longService = 's'.repeat(49);
    const long = cloudRunRevisionName(longService, 'release-with-a-long-name-2024');
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(label);
    expect(() => cloudRunRevisionName('s'.repeat(50), 'r2')).toThrow(/at most 49/);
    expect(labelValue('Release.2024_06/RC1')).toBe('release_2024_06_rc1');
  });

  test('drift: env values by salted hash, secret refs by name:version, contract keys in clear, values never copied', () => {
    const stable = revisionFingerprint(
      [
        {
          name: 'app',
          ports: [{ containerPort: 8080 }],
          env: [
            { name: 'RELEASE_ID', value: 'r1' },
            { name: 'LOG_LEVEL', value: 'info' },
            { name: 'DB_PASSWORD', valueSource: { secretKeyRef: { secret: 'db-pass', version: '3' } } },
            { name: 'API_KEY', valueSource: { secretKeyRef: { secret: 'api-key', version: '' } } },
          ],
        },
        { name: 'sidecar', env: [{ name: 'TOKEN', value: 'sidecar-s3cret' }] },
      ],
      'salt',
    );
    expect(stable.secretRefs).toEqual({ DB_PASSWORD: 'db-pass:3', API_KEY: 'api-key:latest' });
    expect(stable.contract).toEqual({ RELEASE_ID: 'r1' });
    expect(Object.keys(stable.values).sort()).toEqual(['LOG_LEVEL', 'RELEASE_ID', 'sidecar/TOKEN']);
    expect(JSON.stringify(stable)).not.toContain('sidecar-s3cret');
    expect(JSON.stringify(stable)).not.toContain('info');

    const next = revisionFingerprint(
      [
        {
          name: 'app',
          ports: [{ containerPort: 8080 }],
          env: [
            { name: 'RELEASE_ID', value: 'r2' },
            { name: 'LOG_LEVEL', value: 'debug' },
            { name: 'DB_PASSWORD', valueSource: { secretKeyRef: { secret: 'db-pass', version: '4' } } },
          ],
        },
        { name: 'sidecar', env: [{ name: 'TOKEN', value: 'sidecar-s3cret' }] },
      ],
      'salt',
    );
    const drift = compareFingerprints(stable, next);
    expect(drift.missing).toEqual(['API_KEY']);
    // Salted: the same value hashes the same under one salt, differently under another (no lookup table across rollouts).
    const logLevel = (salt: string) =>
      revisionFingerprint([{ name: 'app', env: [{ name: 'LOG_LEVEL', value: 'info' }] }], salt).values.LOG_LEVEL;
    expect(logLevel('salt')).toBe(stable.values.LOG_LEVEL);
    expect(logLevel('another-salt')).not.toBe(logLevel('salt'));
    expect(logLevel('another-salt')).toMatch(/^[0-9a-f]{12}$/);
    expect(createHash('sha256').update('info').digest('hex')).not.toContain(logLevel('salt'));
    expect(drift.changed.map((c) => c.key)).toEqual(['LOG_LEVEL']);
    expect(drift.secretRefsChanged).toEqual([
      { key: 'DB_PASSWORD', stable: 'db-pass:3', next: 'db-pass:4' },
      { key: 'API_KEY', stable: 'api-key:latest', next: undefined },
    ]);
  });

  test('error mapping: transient codes retryable, the rest non-retryable ApplicationFailures', async () => {
    const retryable = [Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED, Status.ABORTED, Status.INTERNAL];
    const fatal = [Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.PERMISSION_DENIED, Status.FAILED_PRECONDITION, Status.ALREADY_EXISTS];
    for (const code of retryable) {
      const e = mapCloudRunError({ code, message: `${code} ${Status[code]}: boom` }, 'orders');
      expect(e).not.toBeInstanceOf(NonRetryableProviderError);
      expect(e.message).toBe(`orders: ${Status[code]}: boom`);
      const failure = await mapProviderErrors(() => Promise.reject(e)).catch((x: unknown) => x);
      expect(failure).not.toBeInstanceOf(ApplicationFailure);
    }
    for (const code of fatal) {
      const e = mapCloudRunError({ code, message: 'nope' }, 'orders');
      expect(e).toBeInstanceOf(NonRetryableProviderError);
      expect((e as NonRetryableProviderError).code).toBe(Status[code]);
      const failure = (await mapProviderErrors(() => Promise.reject(e)).catch((x: unknown) => x)) as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.nonRetryable).toBe(true);
      expect(failure.type).toBe(Status[code]);
    }
    // A stale etag is a lost race, retried whichever of the two codes the API uses for it.
    const etag = mapCloudRunError({ code: Status.FAILED_PRECONDITION, message: '9 FAILED_PRECONDITION: etag mismatch' }, 'orders');
    expect(etag).not.toBeInstanceOf(NonRetryableProviderError);
    const plain = new TypeError('fetch failed');
    expect(mapCloudRunError(plain, 'x')).toBe(plain);
  });

  test('deploy traffic pins LATEST to its revision, moves the tag, keeps other tags', () => {
    const svc = {
      name: 'projects/p/locations/r/services/orders',
      latestReadyRevision: 'projects/p/locations/r/services/orders/revisions/orders-00001-abc',
      traffic: [
        { type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST' as const, percent: 100 },
        { type: REV, revision: 'orders-old', percent: 0, tag: 'canary' },
        { type: REV, revision: 'orders-old', percent: 0, tag: 'blue' },
      ],
    };
    expect(deployTraffic(svc, 'orders-r2', 'canary')).toEqual([
      { type: REV, revision: 'orders-00001-abc', percent: 100 },
      { type: REV, revision: 'orders-old', percent: 0, tag: 'blue' },
      { type: REV, revision: 'orders-r2', percent: 0, tag: 'canary' },
    ]);
    expect(
      withKeptTags([{ type: REV, revision: 'orders-r2', percent: 100 }], deployTraffic(svc, 'orders-r2', 'canary'), new Set()),
    ).toEqual([
      { type: REV, revision: 'orders-r2', percent: 100, tag: 'canary' },
      { type: REV, revision: 'orders-old', percent: 0, tag: 'blue' },
    ]);
  });

  test('p99 from merged Cloud Run latency distributions; the monitoring fake parses only simple filters', () => {
    const fast = latencyDistribution(Array.from({ length: 990 }, () => 100));
    const slow = latencyDistribution(Array.from({ length: 10 }, () => 2000));
    const p99 = distributionQuantile([fast, slow], 0.99)!;
    expect(p99).toBeGreaterThan(95);
    expect(p99).toBeLessThan(150);
    expect(distributionQuantile([fast, slow], 0.999)!).toBeGreaterThan(1400);
    expect(distributionQuantile([], 0.99)).toBeUndefined();
    expect(parseFilter('metric.type = "a" AND resource.labels.x != "b"')).toEqual([
      { field: 'metric.type', op: '=', value: 'a' },
      { field: 'resource.labels.x', op: '!=', value: 'b' },
    ]);
    expect(() => parseFilter('metric.type = starts_with("a")')).toThrow(/only understands/);
  });
});

describe('against the fakes', () => {
  let fake: CloudRunFake;
  let monitoring: CloudMonitoringFake;
  let provider: CloudRunProvider;
  let metrics: CloudMonitoringMetrics;
  beforeAll(async () => {
    [fake, monitoring] = await Promise.all([new CloudRunFake().start(), new CloudMonitoringFake().start()]);
    fake.knobs.operationPolls = 2;
    provider = new CloudRunProvider({
      endpoint: fake.address,
      probeUrlRewrite: (u) => fake.loopbackUrl(u),
      pollIntervalMs: 30,
      maxPollIntervalMs: 100,
      operationTimeoutMs: 10_000,
    });
    metrics = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  });
  afterAll(async () => {
    await provider?.close();
    await metrics?.close();
    await fake?.stop();
    await monitoring?.stop();
  });

  const target = (service: string): CloudRunTargetSpec => ({
    name: `cr-${service}`,
    provider: 'cloud-run',
    project: 'demo-project',
    region: 'europe-west1',
    service,
  });
  function seed(service: string) {
    const svc = fake.seedService({
      project: 'demo-project',
      region: 'europe-west1',
      service,
      image: IMG_1,
      env: { RELEASE_ID: 'r1', SCHEMA_REV: '6', LOG_LEVEL: 'info' },
      secretEnv: { DB_PASSWORD: ['db-pass', '3'] },
    });
    return { t: target(service), first: svc.latestReadyRevision.split('/').pop() as string };
  }
  const state = (t: CloudRunTargetSpec) => fake.getServiceState(t.project, t.region, t.service)!;
  const tags = (t: CloudRunTargetSpec) => (state(t).trafficStatuses as any[]).filter((s) => s.tag).map((s) => `${s.tag}:${s.revision}`);

  test('deploy: new revision at 0 % with the canary tag and the contract env; a retry after a lost answer creates no second revision', async () => {
    const { t, first } = seed('deploy');
    expect(await provider.readTraffic(t)).toEqual({ stableVersion: first, newVersion: undefined, newWeight: 0 });
    // The update lands, then polling the operation fails with a code our mapping retries: the attempt fails.
    fake.failNext('GetOperation', 1, Status.ABORTED);
    const lost = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'rollout-1').catch((e: Error) => e);
    expect(lost).toBeInstanceOf(Error);
    expect(lost).not.toBeInstanceOf(NonRetryableProviderError);
    expect((lost as Error).message).toMatch(/ABORTED/);
    const updates = fake.callCount('UpdateService');
    const retry = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'rollout-1');
    expect(retry).toEqual({ newVersion: 'deploy-r2', created: false });
    expect(fake.callCount('UpdateService')).toBe(updates); // found, not deployed again
    expect(fake.revisionNames('demo-project', 'europe-west1', 'deploy')).toEqual([first, 'deploy-r2']);
    expect(fake.servedSplit('demo-project', 'europe-west1', 'deploy')).toEqual({ [first]: 100 });
    expect(tags(t)).toEqual(['canary:deploy-r2']);

    const fp = await provider.fingerprint(t, 'deploy-r2', 'salt');
    expect(fp.contract).toEqual(contract);
    expect(fp.secretRefs).toEqual({ DB_PASSWORD: 'db-pass:3' });
    const drift = compareFingerprints(await provider.fingerprint(t, first, 'salt'), fp);
    expect(drift).toMatchObject({ missing: [], changed: [], added: [], secretRefsChanged: [] });
    const rev = state(t).template;
    expect(rev.revision).toBe('deploy-r2');
    expect(rev.containers[0].image).toBe(IMG_2);
  });

  test('traffic steps to integer percents, no-op when already so; promote keeps the tag, revert drops it', async () => {
    const { t, first } = seed('steps');
    const { newVersion } = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'rollout-2');
    expect(await provider.setTraffic(t, first, newVersion, 10)).toEqual({ changed: true });
    expect(fake.servedSplit('demo-project', 'europe-west1', 'steps')).toEqual({ [first]: 90, [newVersion]: 10 });
    const updates = fake.callCount('UpdateService');
    expect(await provider.setTraffic(t, first, newVersion, 10.2)).toEqual({ changed: false });
    expect(fake.callCount('UpdateService')).toBe(updates);
    await provider.setTraffic(t, first, newVersion, 33.3);
    expect(await provider.readTraffic(t)).toEqual({ stableVersion: first, newVersion, newWeight: 33 });
    expect(tags(t)).toEqual([`canary:${newVersion}`]);
    expect(state(t).reconciling).toBe(false);

    expect(await provider.routeAll(t, newVersion)).toEqual({ changed: true });
    expect(fake.servedSplit('demo-project', 'europe-west1', 'steps')).toEqual({ [newVersion]: 100 });
    expect(tags(t)).toEqual([`canary:${newVersion}`]);
    expect(await provider.routeAll(t, newVersion)).toEqual({ changed: false });

    expect(await provider.routeAll(t, first, { dropTag: true })).toEqual({ changed: true });
    expect(fake.servedSplit('demo-project', 'europe-west1', 'steps')).toEqual({ [first]: 100 });
    expect(tags(t)).toEqual([]);
    expect(fake.revisionNames('demo-project', 'europe-west1', 'steps')).toHaveLength(2);

    await provider.recordRelease(t, newVersion, 'R2.final', 'sha256:' + '2'.repeat(64));
    expect(state(t).labels).toMatchObject({ 'rollgate-release': 'r2_final', 'rollgate-revision': newVersion });
    expect(fake.revisionNames('demo-project', 'europe-west1', 'steps')).toHaveLength(2); // labels make no revision
  });

  test('probes hit the tag URL (rewritten to loopback); failures are reported, not thrown', async () => {
    const { t, first } = seed('probed');
    const { newVersion } = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'rollout-3');
    const probe = { name: 'health', path: '/healthz', expect_contains: '"release":"r2"', timeout: '5 seconds', attempts: 1 };
    const ok = await provider.probe(t, newVersion, probe);
    expect(ok).toMatchObject({ ok: true });
    expect(ok.detail).toMatch(/HTTP 200 from https:\/\/canary---probed-[a-f0-9]+\.a\.run\.app\/healthz/);
    fake.knobs.unhealthy = (r) => r.revision === newVersion;
    try {
      expect(await provider.probe(t, newVersion, probe)).toMatchObject({ ok: false, detail: expect.stringMatching(/^HTTP 500/) });
    } finally {
      fake.knobs.unhealthy = () => false;
    }
    expect(await provider.probe(t, first, probe)).toMatchObject({ ok: false, detail: expect.stringMatching(/no tag URL/) });
  });

  test('errors: a missing service is non-retryable, an injected UNAVAILABLE is retryable, a never-ready revision is final', async () => {
    const missing = await provider.readTraffic(target('nowhere')).catch((e: Error) => e);
    expect(missing).toBeInstanceOf(NonRetryableProviderError);
    expect((missing as NonRetryableProviderError).code).toBe('NOT_FOUND');

    const { t } = seed('faulty');
    fake.failNext('UpdateService', 1, Status.UNAVAILABLE);
    const transient = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'r').catch((e: Error) => e);
    expect(transient).not.toBeInstanceOf(NonRetryableProviderError);
    expect((transient as Error).message).toMatch(/UNAVAILABLE/);
    expect((await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'r')).created).toBe(true);

    const { t: t2 } = seed('broken');
    fake.knobs.neverReady = (r) => r.service === 'broken' && r.env.RELEASE_ID === 'r2';
    try {
      const failed = await provider.deployRevision(t2, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'r').catch((e: Error) => e);
      expect(failed).toBeInstanceOf(NonRetryableProviderError);
      expect((failed as NonRetryableProviderError).code).toBe('FAILED_PRECONDITION');
      expect((failed as Error).message).toMatch(/broken-r2.*not ready/);
      // A retry finds the failed revision and fails the same way, without another update.
      const again = await provider.deployRevision(t2, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'r').catch((e: Error) => e);
      expect((again as NonRetryableProviderError).code).toBe('RevisionFailed');
    } finally {
      fake.knobs.neverReady = () => false;
    }
    const other = await provider.deployRevision(t2, { digest: '1'.repeat(64), image: IMG_1 }, contract, 'r').catch((e: Error) => e); // same release, other image: the name is taken
    expect((other as NonRetryableProviderError).code).toBe('RevisionNameTaken');
  });

  test('Cloud Monitoring: requests, 5xx and p99 per revision from simulated traffic that follows the served split', async () => {
    const { t, first } = seed('metered');
    const { newVersion } = await provider.deployRevision(t, { digest: '2'.repeat(64), image: IMG_2 }, contract, 'rollout-4');
    await provider.setTraffic(t, first, newVersion, 20);
    await metrics.preflight(t, first);
    const startMs = Date.now() - 1000;
    const sim = new CloudRunTrafficSimulator(fake.address, monitoring, [t], {
      requestsPerTick: 100,
      errorRate: (_t, rev) => (rev === newVersion ? 0.1 : 0),
      latencyMs: (_t, rev) => (rev === newVersion ? 400 : 100),
    });
    try {
      for (let i = 0; i < 3; i++) await sim.tick();
    } finally {
      sim.stop();
    }
    const s = await metrics.collect({ target: t, canaryVersion: newVersion, baselineVersion: first, startMs, endMs: Date.now() + 60_000 });
    expect(s.source).toBe('cloud-monitoring demo-project/europe-west1');
    expect(s.canary).toMatchObject({ requests: 60, errors: 6, latencyStat: 'p99' });
    expect(s.baseline).toMatchObject({ requests: 240, errors: 0 });
    expect(s.canary.latencyP99Ms!).toBeGreaterThan(300);
    expect(s.canary.latencyP99Ms!).toBeLessThan(700);
    expect(s.baseline.latencyP99Ms!).toBeLessThan(200);
    // Outside the window: nothing.
    const before = await metrics.collect({ target: t, canaryVersion: newVersion, baselineVersion: first, startMs: 0, endMs: startMs });
    expect(before.canary.requests).toBe(0);
  });
});
