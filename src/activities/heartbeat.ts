import { Context, heartbeat } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { NonRetryableProviderError } from '../providers/types';
import { redact } from '../security/redact';

const HEARTBEAT_EVERY_MS = 500;

/** What an attempt leaves in its heartbeat details for the attempts (and the timeout) after it. */
export interface AttemptDetails {
  /** The last failure of an earlier attempt. */
  lastError?: string;
}

/**
 * Heartbeat every half second while a long call runs, so a dead worker is noticed in seconds. No-op
 * outside an activity. A failing attempt heartbeats its error and later attempts carry it on: when
 * the schedule-to-close deadline (`rollback.revert_retry_for`) fires while an attempt is still in
 * flight, the server's timeout has no cause, only the last heartbeat details, and the escalation
 * must still say what kept failing.
 */
export async function withHeartbeat<R>(fn: () => Promise<R>): Promise<R> {
  return heartbeating(fn, false);
}

/**
 * A read (changes nothing): heartbeats like withHeartbeat, and a cancellation ends the attempt at
 * once (CancelledFailure) instead of waiting for the call, whose answer nobody needs any more. Used
 * by the `reads` activities, which have a heartbeat timeout since patch `rollgate-fast-failover`
 * (src/workflows/activity-options.ts): a call longer than that must heartbeat.
 */
export async function readWithHeartbeat<R>(fn: () => Promise<R>): Promise<R> {
  return heartbeating(fn, true);
}

async function heartbeating<R>(fn: () => Promise<R>, endOnCancel: boolean): Promise<R> {
  let ctx: Context | undefined;
  try {
    ctx = Context.current();
  } catch {
    ctx = undefined;
  }
  if (!ctx) return fn();
  const earlier = ctx.info.heartbeatDetails as AttemptDetails | undefined;
  const details: AttemptDetails = earlier?.lastError ? { lastError: earlier.lastError } : {};
  // Every 500 ms (the worker sends at most one a second, maxHeartbeatThrottleInterval): the first
  // reaches the server ~0.5 s after the attempt began here, well inside the 5 s heartbeat timeout
  // even when the attempt began late on a loaded worker; an attempt shorter than that sends none.
  const timer = setInterval(() => heartbeat(details), HEARTBEAT_EVERY_MS);
  try {
    if (!endOnCancel) return await fn();
    const call = fn();
    call.catch(() => undefined); // abandoned on cancel: its late failure is nobody's
    return await Promise.race([call, ctx.cancelled]);
  } catch (err) {
    // A cancellation is not what kept failing: the last error stays (the escalation names it).
    if (!(err instanceof CancelledFailure)) heartbeat({ lastError: boundedMessage(err) } satisfies AttemptDetails);
    throw err;
  } finally {
    clearInterval(timer);
  }
}

function boundedMessage(err: unknown): string {
  // Heartbeat details go to the server as they are: the same redaction as an activity's failure.
  const message = redact(err instanceof Error ? err.message : String(err));
  return message.length > 300 ? `${message.slice(0, 300)}…` : message;
}

/** Map provider errors to Temporal failures: non-retryable ones fail the stage at once. */
export async function mapProviderErrors<R>(fn: () => Promise<R>): Promise<R> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof NonRetryableProviderError) throw ApplicationFailure.nonRetryable(err.message, err.code);
    throw err;
  }
}
