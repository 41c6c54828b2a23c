/**
 * Cloud Monitoring metrics for Cloud Run canaries. Cloud Run reports per revision (resource type
 * cloud_run_revision, label revision_name), so canary and baseline are told apart by revision:
 * - run.googleapis.com/request_count (DELTA INT64): requests, with 5xx (metric label
 *   response_code_class) counted as errors;
 * - run.googleapis.com/request_latencies (DELTA DISTRIBUTION, ms): the distributions of the window
 *   are merged and p99 is read from the merged histogram.
 * Raw points are read (no server-side aggregation) and summed here, so the result does not depend
 * on alignment periods.
 */
import type { MetricServiceClient } from '@google-cloud/monitoring';
import type { CloudRunTargetSpec, TargetSpec } from '../spec/schema';
import { NonRetryableProviderError } from '../providers/types';
import type { CanarySamples, MetricProvider, MetricWindow, RevisionSamples } from './types';

export interface CloudMonitoringOptions {
  /** host:port of a plaintext gRPC endpoint (the dev/test fake). Unset: Cloud Monitoring itself, with ADC. */
  endpoint?: string;
}

export const REQUEST_COUNT = 'run.googleapis.com/request_count';
export const REQUEST_LATENCIES = 'run.googleapis.com/request_latencies';

export interface DistributionLike {
  count?: number | string | null | { toString(): string };
  bucketOptions?: {
    linearBuckets?: { numFiniteBuckets?: number | null; width?: number | null; offset?: number | null } | null;
    exponentialBuckets?: { numFiniteBuckets?: number | null; growthFactor?: number | null; scale?: number | null } | null;
    explicitBuckets?: { bounds?: number[] | null } | null;
  } | null;
  bucketCounts?: (number | string | { toString(): string })[] | null;
}

/** [lower, upper) of bucket i (0 = underflow, N+1 = overflow) for one bucket layout. */
function bucketBounds(opts: NonNullable<DistributionLike['bucketOptions']>, i: number): [number, number] {
  if (opts.linearBuckets) {
    const { numFiniteBuckets: n = 0, width = 0, offset = 0 } = opts.linearBuckets;
    const lo = i === 0 ? -Infinity : offset! + width! * (i - 1);
    const hi = i > n! ? Infinity : offset! + width! * i;
    return [lo, hi];
  }
  if (opts.exponentialBuckets) {
    const { numFiniteBuckets: n = 0, growthFactor: g = 2, scale = 1 } = opts.exponentialBuckets;
    const lo = i === 0 ? -Infinity : scale! * g! ** (i - 1);
    const hi = i > n! ? Infinity : scale! * g! ** i;
    return [lo, hi];
  }
  const bounds = opts.explicitBuckets?.bounds ?? [];
  return [i === 0 ? -Infinity : bounds[i - 1], i >= bounds.length ? Infinity : bounds[i]];
}

/**
 * Quantile q (0-1) of merged distributions, interpolated inside the bucket that holds it. Buckets
 * must share one layout (Cloud Run's do); the underflow bucket reads as its upper bound and the
 * overflow bucket as its lower bound. Undefined when there are no samples.
 */
export function distributionQuantile(dists: DistributionLike[], q: number): number | undefined {
  const withCounts = dists.filter((d) => d.bucketOptions && (d.bucketCounts ?? []).length);
  if (withCounts.length === 0) return undefined;
  const layout = JSON.stringify(withCounts[0].bucketOptions);
  const merged: number[] = [];
  for (const d of withCounts) {
    if (JSON.stringify(d.bucketOptions) !== layout) throw new Error('request_latencies distributions with different bucket layouts');
    (d.bucketCounts ?? []).forEach((c, i) => (merged[i] = (merged[i] ?? 0) + Number(c)));
  }
  const total = merged.reduce((a, b) => a + (b || 0), 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < merged.length; i++) {
    const c = merged[i] || 0;
    if (c === 0) continue;
    if (seen + c >= rank) {
      const [lo, hi] = bucketBounds(withCounts[0].bucketOptions!, i);
      if (!Number.isFinite(lo)) return hi;
      if (!Number.isFinite(hi)) return lo;
      return lo + ((hi - lo) * (rank - seen)) / c;
    }
    seen += c;
  }
  return bucketBounds(withCounts[0].bucketOptions!, merged.length - 1)[0];
}

