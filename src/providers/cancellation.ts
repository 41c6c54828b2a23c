/**
 * The providers' one door to the activity context: cancellation at safe points, the attempt's
 * deadline and progress heartbeats. Providers do not import the activity SDK themselves, so they
 * run unchanged outside an activity (CLI, tests, bench), where all of this does nothing.
 *
 * Cancellation at safe points. A cancelled traffic step must not start another write (the saga is
 * about to revert), but a write already sent is let finish: aborting it client-side would not stop
 * the cloud from applying it, only hide when. Called before every write and in wait loops.
 * Outside an activity (CLI, tests) it does nothing.
 */
import { CancelledFailure, Context } from '@temporalio/activity';

export function stopIfCancelled(before: string): void {
  if (activityContext()?.cancellationSignal.aborted) throw new CancelledFailure(`cancelled before ${before}`);
}

/** The running activity's context; undefined outside an activity. */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Before every attempt an SDK makes at a write, its own retries included: an activity that was
 * cancelled, or whose schedule-to-close deadline (`rollback.revert_retry_for` for a revert) has
 * passed, sends nothing more. Past that deadline the server has timed the activity out and the
 * workflow may already have escalated: a request still sent would land after that. Cancelled:
 * CancelledFailure. Late: `LateAttempt`, which carries what the escalation must still name (the
 * answer to this call's previous attempt, or the earlier attempts' last error). Start-to-close is
 * left to the providers' own deadlines (callDeadline): the scheduling time is all the activity
 * knows of its attempt's start, and an end counted from it would come early on a busy worker.
 * No-op outside an activity.
 */
export function stopIfCancelledOrLate(before: string, lastAnswer?: unknown): void {
  const ctx = activityContext();
  if (!ctx) return;
  stopIfCancelled(before);
  const { scheduledTimestampMs, scheduleToCloseTimeoutMs } = ctx.info;
  if (scheduleToCloseTimeoutMs > 0 && Date.now() >= scheduledTimestampMs + scheduleToCloseTimeoutMs) {
    const earlier = (ctx.info.heartbeatDetails as { lastError?: unknown } | undefined)?.lastError;
    throw new LateAttempt(before, lastAnswer, typeof earlier === 'string' ? earlier : undefined);
  }
}

/**
 * A write not sent because the activity's deadline had passed. Not retryable to the SDK (its retry
 * loop ends at once); the provider turns it back into the error that kept failing.
 */
export class LateAttempt extends Error {
  constructor(
    before: string,
    /** The answer to the same call's previous SDK attempt (the SDK's own error object). */
    readonly lastAnswer?: unknown,
    /** The last error an earlier activity attempt heartbeated (already redacted). */
    readonly earlierError?: string,
  ) {
    super(`the activity's deadline passed before ${before}: not sent`);
    this.name = 'LateAttempt';
  }
}

/** The running activity's cancellation signal, for waits that should end with it (undefined outside an activity). */
export function cancellationSignal(): AbortSignal | undefined {
  return activityContext()?.cancellationSignal;
}

/**
 * A deadline for a call's waits: `defaultMs` from now, but never past the running attempt's own
 * start-to-close timeout (less a margin), so an attempt gives up before the server times it out and
 * schedules a retry: two attempts of one step never run, and write, at the same time.
 */
export function callDeadline(defaultMs: number, marginMs = 10_000): number {
  const own = Date.now() + defaultMs;
  const info = activityContext()?.info;
  if (!info?.startToCloseTimeoutMs) return own;
  return Math.min(own, info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs - marginMs);
}

/** Heartbeat with a progress note when running inside an activity (no-op elsewhere). */
export function heartbeat(detail: string): void {
  try {
    Context.current().heartbeat(detail);
  } catch {
    // not in an activity (CLI, tests)
  }
}
