/** Activity proxies with the timeouts and retry policies each kind of step needs. */
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';

/** Provider calls: short, heartbeating (a dead worker is noticed in seconds), retried with backoff. */
export const acts = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '15 seconds', maximumAttempts: 8 },
});

/** Reverts: retried quickly a few times, then escalated to the operator (state rollback-failed). */
export const compensations = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '250 milliseconds', backoffCoefficient: 2, maximumInterval: '5 seconds', maximumAttempts: 6 },
});

/** Build, test and migration commands run once: a retry could rebuild or re-migrate. */
export const commands = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

/** Alerts: retried with backoff for a few minutes, then given up (the rollout's state still says it). */
export const alerts = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});

/** Pure checks whose answers must be recorded (freeze windows). */
export const local = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });
