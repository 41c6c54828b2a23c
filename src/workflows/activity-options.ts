/** Activity proxies with the timeouts, retry policies and cancellation each kind of step needs. */
import type { Duration } from '@temporalio/common';
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

/**
 * Calls that change nothing (reads, tags, lock messages, preflight): no heartbeats, so no heartbeat
 * timeout. Runs before patch `rollgate-fast-failover` only: an attempt held by a dead worker (or
 * scheduled as the server went down) waits out the whole 2 minutes (`failoverActivities` below).
 */
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
  return compensationProxy(spec, '10 seconds');
}

function compensationProxy(spec: RolloutSpec, heartbeatTimeout: Duration) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: mustDurationMs(spec.rollback.revert_retry_for ?? '3 minutes'),
    heartbeatTimeout,
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
const HOUSEKEEPING_RETRY: RetryPolicy = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '10 seconds',
  maximumAttempts: 3,
};
export const housekeeping = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: HOUSEKEEPING_RETRY,
});

/** Alerts: retried with backoff for a few minutes, then given up (recorded in the rollout's history). */
export const alerts = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});

/**
 * How long the server waits for a heartbeat before it gives an attempt up and retries it elsewhere,
 * for runs since patch `rollgate-fast-failover`. Every activity of `FAST_FAILOVER` heartbeats every
 * 500 ms while it runs (withHeartbeat, src/activities/heartbeat.ts) and the worker sends one at
 * most a second after it is made (`maxHeartbeatThrottleInterval`, src/worker.ts), so a healthy
 * attempt's heartbeats are about 1 s apart, and a dead worker's attempt is retried on a live worker
 * about 5.5 s after its last one (5 s + the first retry interval). Measured (docs/DEVELOPMENT.md,
 * "Fleet failover"): 2 s gave 576 heartbeat timeouts of live workers with 200 rollouts on a
 * loaded survivor (each a retry, 8 attempts at most: two healthy rollouts failed a stage on it);
 * 5 s gave none there and the same stall at 40 (p50 2.0 s; the p99 is the 10 s workflow task
 * timeout of tasks held by the dead worker, WORKFLOW_TASK_TIMEOUT, which a shorter heartbeat
 * timeout would not move).
 */
export const FAILOVER_HEARTBEAT_TIMEOUT: Duration = '5 seconds';

/** The activity proxies one rollout run uses for its provider and Temporal calls (see `activitiesFor`). */
export interface RolloutActivities {
  reads: typeof reads;
  watched: typeof watched;
  changes: typeof changes;
  compensationsFor: typeof compensationsFor;
  housekeeping: typeof housekeeping;
}

/** What runs recorded before patch `rollgate-fast-failover` scheduled: replays keep exactly these options. */
export const BEFORE_FAST_FAILOVER: RolloutActivities = { reads, watched, changes, compensationsFor, housekeeping };

/**
 * Runs since patch `rollgate-fast-failover` (decided at the start of the run): a dead worker's
 * attempt is noticed after FAILOVER_HEARTBEAT_TIMEOUT (5 s), not after a 2-minute start-to-close
 * (reads) or a 10 s heartbeat timeout (everything else). Start-to-close timeouts and retry policies are
 * the same as before; revert retries are unchanged (for `revert_retry_for`, then a human is told).
 *
 * `reads` heartbeat rather than get a short start-to-close: a short start-to-close would have to
 * be a few seconds to give the same failover, and a healthy read can take longer on a loaded emulator or
 * cloud (moto under `--load 500` answered some calls after a minute), so each slow call would burn
 * one of the 8 attempts and could fail the stage. A heartbeat timeout measures whether the worker
 * is alive, not how long the call takes; a read that finishes within a second sends no heartbeat
 * at all (withHeartbeat's first is after 500 ms). Per activity: readTraffic, checkParity and
 * findMissingVersions (provider reads, checkParity several at once), findVeto and
 * confirmDependencyLock (Temporal queries, which wait for the queried workflow's worker) and
 * consecutiveStageFailures (a visibility list plus one result read per earlier run) heartbeat and
 * end at once when cancelled; recordRelease (a tag write), announceRolloutClosed and the lock's
 * request/release (signals) heartbeat and let a call already sent finish (they run in
 * non-cancellable scopes anyway).
 *
 * Traffic changes and reverts get the same heartbeat timeout: they already heartbeat every second
 * (withHeartbeat), are idempotent (providers read first and skip what is already done) and check
 * for cancellation before every write; an attempt the server gave up on while its worker still runs
 * (a stall past 5 s) learns it within a second (NOT_FOUND on its next heartbeat) and stops before
 * its next write, and any forward write it still sends is refused after a revert by the fence
 * (src/providers/fence.ts). A stall past 5 s on a healthy worker costs one retry, counted in the
 * fleet harness (`heartbeat timeouts ... of a live worker`).
 */
export const FAST_FAILOVER: RolloutActivities = {
  reads: proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: FAILOVER_HEARTBEAT_TIMEOUT,
    retry: PROVIDER_RETRY,
  }),
  watched: proxyActivities<Activities>({
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout: FAILOVER_HEARTBEAT_TIMEOUT,
    retry: PROVIDER_RETRY,
  }),
  changes: proxyActivities<Activities>({
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout: FAILOVER_HEARTBEAT_TIMEOUT,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: PROVIDER_RETRY,
  }),
  compensationsFor: (spec: RolloutSpec) => compensationProxy(spec, FAILOVER_HEARTBEAT_TIMEOUT),
  housekeeping: proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: FAILOVER_HEARTBEAT_TIMEOUT,
    retry: HOUSEKEEPING_RETRY,
  }),
};

/** The proxies of a run: `fast` = patch `rollgate-fast-failover`, decided once at the start of the run. */
export function activitiesFor(fast: boolean): RolloutActivities {
  return fast ? FAST_FAILOVER : BEFORE_FAST_FAILOVER;
}

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
