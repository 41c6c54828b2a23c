/**
 * Worker metrics for Prometheus, on two endpoints:
 * - the Temporal SDK runtime metrics (task queue polls, schedule-to-start latency, slots, sticky
 *   cache...), served by the SDK's own exporter (`Runtime.install({ telemetryOptions: { metrics:
 *   { prometheus: { bindAddress } } } })`) at ROLLGATE_SDK_METRICS_ADDRESS (default 127.0.0.1:9465);
 * - rollgate's own metrics (prom-client registry below) at ROLLGATE_METRICS_ADDRESS (default
 *   127.0.0.1:9464), GET /metrics, plus GET /healthz for container healthchecks.
 *
 * rollgate metrics (all labelled by `service`):
 *   rollgate_rollouts_started_total, rollgate_rollouts_succeeded_total, rollgate_rollouts_rolled_back_total,
 *   rollgate_rollouts_aborted_total, rollgate_rollouts_failed_total, rollgate_rollouts_rollback_failed_total,
 *   rollgate_stage_duration_seconds{stage,outcome} (histogram), rollgate_breaches_total{metric},
 *   rollgate_error_rate{target,revision,role} (gauge, 0..1), rollgate_pipeline_paused (gauge 0/1),
 *   rollgate_compensation_failures_total{step}.
 * Fed by RolloutEvents: the `rolloutMetrics` workflow sink (rolloutMetricsSinks) or the
 * `recordRolloutEvent` activity (metricsActivities); see ./events.ts.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { InjectedSinks, TelemetryOptions } from '@temporalio/worker';
import type { RolloutEvent } from './events';
import type { RolloutMetricsSinks } from './workflow-sink';

/** Stage durations: seconds (approvals and bakes make stages minutes to hours long). */
export const STAGE_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

export class RolloutMetrics {
  readonly registry = new Registry();
  readonly started: Counter<'service'>;
  readonly succeeded: Counter<'service'>;
  readonly rolledBack: Counter<'service'>;
  readonly aborted: Counter<'service'>;
  readonly failed: Counter<'service'>;
  readonly rollbackFailed: Counter<'service'>;
  readonly stageDuration: Histogram<'service' | 'stage' | 'outcome'>;
  readonly breaches: Counter<'service' | 'metric'>;
  readonly errorRate: Gauge<'service' | 'target' | 'revision' | 'role'>;
  readonly paused: Gauge<'service'>;
  readonly compensationFailures: Counter<'service' | 'step'>;
  /** Error-rate series per service, dropped when its rollout finishes (revisions are unbounded). */
  private readonly errorRateSeries = new Map<string, Map<string, Record<'service' | 'target' | 'revision' | 'role', string>>>();

