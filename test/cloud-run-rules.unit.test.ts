/**
 * The pure rules of the Cloud Run provider: its traffic algebra (integer splits, the deploy-time
 * list, kept tags), revision naming, env drift, error mapping, and the latency percentiles of Cloud
 * Monitoring distributions. No fake, no server.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { Status } from 'google-gax';
import { latencyDistribution, parseFilter } from '../src/dev/cloud-monitoring-fake';
import { cloudRunRevisionName, labelValue, mapCloudRunError, revisionFingerprint } from '../src/providers/cloud-run';
import {
  cloudRunPercent,
  cloudRunSplit,
  deployTraffic,
  servedSplit,
  trafficKey,
  validateTraffic,
  withKeptTags,
} from '../src/providers/cloud-run-traffic';
import { distributionQuantile } from '../src/analysis/cloud-monitoring';
import { compareFingerprints } from '../src/providers/fingerprint';
import { NonRetryableProviderError } from '../src/providers/types';
import { mapProviderErrors } from '../src/activities/targets';

const REV = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION' as const;
const LATEST = 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST' as const;

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

  test('served split resolves LATEST and adds up a revision listed twice; the traffic key ignores order', () => {
    const svc = {
      latestReadyRevision: 'projects/p/locations/r/services/orders/revisions/orders-r2',
      trafficStatuses: [
        { type: LATEST, percent: 30 },
        { type: REV, revision: 'orders-r1', percent: 60 },
        { type: REV, revision: 'orders-r2', percent: 10, tag: 'canary' },
      ],
    };
    expect(Object.fromEntries(servedSplit(svc))).toEqual({ 'orders-r2': 40, 'orders-r1': 60 });
    // No statuses yet (not reconciled): the asked-for traffic stands in.
    expect(Object.fromEntries(servedSplit({ traffic: [{ type: REV, revision: 'orders-r1', percent: 100 }] }))).toEqual({
      'orders-r1': 100,
    });
    const a = cloudRunSplit('orders-r1', 'orders-r2', 10, 'canary');
    expect(trafficKey([...a].reverse())).toBe(trafficKey(a));
    expect(trafficKey(cloudRunSplit('orders-r1', 'orders-r2', 20, 'canary'))).not.toBe(trafficKey(a));
    expect(trafficKey(cloudRunSplit('orders-r1', 'orders-r2', 10))).not.toBe(trafficKey(a)); // the tag counts
  });
});
