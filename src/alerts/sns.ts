/**
 * Amazon SNS HTTP(S) deliveries: signature check and subscription confirmation.
 * The check follows AWS's documented algorithm (the one the `sns-validator` package implements):
 * the canonical "Key\nValue\n" string of the message's signed fields, RSA with SHA1
 * (SignatureVersion 1) or SHA256 (2), against the certificate at SigningCertURL. That URL, and the
 * SubscribeURL of a confirmation, must be https on an SNS host (`sns.REGION.amazonaws.com[.cn]`),
 * and the TopicArn must be allow-listed, before anything is downloaded. Written here rather than
 * calling `sns-validator` because its download has no timeout or size limit and cannot trust a
 * test CA; test/alerts.unit.test.ts checks that both accept and refuse the same messages.
 */
import { createVerify, X509Certificate } from 'node:crypto';
import { request, type RequestOptions } from 'node:https';
import { PayloadError } from './claims';

/** SNS hosts in AWS's partitions (the pattern AWS's own validators use). */
export const SNS_HOST_PATTERN = /^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$/;

export interface SnsMessage {
  Type: 'Notification' | 'SubscriptionConfirmation' | 'UnsubscribeConfirmation';
  MessageId: string;
  TopicArn: string;
  Message: string;
  Timestamp: string;
  Subject?: string;
  Token?: string;
  SubscribeURL?: string;
  SignatureVersion: string;
  Signature: string;
  SigningCertURL: string;
}

export interface SnsOptions {
  /** TopicArns whose messages are accepted; everything else is refused before any download. */
  topics: string[];
  /** Hosts (host:port) allowed for SigningCertURL and SubscribeURL. Default: SNS_HOST_PATTERN. Tests only: a loopback pattern. */
  hostPattern?: RegExp;
  /** Tests only: a PEM CA to trust for those downloads (a self-signed loopback HTTPS server). */
  ca?: string;
  /** Messages older than this are refused as replays (default 1 hour, SNS's longest retry policy). */
  maxAgeMs?: number;
}

const SIGNED_NOTIFICATION = ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'] as const;
const SIGNED_SUBSCRIPTION = ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'] as const;
const REQUIRED = ['Type', 'MessageId', 'TopicArn', 'Message', 'Timestamp', 'SignatureVersion', 'Signature', 'SigningCertURL'];

export class SnsRefused extends Error {}
/** The message could not be checked now (its signing certificate did not download): answered 503, which SNS redelivers. */
export class SnsUnavailable extends Error {}

/** The string SNS signs (also used by tests to sign messages with a test key). */
export function snsCanonicalString(m: Partial<SnsMessage>): string {
  const keys = m.Type === 'Notification' ? SIGNED_NOTIFICATION : SIGNED_SUBSCRIPTION;
  return keys
    .filter((k) => typeof m[k] === 'string')
    .map((k) => `${k}\n${m[k]}\n`)
    .join('');
}

/** Parse and authenticate one SNS delivery; throws SnsRefused (or PayloadError) naming the reason. */
export async function verifySnsMessage(body: unknown, o: SnsOptions, now = Date.now()): Promise<SnsMessage> {
  const m = body as Record<string, unknown> | null;
  if (!m || typeof m !== 'object') throw new PayloadError('body: not a JSON object');
  for (const k of REQUIRED) if (typeof m[k] !== 'string') throw new PayloadError(`${k}: missing (not an SNS message)`);
  const msg = m as unknown as SnsMessage;
  if (!['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation'].includes(msg.Type))
    throw new PayloadError(`Type: ${JSON.stringify(msg.Type)} is not an SNS message type`);
  if (msg.Type !== 'Notification' && (typeof msg.SubscribeURL !== 'string' || typeof msg.Token !== 'string'))
    throw new PayloadError(`SubscribeURL/Token: missing in a ${msg.Type}`);
  if (!o.topics.includes(msg.TopicArn)) throw new SnsRefused(`TopicArn ${msg.TopicArn} is not in ROLLGATE_ALERT_SNS_TOPICS`);
  const age = now - Date.parse(msg.Timestamp);
  if (!(age <= (o.maxAgeMs ?? 3_600_000))) throw new SnsRefused(`Timestamp ${msg.Timestamp}: too old (or unreadable), refused as a replay`);
  const algorithm = { '1': 'RSA-SHA1', '2': 'RSA-SHA256' }[msg.SignatureVersion];
  if (!algorithm) throw new SnsRefused(`SignatureVersion ${msg.SignatureVersion} is not supported (1 or 2)`);
  const certUrl = allowedUrl(msg.SigningCertURL, o, 'SigningCertURL');
  if (!certUrl.pathname.endsWith('.pem')) throw new SnsRefused('SigningCertURL: not a .pem certificate');
  const cert = await certificate(certUrl, o);
  const ok = createVerify(algorithm).update(snsCanonicalString(msg), 'utf8').verify(cert.publicKey, msg.Signature, 'base64');
  if (!ok) throw new SnsRefused('the message signature is invalid');
  return msg;
}

/** Confirm a subscription by fetching its SubscribeURL (only on an allowed SNS host). */
export async function confirmSubscription(msg: SnsMessage, o: SnsOptions): Promise<void> {
  const url = allowedUrl(msg.SubscribeURL ?? '', o, 'SubscribeURL');
  await httpsGet(url, o, 64 * 1024);
}

function allowedUrl(raw: string, o: SnsOptions, field: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SnsRefused(`${field}: not a URL`);
  }
  if (url.protocol !== 'https:') throw new SnsRefused(`${field}: not https`);
  if (!(o.hostPattern ?? SNS_HOST_PATTERN).test(url.host)) throw new SnsRefused(`${field}: host ${url.host} is not an SNS host`);
  return url;
}

const certs = new Map<string, X509Certificate>();

async function certificate(url: URL, o: SnsOptions): Promise<X509Certificate> {
  const cached = certs.get(url.href);
  if (cached) return cached;
  // A download that fails is tried once more, then answered 503 (SNS redelivers on 5xx): a network
  // hiccup is not a forgery. Something that downloads but is no certificate is refused.
  let pem: string | undefined;
  let lastErr: Error | undefined;
  for (let attempt = 0; attempt < 2 && pem === undefined; attempt++) {
    if (attempt) await new Promise((r) => setTimeout(r, 200));
    try {
      pem = await httpsGet(url, o, 16 * 1024);
    } catch (err) {
      lastErr = err as Error;
    }
  }
  if (pem === undefined) throw new SnsUnavailable(`SigningCertURL: the certificate did not download (${lastErr?.message})`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new SnsRefused(`SigningCertURL: no certificate (${(err as Error).message})`);
  }
  if (certs.size >= 32) certs.clear(); // a handful of SNS signing certificates exist at a time
  certs.set(url.href, cert);
  return cert;
}

function httpsGet(url: URL, o: SnsOptions, maxBytes: number): Promise<string> {
  // agent: false: a fresh agent, never the global one, whose own options (set by any library in this
  // process, even `ca: undefined`) would override this request's `ca` and so its certificate check.
  const opts: RequestOptions = { method: 'GET', timeout: 5_000, agent: false, ...(o.ca ? { ca: o.ca } : {}) };
  return new Promise((resolve, reject) => {
    const req = request(url, opts, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`GET ${url.host}${url.pathname}: HTTP ${res.statusCode}`));
      }
      let size = 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) req.destroy(new Error(`GET ${url.host}${url.pathname}: more than ${maxBytes} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url.host}${url.pathname}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}
