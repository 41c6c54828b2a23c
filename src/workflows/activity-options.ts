/** Activity proxies with the timeouts, retry policies and cancellation each kind of step needs. */
import { ActivityCancellationType, proxyActivities, proxyLocalActivities, type RetryPolicy } from '@temporalio/workflow';
import type { Activities, RunnerActivities } from '../activities';
import type { RolloutSpec } from '../spec/schema';
import { mustDurationMs } from '../spec/duration';

const PROVIDER_RETRY: RetryPolicy = {
  initialInterval: '500 milliseconds',
  backoffCoefficient: 2,
  maximumInterval: '15 seconds',
  maximumAttempts: 8,
};

/** Calls that change nothing (reads, tags, lock messages, preflight): no heartbeats, so no heartbeat timeout. */
export const reads = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry: PROVIDER_RETRY });

/** Long read-only calls that heartbeat every second (verify, analysis): a dead worker is noticed in seconds. */
export const watched = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: PROVIDER_RETRY,
});

/**
 * Deploys and forward traffic changes. WAIT_CANCELLATION_COMPLETED: a cancelled step settles only
 * once the activity has stopped (it checks for cancellation before every write), so nothing it
 * does can land after the saga's reverts. The providers' own deadlines are shorter than 5 minutes.
 */
export const changes = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: PROVIDER_RETRY,
});

/**
 * Reverts: retried for `rollback.revert_retry_for` (3 minutes by default: a minute of throttling
 * must not turn an automatic rollback into a human's job), then escalated (state rollback-failed,
 * alert). Non-retryable errors (permission, missing resource) escalate at once.
 */
export function compensationsFor(spec: RolloutSpec) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: mustDurationMs(spec.rollback.revert_retry_for ?? '3 minutes'),
    heartbeatTimeout: '10 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '250 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
  });
}

/** Build, test and migration commands run once: a retry could rebuild or re-migrate. */
const COMMAND_OPTIONS = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
} as const;

/** The commands on the workflow's own task queue: how runs started before the runner split called them. */
export const commands = proxyActivities<Activities>(COMMAND_OPTIONS);

/**
 * The commands on the runner's task queue (`rollgate runner`; the worker registers none). Same
 * options as `commands`, plus a schedule-to-start timeout: with no runner polling the queue the
 * stage fails after 10 minutes (nothing is deployed before the build) instead of waiting unseen.
 */
export function commandsOn(taskQueue: string) {
  return proxyActivities<RunnerActivities>({ ...COMMAND_OPTIONS, taskQueue, scheduleToStartTimeout: '10 minutes' });
}

/**
 * Housekeeping after the traffic is safe (Lambda `$LATEST` back to the stable version): a few tries,
 * then the failure is recorded; never a reason to call the rollback failed.
 */
export const housekeeping = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});

/** Alerts: retried with backoff for a few minutes, then given up (recorded in the rollout's history). */
export const alerts = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});

/** Pure checks whose answers must be recorded (freeze windows), in the runs recorded before patch `rollout-no-local-activities`. */
export const local = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });

/**
 * The same checks as regular activities (the runs since patch `rollout-no-local-activities`):
 * their results arrive as history events, so the code after them runs at the same point of the
 * history in the first execution and on replay. A local activity's does not always (SDK 1.24: see
 * docs/DEVELOPMENT.md, "Local activities and replay").
 */
export const checks = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  // Pure and quick: retried like the local activities they replace (no attempt limit).
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '5 seconds' },
});
