/**
 * Alert payload mapping (Alertmanager webhook v4, CloudWatch alarms via SNS), the decision against
 * an open rollout, and the SNS signature check against a loopback HTTPS certificate host. No
 * Temporal: test/alert-receiver.test.ts drives the receiver end to end.
 */
import { X509Certificate } from 'node:crypto';
import { globalAgent } from 'node:https';
import MessageValidator from 'sns-validator';
import { alertmanagerClaims } from '../src/alerts/alertmanager';
import { cloudWatchAlarmClaim } from '../src/alerts/cloudwatch';
import { PayloadError, type AlertClaim } from '../src/alerts/claims';
import { judgeClaims, type OpenRollout } from '../src/alerts/resolve';
import { confirmSubscription, SnsRefused, SnsUnavailable, verifySnsMessage, type SnsMessage } from '../src/alerts/sns';
import { alertReceiverConfigFromEnv } from '../src/alerts/receiver';
import type { RolloutStatus } from '../src/contract';
import { lambdaAlarm, startFakeSns, TEST_CERT, TEST_HOST_PATTERN, TOPIC, type FakeSns } from './support/sns';

/** Alertmanager's documented webhook body (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config). */
function webhook(alerts: { status: 'firing' | 'resolved'; labels: Record<string, string>; startsAt?: string }[]) {
  return {
    version: '4',
    groupKey: '{}:{alertname="HighErrorRate"}',
    truncatedAlerts: 0,
    status: alerts.some((a) => a.status === 'firing') ? 'firing' : 'resolved',
    receiver: 'rollgate',
    groupLabels: { alertname: 'HighErrorRate' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example:9093',
    alerts: alerts.map((a) => ({
      status: a.status,
      labels: a.labels,
      annotations: { summary: 'error rate 9 % > 2 %' },
      startsAt: a.startsAt ?? new Date().toISOString(),
      endsAt: '0001-01-01T00:00:00Z',
      generatorURL: 'http://prometheus.example:9090/graph',
      fingerprint: 'c0ffee',
    })),
  };
}

test('Alertmanager: service / release / revision labels; firing and resolved; bad bodies name the field', () => {
  const claims = alertmanagerClaims(
    webhook([
      { status: 'firing', labels: { alertname: 'HighErrorRate', service: 'checkout', release: 'r42' } },
      { status: 'resolved', labels: { alertname: 'HighLatency', service: 'checkout', revision: '7' } },
      { status: 'firing', labels: { alertname: 'DiskFull' } },
    ]),
  );
  expect(claims).toMatchObject([
    {
      source: 'alertmanager',
      name: 'HighErrorRate',
      firing: true,
      service: 'checkout',
      release: 'r42',
      summary: 'HighErrorRate: error rate 9 % > 2 %',
    },
    { name: 'HighLatency', firing: false, service: 'checkout', revision: '7' },
    { name: 'DiskFull', firing: true, service: undefined },
  ]);
  expect(claims[0].sinceMs).toBeGreaterThan(0);
  expect(() => alertmanagerClaims({ version: '3', alerts: [] })).toThrow(/version/);
  expect(() => alertmanagerClaims({ version: '4' })).toThrow(/alerts: missing/);
  expect(() => alertmanagerClaims({ alerts: [{ status: 'pending' }] })).toThrow(/alerts\[0\]\.status/);
  expect(() => alertmanagerClaims('x')).toThrow(PayloadError);
});

test('CloudWatch: service dimension, description tokens, Lambda FunctionName/Resource/ExecutedVersion with the region', () => {
  const lambda = cloudWatchAlarmClaim(
    JSON.stringify(lambdaAlarm({ name: 'checkout-errors', fn: 'checkout-fn', alias: 'live', region: 'eu-west-1' })),
  );
  expect(lambda).toMatchObject({
    source: 'cloudwatch',
    name: 'checkout-errors',
    firing: true,
    service: undefined,
    lambda: { function: 'checkout-fn', region: 'eu-west-1', alias: 'live' },
  });
  expect(lambda.summary).toMatch(/^checkout-errors: Threshold Crossed/);
  expect(Math.abs(lambda.sinceMs! - Date.now())).toBeLessThan(5_000); // "+0000" offsets parse

  const tokens = cloudWatchAlarmClaim(
    JSON.stringify(lambdaAlarm({ name: 'x', fn: 'f', state: 'OK', description: 'Pager. rollgate.service=checkout rollgate.release=r42' })),
  );
  expect(tokens).toMatchObject({ firing: false, service: 'checkout', release: 'r42' });
  expect(tokens.lambda).toBeUndefined();

  const custom = lambdaAlarm({ name: 'y', fn: 'f' });
  custom.Trigger.Dimensions = [
    { name: 'Service', value: 'payments' },
    { name: 'Release', value: 'r7' },
    { name: 'ExecutedVersion', value: '12' },
  ];
  expect(cloudWatchAlarmClaim(JSON.stringify(custom))).toMatchObject({ service: 'payments', release: 'r7', revision: '12' });

  // Metric math alarm: dimensions of its metrics.
  const math = {
    ...lambdaAlarm({ name: 'z', fn: 'f' }),
    Trigger: { Metrics: [{ MetricStat: { Metric: { Dimensions: [{ name: 'service', value: 'search' }] } } }] },
  };
  expect(cloudWatchAlarmClaim(JSON.stringify(math))).toMatchObject({ service: 'search' });
  expect(() => cloudWatchAlarmClaim('{"foo":1}')).toThrow(/AlarmName/);
  expect(() => cloudWatchAlarmClaim('not json')).toThrow(/Message/);
});

function rollout(over: Partial<RolloutStatus> = {}): OpenRollout {
  return {
    service: 'checkout',
    runId: 'run-1',
    status: {
      release: 'r42',
      state: 'running',
      startedAtMs: Date.now() - 60_000,
      targets: [
        { name: 'use1', provider: 'aws-lambda', location: 'us-east-1', stableVersion: '6', newVersion: '7', weight: 10 },
        { name: 'euw1', provider: 'aws-lambda', location: 'eu-west-1', stableVersion: '3', weight: 0 },
      ],
      ...over,
    } as RolloutStatus,
  };
}
const claim = (over: Partial<AlertClaim> = {}): AlertClaim => ({
  source: 'alertmanager',
  name: 'HighErrorRate',
  firing: true,
  summary: 'HighErrorRate: bad',
  service: 'checkout',
  ...over,
});

test('decision: a firing alert about the running release fails it; stale, resolved and early alerts do not', () => {
  const ok = judgeClaims('checkout', [claim({ release: 'r42' })], rollout());
  expect(ok.outcomes).toMatchObject([{ outcome: 'reverting', release: 'r42' }]);
  expect(ok.verdict).toMatchObject({ verdict: 'fail', release: 'r42', reason: 'Alertmanager: HighErrorRate: bad' });

  const byRevision = judgeClaims('checkout', [claim({ revision: '7' })], rollout());
  expect(byRevision.verdict).toMatchObject({ verdict: 'fail', target: 'use1' });

  const stale = judgeClaims('checkout', [claim({ release: 'r41' })], rollout());
  expect(stale.verdict).toBeUndefined();
  expect(stale.outcomes[0]).toMatchObject({ outcome: 'refused', detail: expect.stringMatching(/release r41.*runs r42/) });
  expect(judgeClaims('checkout', [claim({ revision: '6' })], rollout()).outcomes[0]).toMatchObject({ outcome: 'refused' });
  // No release/revision named, firing since before the rollout started: about the old release.
  expect(judgeClaims('checkout', [claim({ sinceMs: Date.now() - 120_000 })], rollout()).outcomes[0]).toMatchObject({ outcome: 'refused' });
  expect(judgeClaims('checkout', [claim({ sinceMs: Date.now() })], rollout()).verdict).toBeDefined();

  for (const [c, r, why] of [
    [claim({ firing: false }), rollout(), /not firing/],
    [claim(), null, /no open rollout/],
    [claim(), rollout({ state: 'paused', pausedAfterRollback: true }), /after a rollback/],
    [claim(), rollout({ targets: [] }), /no traffic/],
  ] as const) {
    const j = judgeClaims('checkout', [c], r);
    expect(j.verdict).toBeUndefined();
    expect(j.outcomes[0]).toMatchObject({ outcome: 'ignored', detail: expect.stringMatching(why) });
  }
  // An operator pause with traffic on the new version still takes the breach.
  expect(judgeClaims('checkout', [claim()], rollout({ state: 'paused' })).verdict).toBeDefined();
  // One verdict for a group, naming every acting alert; the refused one does not stop the others.
  const group = judgeClaims(
    'checkout',
    [claim({ name: 'A', summary: 'A' }), claim({ name: 'B', summary: 'B', release: 'r1' }), claim({ name: 'C', summary: 'C' })],
    rollout(),
  );
  expect(group.outcomes.map((o) => o.outcome)).toEqual(['reverting', 'refused', 'reverting']);
  expect(group.verdict!.reason).toBe('Alertmanager: A; C');
});

describe('SNS signatures', () => {
  let sns: FakeSns;
  beforeAll(async () => {
    sns = await startFakeSns();
  });
  afterAll(async () => sns?.close());

  const alarm = () => lambdaAlarm({ name: 'checkout-errors', fn: 'checkout-fn' });

  test('SignatureVersion 1 (SHA1) and 2 (SHA256) are accepted; a tampered, unsigned or re-signed message is refused', async () => {
    for (const v of ['1', '2'] as const) {
      const m = sns.alarm(alarm(), v);
      await expect(verifySnsMessage(m, sns.options())).resolves.toMatchObject({ Type: 'Notification', TopicArn: TOPIC });
      const tampered = { ...m, Message: m.Message.replace('checkout-fn', 'payments-fn') };
      await expect(verifySnsMessage(tampered, sns.options())).rejects.toThrow(/signature is invalid/);
    }
    const unsigned = { ...sns.alarm(alarm()), Signature: '' };
    await expect(verifySnsMessage(unsigned, sns.options())).rejects.toThrow(SnsRefused);
    const { Signature: _s, ...noSignature } = sns.alarm(alarm());
    await expect(verifySnsMessage(noSignature, sns.options())).rejects.toThrow(/Signature: missing/);
    await expect(verifySnsMessage({ ...sns.alarm(alarm()), SignatureVersion: '3' }, sns.options())).rejects.toThrow(/SignatureVersion 3/);
    // A confirmation's Token/SubscribeURL are signed: changing where it points breaks the signature.
    const conf = sns.sign({
      Type: 'SubscriptionConfirmation',
      Message: 'confirm',
      Token: 't0k',
      SubscribeURL: `${sns.base}/confirm?Token=t0k`,
    });
    await expect(verifySnsMessage(conf, sns.options())).resolves.toBeDefined();
    await expect(verifySnsMessage({ ...conf, SubscribeURL: `${sns.base}/confirm?Token=other` }, sns.options())).rejects.toThrow(
      /signature/,
    );
  });

  test('topic, certificate host, https and age are checked before any certificate is downloaded', async () => {
    const before = sns.certFetches;
    const production = { topics: [TOPIC] }; // SNS hosts only
    await expect(verifySnsMessage(sns.alarm(alarm()), production)).rejects.toThrow(/host 127\.0\.0\.1:\d+ is not an SNS host/);
    await expect(
      verifySnsMessage({ ...sns.alarm(alarm()), TopicArn: 'arn:aws:sns:us-east-1:123456789012:other' }, sns.options()),
    ).rejects.toThrow(/not in ROLLGATE_ALERT_SNS_TOPICS/);
    await expect(
      verifySnsMessage(
        sns.sign({ Type: 'Notification', Message: '{}', SigningCertURL: sns.certUrl.replace('https:', 'http:') }),
        sns.options(),
      ),
    ).rejects.toThrow(/not https/);
    const old = sns.sign({ Type: 'Notification', Message: '{}', Timestamp: new Date(Date.now() - 2 * 3_600_000).toISOString() });
    await expect(verifySnsMessage(old, sns.options())).rejects.toThrow(/too old/);
    expect(sns.certFetches).toBe(before);
    // A real SNS host name passes the production pattern (the download itself is not tried here).
    expect(/^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$/.test('sns.eu-west-1.amazonaws.com')).toBe(true);
  });

  test('AWS reference validator (sns-validator) agrees on the test messages', async () => {
    // sns-validator downloads with https.get on the global agent: trust the test CA there (this test process only).
    const agentOptions = globalAgent.options as { ca?: string };
    const previous = agentOptions.ca;
    agentOptions.ca = TEST_CERT;
    try {
      const reference = new MessageValidator(TEST_HOST_PATTERN);
      const check = (m: Partial<SnsMessage>) =>
        new Promise<boolean>((resolve) => reference.validate({ ...m } as Record<string, unknown>, (err: Error | null) => resolve(!err)));
      for (const v of ['1', '2'] as const) {
        const m = sns.alarm(alarm(), v);
        expect(await check(m)).toBe(true);
        expect(await check({ ...m, Message: m.Message.replace('ALARM', 'OK') })).toBe(false);
      }
      const conf = sns.sign(
        { Type: 'SubscriptionConfirmation', Message: 'confirm', Token: 't', SubscribeURL: `${sns.base}/confirm?Token=t` },
        '1',
      );
      expect(await check(conf)).toBe(true);
    } finally {
      // Restore the key itself: an own `ca: undefined` left on the global agent overrides every later
      // request's `ca` in this process (jest --runInBand runs every test file in one process).
      if (previous === undefined) delete agentOptions.ca;
      else agentOptions.ca = previous;
    }
  });

  test("the receiver's downloads do not depend on the global agent's options (CI once left `ca: undefined` there)", async () => {
    const agentOptions = globalAgent.options as { ca?: string };
    const had = 'ca' in agentOptions;
    const previous = agentOptions.ca;
    // Agent options override request options in Node's Agent.addRequest: this is what broke the
    // subscription test when the sns-validator test had run earlier in the same process.
    agentOptions.ca = undefined;
    try {
      const m = sns.sign({ Type: 'Notification', Message: JSON.stringify(alarm()), SigningCertURL: `${sns.base}/other-cert.pem` });
      await expect(verifySnsMessage(m, sns.options())).resolves.toMatchObject({ Type: 'Notification' });
      const conf = sns.sign({ Type: 'SubscriptionConfirmation', Message: 'c', Token: 'g', SubscribeURL: `${sns.base}/confirm?Token=g` });
      await expect(confirmSubscription(conf, sns.options())).resolves.toBeUndefined();
    } finally {
      if (had) agentOptions.ca = previous;
      else delete agentOptions.ca;
    }
  });
});

test('receiver settings: a bad value names the variable; no token and no topic is refused', () => {
  const ok = alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: '9466', ROLLGATE_ALERT_TOKEN: 'a-token-of-16-chars+' });
  expect(ok).toMatchObject({ port: 9466, host: '127.0.0.1', token: 'a-token-of-16-chars+', sns: undefined });
  expect(() => alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: 'x', ROLLGATE_ALERT_TOKEN: 'a-token-of-16-chars+' })).toThrow(
    /ROLLGATE_ALERT_RECEIVER_PORT/,
  );
  expect(() => alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: '0' })).toThrow(
    /ROLLGATE_ALERT_TOKEN.*ROLLGATE_ALERT_SNS_TOPICS/,
  );
  expect(() => alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: '0', ROLLGATE_ALERT_TOKEN: 'short' })).toThrow(
    /ROLLGATE_ALERT_TOKEN: use at least 16/,
  );
  expect(() => alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: '0', ROLLGATE_ALERT_SNS_TOPICS: 'my-topic' })).toThrow(
    /ROLLGATE_ALERT_SNS_TOPICS: my-topic/,
  );
  const sns = alertReceiverConfigFromEnv({ ROLLGATE_ALERT_RECEIVER_PORT: '0', ROLLGATE_ALERT_SNS_TOPICS: `${TOPIC}, ` });
  expect(sns.sns).toEqual({ topics: [TOPIC], hostPattern: undefined, ca: undefined });
});

test('a signing certificate that does not download is "not now" (503, SNS redelivers), not a forgery', async () => {
  const sns = await startFakeSns();
  try {
    // A port nothing listens on: the download fails twice (one retry), and the message is not refused as forged.
    const m = sns.sign({ Type: 'Notification', Message: '{}', SigningCertURL: 'https://127.0.0.1:1/SimpleNotificationService-x.pem' });
    const err = await verifySnsMessage(m, sns.options()).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SnsUnavailable);
    expect(err).not.toBeInstanceOf(SnsRefused);
    expect((err as Error).message).toMatch(/^SigningCertURL: the certificate did not download/);
  } finally {
    await sns.close();
  }
});

// CI runs on machines whose clock may stand before the moment a fixture was made: a certificate
// that is not yet valid fails every TLS download of it (the receiver answers 503 forever).
test('the SNS test certificate is valid on any plausible machine clock (from 2000 to 2100)', () => {
  const cert = new X509Certificate(TEST_CERT);
  expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(Date.parse('2000-01-01T00:00:00Z'));
  expect(new Date(cert.validTo).getTime()).toBeGreaterThanOrEqual(Date.parse('2100-01-01T00:00:00Z'));
});
