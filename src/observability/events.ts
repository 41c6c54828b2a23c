/**
 * Rollout events that feed rollgate's Prometheus metrics. Workflow code emits them through the
 * `rolloutMetrics` sink (./workflow-sink.ts: no history events, not repeated on replay); the worker
 * records them in its registry (./metrics.ts). Types only: safe to import from workflow code.
 */
export type RolloutEvent =
  /** The workflow began (once per rollout, not per resume). */
  | { kind: 'started'; service: string; release: string }
  /** The rollout closed with this state (succeeded, rolled-back, rollback-failed, aborted, failed). */
  | { kind: 'finished'; service: string; release: string; state: string }
  /** A stage ended; `durationMs` from workflow time, `outcome` ok or failed (breach, stop, cancel). */
  | { kind: 'stage'; service: string; stage: string; durationMs: number; outcome: 'ok' | 'failed' }
  /** A failing verdict that triggered (or would trigger) a rollback, by metric (error_rate, latency_p99, external...). */
  | { kind: 'breach'; service: string; metric: string; target?: string }
  /** Observed error rate (0..1) of one revision on one target at an analysis. */
  | { kind: 'error-rate'; service: string; target: string; revision: string; role: 'canary' | 'baseline'; errorRate: number }
  /** The service's pipeline paused (after a rollback, or by an operator) or went on. */
  | { kind: 'paused'; service: string; paused: boolean }
  /** A compensation step failed (the target could not be reverted). */
  | { kind: 'compensation-failed'; service: string; step: string };

export type RolloutEventKind = RolloutEvent['kind'];