/** The filter for one revision's series of one metric. */
export function revisionFilter(metric: string, t: CloudRunTargetSpec, revision: string): string {
  return [
    `metric.type = "${metric}"`,
    `resource.type = "cloud_run_revision"`,
    `resource.labels.service_name = "${t.service}"`,
    `resource.labels.revision_name = "${revision}"`,
    `resource.labels.location = "${t.region}"`,
  ].join(' AND ');
}

const ts = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 });

/** INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED. */
const MONITORING_NON_RETRYABLE = new Set([3, 5, 7, 9, 16]);

export class CloudMonitoringMetrics implements MetricProvider {
  readonly name = 'cloud-monitoring';
  // Created at first use, with its library (about half a second of module loading): a worker that
  // never reads a cloud-run canary never loads it (test/worker-start.unit.test.ts).
  private clientInstance?: Promise<MetricServiceClient>;

  constructor(private readonly opts: CloudMonitoringOptions = {}) {}

  private client(): Promise<MetricServiceClient> {
    this.clientInstance ??= Promise.all([import('@google-cloud/monitoring'), import('../providers/gcp-client')]).then(
      ([{ MetricServiceClient }, { gcpClientOptions }]) => new MetricServiceClient(gcpClientOptions(this.opts.endpoint)),
    );
    return this.clientInstance;
  }

  async close(): Promise<void> {
    await this.clientInstance?.then(
      (c) => c.close(),
      () => undefined,
    );
  }

  supports(t: TargetSpec): boolean {
    return t.provider === 'cloud-run';
  }

  async preflight(target: TargetSpec, baselineVersion: string): Promise<void> {
    const t = target as CloudRunTargetSpec;
    const now = Date.now();
    await this.series(t, REQUEST_COUNT, baselineVersion, now - 3_600_000, now, 'HEADERS');
  }

  async collect(w: MetricWindow): Promise<CanarySamples> {
    const t = w.target as CloudRunTargetSpec;
    const [canary, baseline] = await Promise.all([
      this.revision(t, w.canaryVersion, w.startMs, w.endMs),
      this.revision(t, w.baselineVersion, w.startMs, w.endMs),
    ]);
    return { source: `cloud-monitoring ${t.project}/${t.region}`, canary, baseline };
  }

  private async revision(t: CloudRunTargetSpec, revision: string, startMs: number, endMs: number): Promise<RevisionSamples> {
    const [counts, latencies] = await Promise.all([
      this.series(t, REQUEST_COUNT, revision, startMs, endMs),
      this.series(t, REQUEST_LATENCIES, revision, startMs, endMs),
    ]);
    let requests = 0;
    let errors = 0;
    for (const s of counts) {
      const n = (s.points ?? []).reduce((a, p) => a + Number(p.value?.int64Value ?? 0) + Number(p.value?.doubleValue ?? 0), 0);
      requests += n;
      if (s.metric?.labels?.response_code_class === '5xx') errors += n;
    }
    const p99 = distributionQuantile(
      latencies.flatMap((s) => (s.points ?? []).map((p) => p.value?.distributionValue).filter((d): d is NonNullable<typeof d> => !!d)),
      0.99,
    );
    return { requests, errors, ...(p99 !== undefined ? { latencyP99Ms: p99, latencyStat: 'p99' as const } : {}) };
  }

  private async series(
    t: CloudRunTargetSpec,
    metric: string,
    revision: string,
    startMs: number,
    endMs: number,
    view: 'FULL' | 'HEADERS' = 'FULL',
  ) {
    try {
      const client = await this.client();
      const [series] = await client.listTimeSeries(
        {
          name: `projects/${t.project}`,
          filter: revisionFilter(metric, t, revision),
          interval: { startTime: ts(startMs), endTime: ts(endMs) },
          view,
        },
        // A few quick client retries; longer outages are retried by Temporal with heartbeats, not
        // by a client call that blocks for the library's default of minutes.
        { maxRetries: 2, timeout: 10_000 },
      );
      return series;
    } catch (err) {
      // Bad filters, permissions and unknown projects are final; UNAVAILABLE & co. are retried.
      const code = (err as { code?: number }).code;
      if (code !== undefined && MONITORING_NON_RETRYABLE.has(code))
        throw new NonRetryableProviderError(`cloud-monitoring ${t.project}: ${(err as Error).message}`, `GRPC_${code}`);
      throw err;
    }
  }
}
