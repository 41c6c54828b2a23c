/**
 * Alertmanager webhook payloads (`webhook_config`, payload version 4, as documented at
 * https://prometheus.io/docs/alerting/latest/configuration/#webhook_config): one POST per alert
 * group, with every alert of the group in `alerts`, each with its own `status` and `labels`.
 * rollgate reads the labels `service` (required to act), `release` and `revision` (optional).
 */
import { oneLine, PayloadError, type AlertClaim } from './claims';

interface WebhookAlert {
  status?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
  startsAt?: unknown;
}

export function alertmanagerClaims(body: unknown): AlertClaim[] {
  const payload = body as { version?: unknown; alerts?: unknown } | null;
  if (!payload || typeof payload !== 'object') throw new PayloadError('body: not a JSON object');
  if (payload.version !== undefined && payload.version !== '4')
    throw new PayloadError(`version: ${JSON.stringify(payload.version)} is not the webhook payload version 4`);
  if (!Array.isArray(payload.alerts)) throw new PayloadError('alerts: missing or not a list');
  return payload.alerts.map((a: WebhookAlert, i) => {
    if (!a || typeof a !== 'object' || (a.status !== 'firing' && a.status !== 'resolved'))
      throw new PayloadError(`alerts[${i}].status: must be "firing" or "resolved"`);
    const labels = a.labels && typeof a.labels === 'object' ? a.labels : {};
    const label = (k: string) => (typeof labels[k] === 'string' && labels[k] ? (labels[k] as string) : undefined);
    const name = label('alertname') ?? `alert ${i}`;
    const text = a.annotations?.summary ?? a.annotations?.description;
    const started = typeof a.startsAt === 'string' ? Date.parse(a.startsAt) : NaN;
    return {
      source: 'alertmanager',
      name: oneLine(name, 100),
      firing: a.status === 'firing',
      service: label('service'),
      release: label('release'),
      revision: label('revision'),
      ...(Number.isFinite(started) && started > 0 ? { sinceMs: started } : {}),
      summary: oneLine(text ? `${name}: ${text}` : name),
    };
  });
}
