/**
 * Dev/test only: a real Prometheus Alertmanager (the Debian package's
 * /usr/bin/prometheus-alertmanager) on loopback, clustering off, with one route that sends every
 * alert to a webhook with a bearer token, grouped by alertname+service and sent at once
 * (group_wait 0s). Alerts are pushed to it like Prometheus does: POST /api/v2/alerts.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type Managed } from './processes';

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
  const bin = alertmanagerPath();
  let lastErr: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'rollgate-alertmanager-'));
    const config = join(dir, 'alertmanager.yml');
    writeFileSync(
      config,
      [
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
    );
    const port = await freePort();
    const child = spawn(
      bin,
      [
        `--config.file=${config}`,
        `--storage.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--cluster.listen-address=', // no gossip port: a single loopback instance
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout!.on('data', (b) => (out = (out + b).slice(-4000)));
    child.stderr!.on('data', (b) => (out = (out + b).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        if ((await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const stop = () =>
      new Promise<void>((res) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          res();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    if (!ready) {
      await stop();
      lastErr = new Error(`alertmanager did not become ready on ${url} (exit ${child.exitCode}): ${out.slice(-800)}`);
      if (/address already in use/.test(out)) continue; // lost the port race: try another one
      throw lastErr;
    }
    return {
      child,
      stop,
      url,
      async push(alerts) {
        const r = await fetch(`${url}/api/v2/alerts`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(alerts),
        });
        if (!r.ok) throw new Error(`alertmanager refused the alerts: HTTP ${r.status} ${await r.text()}`);
      },
      get log() {
        return out;
      },
    };
  }
  throw lastErr!;
}
