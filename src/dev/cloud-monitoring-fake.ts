/**
 * Dev/test only: a wire-level fake of Cloud Monitoring's MetricService (ListTimeSeries and
 * CreateTimeSeries) over gRPC on 127.0.0.1, built from the protos `@google-cloud/monitoring`
 * ships. Not an emulator of everything: filters are conjunctions (AND) of `field = "value"` /
 * `field != "value"` on metric.type, resource.type, resource.labels.* and metric.labels.*;
 * aggregation is refused (INVALID_ARGUMENT) because rollgate sums raw points itself; no paging.
 * Unlike real Cloud Monitoring it accepts writes to run.googleapis.com metrics, so the traffic
 * simulator (or a test) can stand in for Cloud Run's own metric pipeline.
 */
import { GrpcClient, grpc } from 'google-gax';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const MONITORING_PROTOS = require('@google-cloud/monitoring/build/protos/protos.json');

type Msg = Record<string, any>;
type Callback = (err: (Error & { code: number; details: string; metadata: grpc.Metadata }) | null, value?: Msg) => void;

let pkg: any;
const Code = grpc.status;

class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

interface StoredSeries {
  project: string;
  metric: { type: string; labels: Record<string, string> };
  resource: { type: string; labels: Record<string, string> };
  metricKind: string;
  valueType: string;
  unit: string;
  points: { startMs: number; endMs: number; value: Msg }[];
}

/** Cloud Run's request_latencies buckets: exponential, growth 1.4, scale 1 ms, 100 finite buckets. */
export const RUN_LATENCY_BUCKETS = { numFiniteBuckets: 100, growthFactor: 1.4, scale: 1 };

const VALUE_TYPES: Record<string, string> = {
  int64Value: 'INT64',
  doubleValue: 'DOUBLE',
  distributionValue: 'DISTRIBUTION',
  boolValue: 'BOOL',
  stringValue: 'STRING',
};
const toMs = (t: Msg | null | undefined) => (t ? Number(t.seconds ?? 0) * 1000 + Math.floor(Number(t.nanos ?? 0) / 1e6) : 0);
const ts = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });

/** A distribution value with the Cloud Run bucket layout from raw latency samples (ms). */
export function latencyDistribution(samplesMs: number[]): Msg {
  const { numFiniteBuckets, growthFactor, scale } = RUN_LATENCY_BUCKETS;
  const counts = new Array<number>(numFiniteBuckets + 2).fill(0);
  for (const v of samplesMs) {
    let i = 0;
    if (v >= scale) i = Math.min(numFiniteBuckets + 1, 1 + Math.floor(Math.log(v / scale) / Math.log(growthFactor)));
    counts[i]++;
  }
  const mean = samplesMs.length ? samplesMs.reduce((a, b) => a + b, 0) / samplesMs.length : 0;
  while (counts.length > 1 && counts[counts.length - 1] === 0) counts.pop(); // trailing zeros may be omitted
  return {
    count: String(samplesMs.length),
    mean,
    sumOfSquaredDeviation: samplesMs.reduce((a, v) => a + (v - mean) ** 2, 0),
    bucketOptions: { exponentialBuckets: RUN_LATENCY_BUCKETS },
    bucketCounts: counts.map(String),
  };
}

interface Clause {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** `a = "x" AND b != "y"`; anything else is INVALID_ARGUMENT (the fake says what it cannot do). */
export function parseFilter(filter: string): Clause[] {
  const clauses: Clause[] = [];
  const re = /\s*([a-z_][a-z0-9_.]*)\s*(!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:AND\b|$)/giy;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(filter)) !== null) {
    clauses.push({ field: m[1], op: m[2] as '=' | '!=', value: m[3].replace(/\\(.)/g, '$1') });
    last = re.lastIndex;
    if (last >= filter.length) break;
  }
  if (last < filter.trim().length || clauses.length === 0)
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      `the Cloud Monitoring fake only understands 'field = "value" AND ...' filters, got: ${filter}`,
    );
  return clauses;
}

