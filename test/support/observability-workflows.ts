/**
 * Test-only workflow for the metrics feed: emits one of each RolloutEvent through the
 * `rolloutMetrics` sink (and one through the recordRolloutEvent activity), logs a rollout line,
 * then waits for a signal so a test can scrape the "paused" gauge and restart the worker mid-run.
 */
import { condition, defineSignal, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import { emitRolloutEvent } from '../../src/observability/workflow-sink';
import type { metricsActivities } from '../../src/observability/metrics';

const { recordRolloutEvent } = proxyActivities<ReturnType<typeof metricsActivities>>({ startToCloseTimeout: '10 seconds' });
export const finishSignal = defineSignal('finish');

export async function observedRolloutWorkflow(input: { service: string; release: string }): Promise<string> {
  const { service, release } = input;
  let finish = false;
  setHandler(finishSignal, () => void (finish = true));
  log.info('stage canary: shifting 10 % to the canary', { rolloutId: workflowInfo().workflowId, service, release, stage: 'canary' });
  emitRolloutEvent({ kind: 'started', service, release });
  emitRolloutEvent({ kind: 'stage', service, stage: 'deploy', durationMs: 2500, outcome: 'ok' });
  emitRolloutEvent({ kind: 'stage', service, stage: 'canary', durationMs: 45_000, outcome: 'failed' });
  emitRolloutEvent({ kind: 'error-rate', service, target: 'eu-west-1', revision: '7', role: 'canary', errorRate: 0.3 });
  emitRolloutEvent({ kind: 'error-rate', service, target: 'eu-west-1', revision: '6', role: 'baseline', errorRate: 0.001 });
  emitRolloutEvent({ kind: 'breach', service, metric: 'error_rate', target: 'eu-west-1' });
  await recordRolloutEvent({ kind: 'compensation-failed', service, step: 'revert eu-west-1' });
  emitRolloutEvent({ kind: 'paused', service, paused: true });
  await condition(() => finish);
  emitRolloutEvent({ kind: 'finished', service, release, state: 'rolled-back' });
  return 'done';
}
