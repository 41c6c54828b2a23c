/**
 * A loopback stand-in for Amazon SNS's HTTPS side (tests only): it serves the signing certificate
 * at SigningCertURL and records subscription confirmations (GET SubscribeURL), over HTTPS with the
 * self-signed test certificate in test/fixtures/sns (its key signs the test messages; never a real key).
 */
import { createSign, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { snsCanonicalString, type SnsMessage, type SnsOptions } from '../../src/alerts/sns';

const FIXTURES = join(__dirname, '..', 'fixtures', 'sns');
export const TEST_CERT_PATH = join(FIXTURES, 'test-signing-cert.pem');
export const TEST_CERT = readFileSync(TEST_CERT_PATH, 'utf8');
const TEST_KEY = readFileSync(join(FIXTURES, 'test-signing-key.pem'), 'utf8');
export const TOPIC = 'arn:aws:sns:us-east-1:123456789012:rollgate-alarms';
/** The loopback host pattern the receiver is configured with in tests (production: sns.REGION.amazonaws.com). */
export const TEST_HOST_PATTERN = /^127\.0\.0\.1:\d+$/;

export interface FakeSns {
  base: string;
  certUrl: string;
  /** Requests for the certificate and for SubscribeURLs, in order. */
  certFetches: number;
  confirmations: string[];
  options(): SnsOptions;
  /** A signed SNS message (SignatureVersion 1 = SHA1, 2 = SHA256). */
  sign(fields: Partial<SnsMessage> & Pick<SnsMessage, 'Type' | 'Message'>, version?: '1' | '2'): SnsMessage;
  alarm(alarm: Record<string, unknown>, version?: '1' | '2'): SnsMessage;
  close(): Promise<void>;
}

export async function startFakeSns(): Promise<FakeSns> {
  const state = { certFetches: 0, confirmations: [] as string[] };
  const server: Server = createServer({ key: TEST_KEY, cert: TEST_CERT }, (req, res) => {
    if (req.url?.endsWith('.pem')) {
      state.certFetches++;
      res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(TEST_CERT);
    } else if (req.url?.startsWith('/confirm')) {
      state.confirmations.push(req.url);
      res.writeHead(200, { 'content-type': 'text/xml' }).end('<ConfirmSubscriptionResponse/>');
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const certUrl = `${base}/SimpleNotificationService-test.pem`;
  const fake: FakeSns = {
    base,
    certUrl,
    get certFetches() {
      return state.certFetches;
    },
    confirmations: state.confirmations,
    options: () => ({ topics: [TOPIC], hostPattern: TEST_HOST_PATTERN, ca: TEST_CERT }),
    sign(fields, version = '2') {
      const m: SnsMessage = {
        MessageId: randomUUID(),
        TopicArn: TOPIC,
        Timestamp: new Date().toISOString(),
        SignatureVersion: version,
        SigningCertURL: certUrl,
        Signature: '',
        ...fields,
      };
      m.Signature = createSign(version === '1' ? 'RSA-SHA1' : 'RSA-SHA256')
        .update(snsCanonicalString(m), 'utf8')
        .sign(TEST_KEY, 'base64');
      return m;
    },
    alarm(alarm, version) {
      return fake.sign({ Type: 'Notification', Subject: `ALARM: "${alarm.AlarmName}"`, Message: JSON.stringify(alarm) }, version);
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  return fake;
}

/** A CloudWatch alarm state change as SNS carries it (the documented fields), on Lambda's Errors metric. */
export function lambdaAlarm(o: {
  name: string;
  fn: string;
  alias?: string;
  region?: string;
  state?: string;
  description?: string;
  changedAt?: Date;
}) {
  const region = o.region ?? 'us-east-1';
  return {
    AlarmName: o.name,
    AlarmDescription: o.description ?? null,
    AWSAccountId: '123456789012',
    AlarmConfigurationUpdatedTimestamp: '2026-12-01T00:00:00.000+0000',
    NewStateValue: o.state ?? 'ALARM',
    NewStateReason: 'Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).',
    StateChangeTime: (o.changedAt ?? new Date()).toISOString().replace('Z', '+0000'),
    Region: 'US East (N. Virginia)',
    AlarmArn: `arn:aws:cloudwatch:${region}:123456789012:alarm:${o.name}`,
    OldStateValue: 'OK',
    OKActions: [],
    AlarmActions: [TOPIC],
    InsufficientDataActions: [],
    Trigger: {
      MetricName: 'Errors',
      Namespace: 'AWS/Lambda',
      StatisticType: 'Statistic',
      Statistic: 'SUM',
      Unit: null,
      Dimensions: [{ value: o.fn, name: 'FunctionName' }, ...(o.alias ? [{ value: `${o.fn}:${o.alias}`, name: 'Resource' }] : [])],
      Period: 60,
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 5.0,
      TreatMissingData: 'missing',
      EvaluateLowSampleCountPercentile: '',
    },
  };
}
