/**
 * Synthetic traffic, for services with too little real traffic to judge: the analysis itself sends
 * a bounded number of requests to the canary and to the stable endpoint (both at the same time,
 * same pacing) and measures errors and latency. The result is ordinary samples (requests, errors,
 * p99, raw latencies), so the threshold and the statistical judge both apply.
 *
 * Bounded: at most SYNTHETIC_LIMITS.maxRequests per revision, SYNTHETIC_LIMITS.maxConcurrency in
 * flight per revision, and a per-request timeout (a request over it counts as an error with the
 * timeout as its latency). Latencies of failed requests are kept: they are what callers saw.
 *
 * Endpoints come from an injected resolver, so the same provider drives an HTTP URL (a Cloud Run
 * revision tag URL, see httpEndpoints) or Lambda Invoke with a Qualifier (lambdaEndpoints).
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec, TargetSpec } from '../spec/schema';
import { NonRetryableProviderError } from './errors';
import { outboundRequest } from '../security/outbound';
import { quantile } from './mann-whitney';
import type { CanarySamples, MetricProvider, MetricWindow, RevisionSamples } from './types';

export interface InvokeResult {
  ok: boolean;
  latencyMs: number;
  /** Why it failed ("HTTP 500", "FunctionError Unhandled", "timed out after 2000 ms"). */
  detail?: string;
}

export interface SyntheticEndpoint {
  invoke(): Promise<InvokeResult>;
}

export type EndpointResolver = (target: TargetSpec, version: string) => Promise<SyntheticEndpoint>;

export const SYNTHETIC_LIMITS = { maxRequests: 500, maxConcurrency: 16, maxTimeoutMs: 30_000 } as const;

export interface SyntheticOptions {
  resolve: EndpointResolver;
  /** Requests per revision (default 50, capped at SYNTHETIC_LIMITS.maxRequests). */
  requests?: number;
  /** In flight per revision (default 4, capped at SYNTHETIC_LIMITS.maxConcurrency). */
  concurrency?: number;
  /** Per request (default 5 s, capped at SYNTHETIC_LIMITS.maxTimeoutMs). */
  timeoutMs?: number;
  /** Target kinds this instance serves (default: all). */
  kinds?: TargetSpec['provider'][];
}

const clamp = (v: number | undefined, dflt: number, max: number) => Math.max(1, Math.min(max, Math.floor(v ?? dflt)));

export interface SyntheticRevisionSamples extends RevisionSamples {
  latencies: number[];
  /** First few distinct failure details, for reasons. */
  failures: string[];
}

export class SyntheticTraffic implements MetricProvider {
  readonly name = 'synthetic';
  readonly requests: number;
  readonly concurrency: number;
  readonly timeoutMs: number;

  constructor(private readonly opts: SyntheticOptions) {
    this.requests = clamp(opts.requests, 50, SYNTHETIC_LIMITS.maxRequests);
    this.concurrency = clamp(opts.concurrency, 4, SYNTHETIC_LIMITS.maxConcurrency);
    this.timeoutMs = clamp(opts.timeoutMs, 5000, SYNTHETIC_LIMITS.maxTimeoutMs);
  }

  supports(t: TargetSpec): boolean {
    return !this.opts.kinds || this.opts.kinds.includes(t.provider);
  }

  /** One request to the stable endpoint must succeed. */
  async preflight(target: TargetSpec, baselineVersion: string): Promise<void> {
    const ep = await this.opts.resolve(target, baselineVersion);
    const r = await this.guarded(ep);
    if (!r.ok)
      throw new NonRetryableProviderError(
        `synthetic traffic: the stable version ${baselineVersion} of ${target.name} failed a test request: ${r.detail ?? 'not ok'}`,
        'SyntheticPreflight',
      );
  }

  /** The window is ignored: synthetic samples are taken now. */
  async collect(w: MetricWindow): Promise<CanarySamples> {
    const [canaryEp, baselineEp] = await Promise.all([
      this.opts.resolve(w.target, w.canaryVersion),
      this.opts.resolve(w.target, w.baselineVersion),
    ]);
    const [canary, baseline] = await Promise.all([this.load(canaryEp), this.load(baselineEp)]);
    const why = canary.failures.length ? `; canary failures: ${canary.failures.join(', ')}` : '';
    return { source: `synthetic ${this.requests} requests/revision${why}`, canary, baseline };
  }

