/**
 * Workflow side of the metrics feed: `emitRolloutEvent(event)` from workflow code. A sink call is
 * no command and no history event (no determinism impact, no patch needed to add or move one) and is
 * not repeated while a worker replays a history. Imports only @temporalio/workflow.
 */
import { proxySinks, type Sinks } from '@temporalio/workflow';
import type { RolloutEvent } from './events';

export interface RolloutMetricsSinks extends Sinks {
  rolloutMetrics: {
    record(event: RolloutEvent): void;
  };
}

const { rolloutMetrics } = proxySinks<RolloutMetricsSinks>();

export function emitRolloutEvent(event: RolloutEvent): void {
  rolloutMetrics.record(event);
}