  constructor(o: { defaultMetrics?: boolean } = {}) {
    const r = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Counter<L>({ name, help, labelNames, registers: r });
    this.started = counter('rollgate_rollouts_started_total', 'Rollouts started', ['service']);
    this.succeeded = counter('rollgate_rollouts_succeeded_total', 'Rollouts promoted to 100 %', ['service']);
    this.rolledBack = counter('rollgate_rollouts_rolled_back_total', 'Rollouts closed after a successful rollback', ['service']);
    this.aborted = counter('rollgate_rollouts_aborted_total', 'Rollouts aborted by an operator', ['service']);
    this.failed = counter('rollgate_rollouts_failed_total', 'Rollouts that failed before deploying (build, test, migrate)', ['service']);
    this.rollbackFailed = counter('rollgate_rollouts_rollback_failed_total', 'Rollouts closed with a failed rollback', ['service']);
    this.stageDuration = new Histogram({
      name: 'rollgate_stage_duration_seconds',
      help: 'Duration of rollout stages (workflow time)',
      labelNames: ['service', 'stage', 'outcome'],
      buckets: STAGE_BUCKETS,
      registers: r,
    });
    this.breaches = counter('rollgate_breaches_total', 'Failing verdicts that start a rollback, by metric', ['service', 'metric']);
    this.errorRate = new Gauge({
      name: 'rollgate_error_rate',
      help: 'Error rate (0..1) of a revision at the last analysis',
      labelNames: ['service', 'target', 'revision', 'role'],
      registers: r,
    });
    this.paused = new Gauge({
      name: 'rollgate_pipeline_paused',
      help: '1 while the service pipeline is paused',
      labelNames: ['service'],
      registers: r,
    });
    this.compensationFailures = counter('rollgate_compensation_failures_total', 'Compensation (revert) steps that failed', [
      'service',
      'step',
    ]);
    if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'rollgate_' });
  }

  record(e: RolloutEvent): void {
    const service = e.service;
    switch (e.kind) {
      case 'started':
        this.started.inc({ service });
        this.paused.set({ service }, 0);
        return;
      case 'finished': {
        const c =
          {
            succeeded: this.succeeded,
            'rolled-back': this.rolledBack,
            aborted: this.aborted,
            failed: this.failed,
            'rollback-failed': this.rollbackFailed,
          }[e.state] ?? this.failed;
        c.inc({ service });
        this.paused.set({ service }, 0);
        for (const labels of this.errorRateSeries.get(service)?.values() ?? []) this.errorRate.remove(labels);
        this.errorRateSeries.delete(service);
        return;
      }
      case 'stage':
        this.stageDuration.observe({ service, stage: e.stage, outcome: e.outcome }, Math.max(0, e.durationMs) / 1000);
        return;
      case 'breach':
        this.breaches.inc({ service, metric: e.metric });
        return;
      case 'error-rate': {
        if (!Number.isFinite(e.errorRate)) return;
        const labels = { service, target: e.target, revision: e.revision, role: e.role };
        this.errorRate.set(labels, e.errorRate);
        const series = this.errorRateSeries.get(service) ?? new Map();
        series.set(`${e.target}|${e.revision}|${e.role}`, labels);
        this.errorRateSeries.set(service, series);
        return;
      }
      case 'paused':
        this.paused.set({ service }, e.paused ? 1 : 0);
        return;
      case 'compensation-failed':
        this.compensationFailures.inc({ service, step: e.step });
        return;
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Worker option `sinks`: `Worker.create({ sinks: rolloutMetricsSinks(metrics) })`. */
export function rolloutMetricsSinks(metrics: RolloutMetrics): InjectedSinks<RolloutMetricsSinks> {
  return {
    rolloutMetrics: {
      record: {
        fn: (_info, event) => metrics.record(event),
        callDuringReplay: false,
      },
    },
  };
}

/** The same feed as an activity, for callers that want the event in the history. */
export function metricsActivities(metrics: RolloutMetrics) {
  return {
    async recordRolloutEvent(event: RolloutEvent): Promise<void> {
      metrics.record(event);
    },
  };
}

export interface MetricsServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** GET /metrics (Prometheus text format) and GET /healthz (200 while `healthy()` says so). */
export async function startMetricsServer(
  metrics: RolloutMetrics,
  o: { host?: string; port?: number; healthy?: () => boolean } = {},
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405);
      return res.end();
    }
    if (path === '/metrics') {
      metrics.text().then(
        (body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(body);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(err.message);
        },
      );
      return;
    }
    if (path === '/healthz') {
      const ok = o.healthy ? o.healthy() : true;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      return res.end(ok ? 'ok\n' : 'not ready\n');
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: GET /metrics or /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as { address: string; port: number };
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return { url: `http://${host}:${addr.port}`, server, close: () => new Promise((r) => server.close(() => r())) };
}

/** Telemetry options for `Runtime.install`: the SDK's Prometheus exporter on `bindAddress` (host:port). */
export function sdkTelemetryOptions(bindAddress: string): TelemetryOptions {
  return {
    metrics: {
      prometheus: { bindAddress, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true },
    },
  };
}

export function splitAddress(address: string, what: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${what} must be host:port (got "${address}")`);
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}