function fieldOf(s: StoredSeries, field: string): string | undefined {
  if (field === 'metric.type') return s.metric.type;
  if (field === 'resource.type') return s.resource.type;
  if (field.startsWith('resource.labels.')) return s.resource.labels[field.slice(16)];
  if (field.startsWith('resource.label.')) return s.resource.labels[field.slice(15)];
  if (field.startsWith('metric.labels.')) return s.metric.labels[field.slice(14)];
  if (field.startsWith('metric.label.')) return s.metric.labels[field.slice(13)];
  throw new RpcError(Code.INVALID_ARGUMENT, `the Cloud Monitoring fake does not filter on ${field}`);
}

export interface RevisionTraffic {
  project: string;
  region: string;
  service: string;
  revision: string;
  requests: number;
  errors: number;
  /** Latency samples (ms) for request_latencies; omitted = no latency point. */
  latenciesMs?: number[];
  atMs?: number;
}

export class CloudMonitoringFake {
  readonly calls: Record<string, number> = {};
  private readonly series = new Map<string, StoredSeries>();
  private server?: grpc.Server;
  private failures = new Map<string, { n: number; code: grpc.status }>();
  address = '';
  port = 0;

  async start(): Promise<this> {
    pkg ??= new GrpcClient().loadProtoJSON(MONITORING_PROTOS);
    const server = new grpc.Server();
    const def = pkg.google.monitoring.v3.MetricService.service;
    const handlers: Record<string, (r: Msg) => Msg> = {
      ListTimeSeries: (r) => this.list(r),
      CreateTimeSeries: (r) => this.create(r),
    };
    const impl: Record<string, (call: { request: Msg }, cb: Callback) => void> = {};
    for (const method of Object.keys(def)) {
      impl[method] = (call, cb) => {
        this.calls[method] = (this.calls[method] ?? 0) + 1;
        const fail = this.failures.get(method);
        const error = (code: number, message: string) =>
          cb(Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() }));
        if (fail && fail.n > 0) {
          fail.n--;
          return error(fail.code, `injected ${grpc.status[fail.code]}`);
        }
        const h = handlers[method];
        if (!h) return error(Code.UNIMPLEMENTED, `MetricService.${method} is not implemented by the rollgate Cloud Monitoring fake`);
        try {
          cb(null, h(call.request));
        } catch (err) {
          error(err instanceof RpcError ? err.code : Code.INTERNAL, (err as Error).message);
        }
      };
    }
    server.addService(def, impl);
    this.port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? rej(err) : res(port))),
    );
    this.address = `127.0.0.1:${this.port}`;
    this.server = server;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.tryShutdown(() => r()) : r()));
    this.server?.forceShutdown();
  }

  failNext(method: string, n: number, code: grpc.status): void {
    this.failures.set(method, { n, code });
  }

  clear(): void {
    this.series.clear();
  }

  /** One point per series, the way Cloud Run reports a revision's requests (2xx / 5xx) and latencies. */
  recordRevisionTraffic(r: RevisionTraffic): void {
    const at = r.atMs ?? Date.now();
    const resource = {
      type: 'cloud_run_revision',
      labels: {
        project_id: r.project,
        location: r.region,
        service_name: r.service,
        revision_name: r.revision,
        configuration_name: r.service,
      },
    };
    const ok = r.requests - r.errors;
    const counts: [string, string, number][] = [
      ['2xx', '200', ok],
      ['5xx', '500', r.errors],
    ];
    for (const [cls, code, n] of counts) {
      if (n <= 0) continue;
      this.add(r.project, {
        metric: { type: 'run.googleapis.com/request_count', labels: { response_code_class: cls, response_code: code, route: '' } },
        resource,
        metricKind: 'DELTA',
        valueType: 'INT64',
        unit: '1',
        point: { startMs: at - 1000, endMs: at, value: { int64Value: String(n) } },
      });
    }
    if (r.latenciesMs?.length)
      this.add(r.project, {
        metric: { type: 'run.googleapis.com/request_latencies', labels: { response_code_class: '2xx', response_code: '200', route: '' } },
        resource,
        metricKind: 'DELTA',
        valueType: 'DISTRIBUTION',
        unit: 'ms',
        point: { startMs: at - 1000, endMs: at, value: { distributionValue: latencyDistribution(r.latenciesMs) } },
      });
  }

  private add(project: string, s: Omit<StoredSeries, 'points' | 'project'> & { point: StoredSeries['points'][number] }): void {
    const key = JSON.stringify([project, s.metric.type, s.metric.labels, s.resource.type, s.resource.labels]);
    let stored = this.series.get(key);
    if (!stored) {
      stored = {
        project,
        metric: s.metric,
        resource: s.resource,
        metricKind: s.metricKind,
        valueType: s.valueType,
        unit: s.unit,
        points: [],
      };
      this.series.set(key, stored);
    }
    stored.points.push(s.point);
  }

  private list(r: Msg): Msg {
    const m = /^projects\/([^/]+)$/.exec(r.name ?? '');
    if (!m) throw new RpcError(Code.INVALID_ARGUMENT, `name must be projects/PROJECT, got "${r.name}"`);
    if (!r.interval?.endTime) throw new RpcError(Code.INVALID_ARGUMENT, 'interval.endTime is required');
    const agg = r.aggregation;
    if (
      agg &&
      ((agg.perSeriesAligner && agg.perSeriesAligner !== 'ALIGN_NONE') ||
        (agg.crossSeriesReducer && agg.crossSeriesReducer !== 'REDUCE_NONE'))
    )
      throw new RpcError(Code.INVALID_ARGUMENT, 'the Cloud Monitoring fake does not aggregate: ask for raw points (ALIGN_NONE)');
    const clauses = parseFilter(r.filter ?? '');
    if (!clauses.some((c) => c.field === 'metric.type' && c.op === '='))
      throw new RpcError(Code.INVALID_ARGUMENT, 'filter must name exactly one metric.type');
    const startMs = toMs(r.interval.startTime);
    const endMs = toMs(r.interval.endTime);
    const headersOnly = r.view === 'HEADERS';
    const out: Msg[] = [];
    for (const s of this.series.values()) {
      if (s.project !== m[1]) continue;
      if (!clauses.every((c) => (fieldOf(s, c.field) === c.value) === (c.op === '='))) continue;
      // Newest first, as Cloud Monitoring returns points; a point counts when its end is in (start, end].
      const points = s.points.filter((p) => p.endMs > startMs && p.endMs <= endMs).sort((a, b) => b.endMs - a.endMs);
      if (points.length === 0) continue;
      out.push({
        metric: s.metric,
        resource: s.resource,
        metricKind: s.metricKind,
        valueType: s.valueType,
        unit: s.unit,
        points: headersOnly ? [] : points.map((p) => ({ interval: { startTime: ts(p.startMs), endTime: ts(p.endMs) }, value: p.value })),
      });
    }
    return { timeSeries: out, nextPageToken: '', executionErrors: [], unit: '' };
  }

  private create(r: Msg): Msg {
    const m = /^projects\/([^/]+)$/.exec(r.name ?? '');
    if (!m) throw new RpcError(Code.INVALID_ARGUMENT, `name must be projects/PROJECT, got "${r.name}"`);
    for (const s of (r.timeSeries ?? []) as Msg[]) {
      if (!s.metric?.type || !s.resource?.type)
        throw new RpcError(Code.INVALID_ARGUMENT, 'time series needs metric.type and resource.type');
      if ((s.points ?? []).length !== 1) throw new RpcError(Code.INVALID_ARGUMENT, 'each time series must have exactly one point');
      const p = s.points[0];
      const endMs = toMs(p.interval?.endTime);
      const which = p.value?.value as string; // the oneof's set field (proto-loader's oneofs option)
      if (!which) throw new RpcError(Code.INVALID_ARGUMENT, 'point.value must be set');
      this.add(m[1], {
        metric: { type: s.metric.type, labels: { ...(s.metric.labels ?? {}) } },
        resource: { type: s.resource.type, labels: { ...(s.resource.labels ?? {}) } },
        metricKind: s.metricKind && s.metricKind !== 'METRIC_KIND_UNSPECIFIED' ? s.metricKind : 'GAUGE',
        valueType: s.valueType && s.valueType !== 'VALUE_TYPE_UNSPECIFIED' ? s.valueType : (VALUE_TYPES[which] ?? 'INT64'),
        unit: s.unit ?? '',
        point: { startMs: toMs(p.interval?.startTime) || endMs, endMs, value: { [which]: p.value[which] } },
      });
    }
    return {};
  }
}
