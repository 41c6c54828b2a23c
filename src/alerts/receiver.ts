/**
 * The alert receiver: breach alerts pushed by existing alerting act as failing outside verdicts.
 *
 *   POST /alertmanager   Prometheus Alertmanager webhook (bearer token ROLLGATE_ALERT_TOKEN)
 *   POST /sns            CloudWatch alarms through an SNS HTTPS subscription (signature + TopicArn allow-list)
 *   GET  /healthz
 *
 * Answers: 200 with one outcome per alert; 409 when an alert was refused as stale (another release
 * or revision, or firing since before the rollout); 400 for a payload that is not one; 401/403 for
 * a caller that is not authenticated; 503 when Temporal could not be asked (both senders retry
 * 5xx, neither retries 4xx).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { alertmanagerClaims } from './alertmanager';
import { cloudWatchAlarmClaim } from './cloudwatch';
import { PayloadError, type AlertClaim } from './claims';
import { confirmSubscription, SnsRefused, SnsUnavailable, verifySnsMessage, type SnsOptions } from './sns';
import { judgeClaims, openRollout, servicesWithLambda, type Outcome } from './resolve';
import { deliverAlertVerdict } from './deliver';

export interface AlertReceiverConfig {
  port: number;
  host: string;
  /** Bearer token Alertmanager must send; without one, /alertmanager is off. */
  token?: string;
  /** SNS subscription settings; without allowed topics, /sns is off. */
  sns?: SnsOptions;
}

export type AlertLog = (level: 'INFO' | 'WARN', message: string, meta: Record<string, unknown>) => void;

export interface AlertReceiver {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

/** The receiver's settings from the environment; a bad value is an error naming the variable. */
export function alertReceiverConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AlertReceiverConfig {
  const port = Number(env.ROLLGATE_ALERT_RECEIVER_PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`ROLLGATE_ALERT_RECEIVER_PORT: ${JSON.stringify(env.ROLLGATE_ALERT_RECEIVER_PORT)} is not a port number`);
  const token = env.ROLLGATE_ALERT_TOKEN || undefined;
  if (token !== undefined && token.length < 16) throw new Error('ROLLGATE_ALERT_TOKEN: use at least 16 characters');
  const topics = (env.ROLLGATE_ALERT_SNS_TOPICS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const t of topics)
    if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/.test(t))
      throw new Error(`ROLLGATE_ALERT_SNS_TOPICS: ${t} is not an SNS topic ARN`);
  if (!token && !topics.length)
    throw new Error('alert receiver: set ROLLGATE_ALERT_TOKEN (Alertmanager) and/or ROLLGATE_ALERT_SNS_TOPICS (CloudWatch via SNS)');
  let hostPattern: RegExp | undefined;
  if (env.ROLLGATE_ALERT_SNS_TEST_HOST_PATTERN) {
    try {
      hostPattern = new RegExp(env.ROLLGATE_ALERT_SNS_TEST_HOST_PATTERN);
    } catch (err) {
      throw new Error(`ROLLGATE_ALERT_SNS_TEST_HOST_PATTERN: ${(err as Error).message}`);
    }
  }
  let ca: string | undefined;
  if (env.ROLLGATE_ALERT_SNS_TEST_CA) {
    try {
      ca = readFileSync(env.ROLLGATE_ALERT_SNS_TEST_CA, 'utf8');
    } catch (err) {
      throw new Error(`ROLLGATE_ALERT_SNS_TEST_CA: ${(err as Error).message}`);
    }
  }
  return {
    port,
    host: env.ROLLGATE_ALERT_RECEIVER_HOST || '127.0.0.1',
    token,
    sns: topics.length ? { topics, hostPattern, ca } : undefined,
  };
}

