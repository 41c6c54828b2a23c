/**
 * CloudRunProvider and CloudMonitoringMetrics against the wire-level fakes. The pure rules
 * (traffic algebra, naming, drift, error mapping, percentiles) are in cloud-run-rules.unit.test.ts.
 */
import { Status } from 'google-gax';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import { CloudRunTrafficSimulator } from '../src/dev/cloud-run-traffic';
import { CloudRunProvider } from '../src/providers/cloud-run';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import { compareFingerprints } from '../src/providers/fingerprint';
import { NonRetryableProviderError } from '../src/providers/types';
import type { CloudRunTargetSpec } from '../src/spec/schema';

process.env.METADATA_SERVER_DETECTION = 'none';

const IMG_1 = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'1'.repeat(64)}`;
const IMG_2 = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'2'.repeat(64)}`;
const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '7', INDEX_HASH: 'idx-abc' };

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
