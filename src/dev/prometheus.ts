/**
 * Dev/test only: a real Prometheus (the Debian package's /usr/bin/prometheus) on loopback with a
 * temporary config and TSDB, scraping exporters the test controls at a 1 s interval.
 *
 * The exporter serves the text exposition format: per revision a counter
 * `rollgate_http_requests_total{revision, code}` (code "200" and, once there are errors, "500")
 * and a histogram `rollgate_http_request_duration_seconds{revision}`. Counters grow only when
 * Prometheus scrapes (each scrape adds one "tick" of the revision's traffic profile), so the rate
 * Prometheus sees is exact per scrape and does not depend on timers in the test.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Managed } from './processes';
import { startReadyDaemon } from './ready-daemon';

export const PROMETHEUS_INSTALL_HINT =
  'Install it with `apt-get update && apt-get install -y prometheus` (Debian package; the tests start it themselves, no service needed) or set PROMETHEUS_PATH to a prometheus binary.';

export function prometheusPath(): string {
  const p = process.env.PROMETHEUS_PATH || '/usr/bin/prometheus';
  if (!existsSync(p)) throw new Error(`Prometheus not found at ${p}. ${PROMETHEUS_INSTALL_HINT}`);
  return p;
}

/** Traffic added per scrape for one revision. */
export interface RevisionTraffic {
  requests: number;
  errors: number;
  /** Latency of every request in this tick (ms); omit for a revision without a latency histogram. */
  latencyMs?: number;
}

/** Histogram bucket upper bounds, in seconds (client_golang's defaults). */
export const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface RevisionState {
  profile?: RevisionTraffic;
  ok: number;
  errors: number;
  buckets?: number[];
  sum: number;
  count: number;
}

export const EXPORTER_METRICS = {
  requests: 'rollgate_http_requests_total',
  latency: 'rollgate_http_request_duration_seconds',
};

export class MetricsExporter {
  private server?: Server;
  private readonly revisions = new Map<string, RevisionState>();
  scrapes = 0;
  hostPort = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404);
        return res.end('not found');
      }
      this.scrapes++;
      this.tick();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(this.render());
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.hostPort = `127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this;
  }

  /** Set (or with undefined: stop) a revision's traffic per scrape. Counters already served stay. */
  set(revision: string, profile: RevisionTraffic | undefined): void {
    const s = this.revisions.get(revision) ?? { ok: 0, errors: 0, sum: 0, count: 0 };
    s.profile = profile;
    this.revisions.set(revision, s);
  }

  private tick(): void {
    for (const s of this.revisions.values()) {
      const p = s.profile;
      if (!p) continue;
      s.errors += p.errors;
      s.ok += p.requests - p.errors;
      if (p.latencyMs !== undefined) {
        s.buckets ??= LATENCY_BUCKETS_S.map(() => 0);
        const v = p.latencyMs / 1000;
        LATENCY_BUCKETS_S.forEach((le, i) => {
          if (v <= le) s.buckets![i] += p.requests;
        });
        s.sum += v * p.requests;
        s.count += p.requests;
      }
    }
  }

  render(): string {
    const { requests, latency } = EXPORTER_METRICS;
    const out = [`# HELP ${requests} Requests by revision and status code.`, `# TYPE ${requests} counter`];
    for (const [rev, s] of this.revisions) {
      out.push(`${requests}{revision="${rev}",code="200"} ${s.ok}`);
      if (s.errors > 0) out.push(`${requests}{revision="${rev}",code="500"} ${s.errors}`);
    }
    out.push(`# HELP ${latency} Request latency.`, `# TYPE ${latency} histogram`);
    for (const [rev, s] of this.revisions) {
      if (!s.buckets) continue;
      LATENCY_BUCKETS_S.forEach((le, i) => out.push(`${latency}_bucket{revision="${rev}",le="${le}"} ${s.buckets![i]}`));
      out.push(`${latency}_bucket{revision="${rev}",le="+Inf"} ${s.count}`);
      out.push(`${latency}_sum{revision="${rev}"} ${s.sum}`);
      out.push(`${latency}_count{revision="${rev}"} ${s.count}`);
    }
    return out.join('\n') + '\n';
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

export interface PrometheusServer extends Managed {
  url: string;
  port: number;
  dir: string;
  /** Wait until every scrape target is up and has been scraped at least `scrapes` times (per the exporter). */
  waitForTargetsUp(timeoutMs?: number): Promise<void>;
}

/** Start /usr/bin/prometheus on a free loopback port, scraping `targets` (host:port) every `scrapeIntervalSeconds`. */
export async function startPrometheus(o: {
  targets: string[];
  scrapeIntervalSeconds?: number;
  startTimeoutMs?: number;
}): Promise<PrometheusServer> {
  const interval = o.scrapeIntervalSeconds ?? 1;
  const d = await startReadyDaemon({
    name: 'prometheus',
    bin: prometheusPath(),
    config: {
      file: 'prometheus.yml',
      text: [
        'global:',
        `  scrape_interval: ${interval}s`,
        `  scrape_timeout: ${interval}s`,
        `  evaluation_interval: ${interval}s`,
        'scrape_configs:',
        '  - job_name: rollgate-test',
        '    static_configs:',
        `      - targets: [${o.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
        '',
      ].join('\n'),
    },
    args: ({ config, data, port }) => [
      `--config.file=${config}`,
      `--storage.tsdb.path=${data}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ],
    startTimeoutMs: o.startTimeoutMs,
  });
  const url = d.url;
  return {
    child: d.child,
    stop: d.stop,
    url,
    port: d.port,
    dir: d.dir,
    async waitForTargetsUp(timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < until) {
        const r = (await (await fetch(`${url}/api/v1/targets`)).json()) as {
          data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] };
        };
        const active = r.data.activeTargets;
        last = JSON.stringify(active.map((t) => [t.scrapeUrl, t.health, t.lastError]));
        if (active.length === o.targets.length && active.every((t) => t.health === 'up')) return;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error(`prometheus scrape targets not up within ${timeoutMs} ms: ${last}`);
    },
  };
}
