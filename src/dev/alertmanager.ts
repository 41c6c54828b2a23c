/**
 * Dev/test only: a real Prometheus Alertmanager (the Debian package's
 * /usr/bin/prometheus-alertmanager) on loopback, clustering off, with one route that sends every
 * alert to a webhook with a bearer token, grouped by alertname+service and sent at once
 * (group_wait 0s). Alerts are pushed to it like Prometheus does: POST /api/v2/alerts.
 */
import { existsSync } from 'node:fs';
import type { Managed } from './processes';
import { startReadyDaemon } from './ready-daemon';

export const ALERTMANAGER_INSTALL_HINT =
  'Install it with `apt-get update && apt-get install -y prometheus-alertmanager` (Debian package; the tests start it themselves, no service needed) or set ALERTMANAGER_PATH to an alertmanager binary.';

export function alertmanagerPath(): string {
  const p = process.env.ALERTMANAGER_PATH || '/usr/bin/prometheus-alertmanager';
  if (!existsSync(p)) throw new Error(`Alertmanager not found at ${p}. ${ALERTMANAGER_INSTALL_HINT}`);
  return p;
}

export interface AlertmanagerServer extends Managed {
  url: string;
  /** The last 4,000 characters Alertmanager logged (for failure messages). */
  readonly log: string;
  /** Push alerts as Prometheus would (POST /api/v2/alerts). */
  push(alerts: { labels: Record<string, string>; annotations?: Record<string, string>; endsAt?: string }[]): Promise<void>;
}

export async function startAlertmanager(o: {
  webhookUrl: string;
  bearerToken: string;
  startTimeoutMs?: number;
}): Promise<AlertmanagerServer> {
  const d = await startReadyDaemon({
    name: 'alertmanager',
    bin: alertmanagerPath(),
    config: {
      file: 'alertmanager.yml',
      text: [
        'route:',
        '  receiver: rollgate',
        "  group_by: ['alertname', 'service']",
        '  group_wait: 0s',
        '  group_interval: 1s',
        '  repeat_interval: 1h',
        'receivers:',
        '  - name: rollgate',
        '    webhook_configs:',
        `      - url: ${JSON.stringify(o.webhookUrl)}`,
        '        send_resolved: true',
        '        http_config:',
        '          authorization:',
        '            type: Bearer',
        `            credentials: ${JSON.stringify(o.bearerToken)}`,
        '',
      ].join('\n'),
    },
    args: ({ config, data, port }) => [
      `--config.file=${config}`,
      `--storage.path=${data}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=', // no gossip port: a single loopback instance
      '--log.level=warn',
    ],
    startTimeoutMs: o.startTimeoutMs,
  });
  return {
    child: d.child,
    stop: d.stop,
    url: d.url,
    async push(alerts) {
      const r = await fetch(`${d.url}/api/v2/alerts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(alerts),
      });
      if (!r.ok) throw new Error(`alertmanager refused the alerts: HTTP ${r.status} ${await r.text()}`);
    },
    get log() {
      return d.log;
    },
  };
}