export async function startAlertReceiver(client: Client, config: AlertReceiverConfig, log: AlertLog = defaultLog): Promise<AlertReceiver> {
  const server: Server = createServer((req, res) => {
    handle(client, config, log, req, res).catch((err) => {
      log('WARN', `alert receiver: ${(err as Error).message}`, { path: req.url });
      send(res, 500, { error: 'internal error' });
    });
  });
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function handle(client: Client, config: AlertReceiverConfig, log: AlertLog, req: IncomingMessage, res: ServerResponse) {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  if (req.method !== 'POST' || (path !== '/alertmanager' && path !== '/sns'))
    return send(res, 404, { error: 'POST /alertmanager or /sns' });

  if (path === '/alertmanager') {
    if (!config.token) return send(res, 404, { error: 'Alertmanager receiver is off (set ROLLGATE_ALERT_TOKEN)' });
    if (!bearerMatches(req.headers.authorization, config.token)) {
      log('WARN', 'alert receiver: Alertmanager request without the right bearer token refused', { path });
      return send(res, 401, { error: 'missing or wrong bearer token' });
    }
  } else if (!config.sns) return send(res, 404, { error: 'SNS receiver is off (set ROLLGATE_ALERT_SNS_TOPICS)' });

  let body: unknown;
  try {
    body = JSON.parse(await readBody(req));
  } catch (err) {
    return send(res, err instanceof BodyTooLarge ? 413 : 400, { error: `body: ${(err as Error).message}` });
  }

  let claims: AlertClaim[];
  try {
    if (path === '/alertmanager') claims = alertmanagerClaims(body);
    else {
      const msg = await verifySnsMessage(body, config.sns!);
      if (msg.Type === 'SubscriptionConfirmation') {
        try {
          await confirmSubscription(msg, config.sns!);
        } catch (err) {
          log('WARN', `alert receiver: SNS subscription to ${msg.TopicArn} not confirmed: ${(err as Error).message}`, {});
          return send(res, err instanceof SnsRefused ? 403 : 502, { error: `subscription not confirmed: ${(err as Error).message}` });
        }
        log('INFO', `alert receiver: confirmed the SNS subscription to ${msg.TopicArn}`, {});
        return send(res, 200, { confirmed: msg.TopicArn });
      }
      if (msg.Type === 'UnsubscribeConfirmation') return send(res, 200, { acknowledged: msg.Type });
      claims = [cloudWatchAlarmClaim(msg.Message)];
    }
  } catch (err) {
    if (err instanceof SnsRefused) {
      log('WARN', `alert receiver: SNS message refused: ${err.message}`, {});
      return send(res, 403, { error: err.message });
    }
    if (err instanceof SnsUnavailable) {
      log('WARN', `alert receiver: SNS message not checked now (SNS redelivers): ${err.message}`, {});
      return send(res, 503, { error: err.message });
    }
    if (err instanceof PayloadError) return send(res, 400, { error: err.message });
    throw err;
  }

  let outcomes: Outcome[];
  try {
    outcomes = await act(client, claims);
  } catch (err) {
    log('WARN', `alert receiver: Temporal could not be asked: ${(err as Error).message}`, {});
    return send(res, 503, { error: `Temporal: ${(err as Error).message.split('\n')[0]}` });
  }
  for (const o of outcomes)
    log(o.outcome === 'refused' ? 'WARN' : 'INFO', `alert ${o.alert} ${o.outcome}: ${o.detail}`, {
      service: o.service ?? null,
      source: claims[0]?.source,
    });
  send(res, outcomes.some((o) => o.outcome === 'refused') ? 409 : 200, { outcomes });
}

/** Group the claims by service, judge each group against its open rollout, send the verdicts. */
async function act(client: Client, claims: AlertClaim[]): Promise<Outcome[]> {
  const byService = new Map<string, AlertClaim[]>();
  const outcomes: Outcome[] = [];
  for (const c of claims) {
    let services = c.service ? [c.service] : [];
    if (!c.service && c.lambda && c.firing) services = await servicesWithLambda(client, c.lambda);
    if (!services.length) {
      const why = c.lambda ? `no open rollout has Lambda target ${c.lambda.function}` : 'names no service (label/dimension service)';
      outcomes.push({ outcome: 'ignored', alert: c.name, detail: c.firing ? why : 'not firing: acknowledged' });
      continue;
    }
    for (const s of services) byService.set(s, [...(byService.get(s) ?? []), c]);
  }
  await Promise.all(
    [...byService].map(async ([service, group]) => {
      const rollout = group.some((c) => c.firing) ? await openRollout(client, service) : null;
      const judged = judgeClaims(service, group, rollout);
      if (judged.verdict && rollout) {
        try {
          await deliverAlertVerdict(client, rollout, judged.verdict);
        } catch (err) {
          if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
          for (const o of judged.outcomes)
            if (o.outcome === 'reverting')
              Object.assign(o, { outcome: 'ignored', detail: 'the rollout closed meanwhile: verdict dropped' });
        }
      }
      outcomes.push(...judged.outcomes);
    }),
  );
  return outcomes;
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/i.exec(header ?? '');
  if (!m) return false;
  // Compare digests: equal length, constant time, whatever was sent.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1].trim()), digest(token));
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BodyTooLarge(`larger than ${MAX_BODY} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown) {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function defaultLog(level: string, message: string, meta: Record<string, unknown>) {
  console.error(JSON.stringify({ level, message, ...meta }));
}
