/**
 * CloudWatch metrics for Lambda canaries. A weighted alias publishes per-version metrics with the
 * dimensions FunctionName, Resource = "function:alias" and ExecutedVersion, which is how the
 * canary and baseline versions are told apart.
 */
import { CloudWatchClient, GetMetricDataCommand, type MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import type { LambdaTargetSpec, TargetSpec } from '../spec/schema';
import type { CanarySamples, MetricProvider, MetricWindow, RevisionSamples } from './types';
import { NonRetryableProviderError } from '../providers/types';

const CW_NON_RETRYABLE = new Set([
  'InvalidParameterValueException',
  'InvalidParameterCombinationException',
  'MissingRequiredParameterException',
  'AccessDenied',
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
]);

export interface CloudWatchOptions {
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export function lambdaVersionDimensions(t: LambdaTargetSpec, version: string) {
  return [
    { Name: 'FunctionName', Value: t.function },
    { Name: 'Resource', Value: `${t.function}:${t.alias}` },
    { Name: 'ExecutedVersion', Value: version },
  ];
}

export class CloudWatchMetrics implements MetricProvider {
  readonly name = 'cloudwatch';
  private readonly clients = new Map<string, CloudWatchClient>();
  constructor(private readonly opts: CloudWatchOptions = {}) {}

  supports(t: TargetSpec): boolean {
    return t.provider === 'aws-lambda';
  }

  private client(region: string) {
    let c = this.clients.get(region);
    if (!c) {
      c = new CloudWatchClient({ region, endpoint: this.opts.endpoint, credentials: this.opts.credentials, maxAttempts: 4 });
      this.clients.set(region, c);
    }
    return c;
  }

  /** Bad queries and permissions are final; throttling, 5xx and network errors are retried (SDK, then Temporal). */
  private async call<R>(fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error;
      if (CW_NON_RETRYABLE.has(e.name)) throw new NonRetryableProviderError(`cloudwatch: ${e.name}: ${e.message}`, e.name);
      throw err;
    }
  }

  async preflight(target: TargetSpec, baselineVersion: string): Promise<void> {
    const t = target as LambdaTargetSpec;
    const now = Date.now();
    await this.sums(t, baselineVersion, now - 3_600_000, now, 'preflight');
  }

  async collect(w: MetricWindow): Promise<CanarySamples> {
    const t = w.target as LambdaTargetSpec;
    const [canary, baseline] = await Promise.all([
      this.revision(t, w.canaryVersion, w.startMs, w.endMs),
      this.revision(t, w.baselineVersion, w.startMs, w.endMs),
    ]);
    return { source: `cloudwatch ${t.region}`, canary, baseline };
  }

  private async revision(t: LambdaTargetSpec, version: string, startMs: number, endMs: number): Promise<RevisionSamples> {
    const sums = await this.sums(t, version, startMs, endMs, 'v');
    const latency = await this.latency(t, version, startMs, endMs);
    // Lambda counts a throttled request in Throttles, not in Invocations (nor Errors): the caller got a
    // 429 all the same. So it is a request that failed, and a throttled canary breaches the error rate.
    return {
      requests: sums.invocations + sums.throttles,
      errors: sums.errors + sums.throttles,
      ...(sums.throttles > 0 ? { throttled: sums.throttles } : {}),
      ...latency,
    };
  }

  private period(startMs: number, endMs: number): number {
    const span = Math.max(60, Math.ceil((endMs - startMs) / 1000));
    return Math.ceil(span / 60) * 60;
  }

  private async sums(t: LambdaTargetSpec, version: string, startMs: number, endMs: number, id: string) {
    const dims = lambdaVersionDimensions(t, version);
    const q = (metric: string, qid: string): MetricDataQuery => ({
      Id: `${id}${qid}`,
      MetricStat: {
        Metric: { Namespace: 'AWS/Lambda', MetricName: metric, Dimensions: dims },
        Period: this.period(startMs, endMs),
        Stat: 'Sum',
      },
    });
    const res = await this.call(() =>
      this.client(t.region).send(
        new GetMetricDataCommand({
          StartTime: new Date(startMs),
          EndTime: new Date(endMs),
          MetricDataQueries: [q('Invocations', 'inv'), q('Errors', 'err'), q('Throttles', 'thr')],
        }),
      ),
    );
    const total = (qid: string) =>
      (res.MetricDataResults ?? [])
        .filter((r) => r.Id === `${id}${qid}`)
        .flatMap((r) => r.Values ?? [])
        .reduce((a, b) => a + b, 0);
    return { invocations: total('inv'), errors: total('err'), throttles: total('thr') };
  }

  /** p99 where the source serves percentiles; Maximum (a stricter stand-in, labelled so) where it does not. */
  private async latency(
    t: LambdaTargetSpec,
    version: string,
    startMs: number,
    endMs: number,
  ): Promise<Pick<RevisionSamples, 'latencyP99Ms' | 'latencyStat'>> {
    const dims = lambdaVersionDimensions(t, version);
    const query = async (stat: string) => {
      const res = await this.client(t.region).send(
        new GetMetricDataCommand({
          StartTime: new Date(startMs),
          EndTime: new Date(endMs),
          MetricDataQueries: [
            {
              Id: 'lat',
              MetricStat: {
                Metric: { Namespace: 'AWS/Lambda', MetricName: 'Duration', Dimensions: dims },
                Period: this.period(startMs, endMs),
                Stat: stat,
              },
            },
          ],
        }),
      );
      const values = (res.MetricDataResults ?? []).flatMap((r) => r.Values ?? []);
      return values.length ? Math.max(...values) : undefined;
    };
    try {
      const p99 = await this.call(() => query('p99'));
      if (p99 !== undefined) return { latencyP99Ms: p99, latencyStat: 'p99' };
    } catch (err) {
      // Only a source without percentiles (moto answers them with HTTP 500) falls back to Maximum;
      // throttling, a refused permission or a bad query is the same error for Maximum: raise it
      // (final or retried as `call` decides), never judge on a stand-in because of it.
      if (!percentilesUnsupported(err)) throw err;
    }
    const max = await this.call(() => query('Maximum'));
    return max === undefined ? {} : { latencyP99Ms: max, latencyStat: 'max' };
  }
}

/** The answer of a source that serves no percentile statistics: moto's HTTP 500 (InternalFailure). */
function percentilesUnsupported(err: unknown): boolean {
  if (err instanceof NonRetryableProviderError) return false;
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 500;
}
