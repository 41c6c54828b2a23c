/**
 * Metric providers answer one question: samples for the canary and the baseline (stable) revision
 * over a window. One interface, one file per provider (CloudWatch, Cloud Monitoring, Prometheus,
 * synthetic traffic, custom checks). Judges turn samples into pass / fail / inconclusive.
 */
import type { TargetSpec } from '../spec/schema';

export interface RevisionSamples {
  /** Requests (invocations) seen in the window. */
  requests: number;
  errors: number;
  /** Of `requests` and `errors`: requests refused by throttling (Lambda Throttles), when the source counts them. */
  throttled?: number;
  /** p99 latency in ms, when the source has it. */
  latencyP99Ms?: number;
  /** Which statistic latencyP99Ms really is ("p99", or "max" when the source has no percentiles). */
  latencyStat?: 'p99' | 'max';
  /** Raw latency samples, for statistical judges. */
  latencies?: number[];
}

export interface MetricWindow {
  target: TargetSpec;
  canaryVersion: string;
  baselineVersion: string;
  startMs: number;
  endMs: number;
}

export interface CanarySamples {
  source: string;
  canary: RevisionSamples;
  baseline: RevisionSamples;
}

export interface MetricProvider {
  readonly name: string;
  supports(target: TargetSpec): boolean;
  /** Reachable, credentials work, queries parse: fail before any traffic moves. */
  preflight(target: TargetSpec, baselineVersion: string): Promise<void>;
  collect(window: MetricWindow): Promise<CanarySamples>;
}