  /** Send `requests` requests with at most `concurrency` in flight. */
  async load(ep: SyntheticEndpoint): Promise<SyntheticRevisionSamples> {
    const latencies: number[] = [];
    const failures = new Set<string>();
    let errors = 0;
    let next = 0;
    const worker = async () => {
      while (next < this.requests) {
        next++;
        const r = await this.guarded(ep);
        latencies.push(r.latencyMs);
        if (!r.ok) {
          errors++;
          if (failures.size < 3) failures.add((r.detail ?? 'not ok').replace(/\s+/g, ' ').slice(0, 120));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, this.requests) }, worker));
    const p99 = quantile(latencies, 0.99);
    return {
      requests: latencies.length,
      errors,
      ...(p99 !== undefined ? { latencyP99Ms: p99, latencyStat: 'p99' as const } : {}),
      latencies,
      failures: [...failures],
    };
  }

  /** invoke() with the timeout enforced here too (an endpoint that ignores it cannot stall the analysis), never throwing. */
  private async guarded(ep: SyntheticEndpoint): Promise<InvokeResult> {
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<InvokeResult>((res) => {
      timer = setTimeout(
        () => res({ ok: false, latencyMs: this.timeoutMs, detail: `timed out after ${this.timeoutMs} ms` }),
        this.timeoutMs + 50,
      );
    });
    try {
      return await Promise.race([
        ep.invoke().catch((err: Error) => ({ ok: false, latencyMs: performance.now() - t0, detail: `${err.name}: ${err.message}` })),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface HttpEndpointOptions {
  /** URL for a version (e.g. the Cloud Run revision's tag URL + a path). */
  url: (target: TargetSpec, version: string) => string | Promise<string>;
  method?: 'GET' | 'POST' | 'HEAD';
  body?: string;
  /** Static headers, or per URL (e.g. an ID token for the tag URL's audience). */
  headers?: Record<string, string> | ((url: string) => Promise<Record<string, string>>);
  timeoutMs?: number;
  /** Which statuses count as success (default 200-399). */
  okStatus?: (status: number) => boolean;
  /** The body must contain this. */
  expectContains?: string;
}

/** Synthetic requests over HTTP with fetch. */
export function httpEndpoints(o: HttpEndpointOptions): EndpointResolver {
  const okStatus = o.okStatus ?? ((s: number) => s >= 200 && s < 400);
  const timeoutMs = clamp(o.timeoutMs, 5000, SYNTHETIC_LIMITS.maxTimeoutMs);
  return async (target, version) => {
    const url = await o.url(target, version);
    return {
      async invoke() {
        const headers = typeof o.headers === 'function' ? await o.headers(url) : (o.headers ?? {});
        const t0 = performance.now();
        try {
          // A revision URL a provider reported: no metadata/link-local address; a 3xx is counted, never followed.
          const res = await outboundRequest(url, { method: o.method ?? 'GET', headers, body: o.body, timeoutMs, redirects: 'return' });
          const text = res.text;
          const latencyMs = performance.now() - t0;
          if (!okStatus(res.status)) return { ok: false, latencyMs, detail: `HTTP ${res.status}` };
          if (o.expectContains !== undefined && !text.includes(o.expectContains))
            return { ok: false, latencyMs, detail: `response lacks "${o.expectContains}"` };
          return { ok: true, latencyMs };
        } catch (err) {
          const e = err as Error & { code?: string; cause?: { code?: string } };
          const latencyMs = performance.now() - t0;
          if (e.name === 'TimeoutError') return { ok: false, latencyMs, detail: `timed out after ${timeoutMs} ms` };
          return { ok: false, latencyMs, detail: e.code ?? e.cause?.code ?? e.message };
        }
      },
    };
  };
}

export interface LambdaEndpointOptions {
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** JSON payload for every invocation (default {}). */
  payload?: unknown;
  timeoutMs?: number;
  /** The response payload must contain this (as the spec's synthetic.expect_contains). */
  expectContains?: string;
}

/**
 * Synthetic Lambda invocations: Invoke with Qualifier = the version (bypassing the alias split), no
 * SDK retries (a throttle is what a caller would see, so it counts as an error). Success means
 * HTTP 2xx without FunctionError (and, with `expectContains`, a response payload containing it).
 */
export function lambdaEndpoints(o: LambdaEndpointOptions = {}): EndpointResolver {
  const clients = new Map<string, LambdaClient>();
  const timeoutMs = clamp(o.timeoutMs, 5000, SYNTHETIC_LIMITS.maxTimeoutMs);
  const payload = Buffer.from(JSON.stringify(o.payload ?? {}));
  return async (target, version) => {
    if (target.provider !== 'aws-lambda')
      throw new NonRetryableProviderError(
        `lambda synthetic traffic cannot reach ${target.provider} target ${target.name}`,
        'SyntheticTarget',
      );
    const t = target as LambdaTargetSpec;
    let client = clients.get(t.region);
    if (!client) {
      client = new LambdaClient({ region: t.region, endpoint: o.endpoint, credentials: o.credentials, maxAttempts: 1 });
      clients.set(t.region, client);
    }
    const c = client;
    return {
      async invoke() {
        const t0 = performance.now();
        try {
          const r = await c.send(new InvokeCommand({ FunctionName: t.function, Qualifier: version, Payload: payload }), {
            abortSignal: AbortSignal.timeout(timeoutMs),
          });
          const latencyMs = performance.now() - t0;
          if (r.FunctionError) return { ok: false, latencyMs, detail: `FunctionError ${r.FunctionError}` };
          if (r.StatusCode !== undefined && (r.StatusCode < 200 || r.StatusCode >= 300))
            return { ok: false, latencyMs, detail: `StatusCode ${r.StatusCode}` };
          if (
            o.expectContains !== undefined &&
            !Buffer.from(r.Payload ?? new Uint8Array())
              .toString('utf8')
              .includes(o.expectContains)
          )
            return { ok: false, latencyMs, detail: `response lacks "${o.expectContains}"` };
          return { ok: true, latencyMs };
        } catch (err) {
          const e = err as Error;
          const latencyMs = performance.now() - t0;
          if (e.name === 'AbortError' || e.name === 'TimeoutError')
            return { ok: false, latencyMs, detail: `timed out after ${timeoutMs} ms` };
          return { ok: false, latencyMs, detail: e.name };
        }
      },
    };
  };
}
