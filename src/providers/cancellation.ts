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
 * Before every attempt an SDK makes, its own retries included: an activity attempt that was
 * cancelled, or whose deadline (start-to-close from its scheduling, schedule-to-close from the
 * first) has passed, sends nothing more. Past its deadline the server has timed the attempt out:
 * the workflow may already have escalated, or scheduled another attempt, and a request this one
 * still sent would land after them (a revert retried by the SDK after `rollback.revert_retry_for`
 * ran out, say). No-op outside an activity.
 */
export function stopIfCancelledOrLate(before: string): void {
  const ctx = activityContext();
  if (!ctx) return;
  stopIfCancelled(before);
  const deadline = attemptDeadline(ctx.info);
  if (deadline !== undefined && Date.now() >= deadline)
    throw new CancelledFailure(`the attempt's deadline passed before ${before}: not sent`);
}

/** When the server times the running attempt out, at the latest (undefined: no timeout). */
export function attemptDeadline(info: {
  scheduledTimestampMs: number;
  scheduleToCloseTimeoutMs: number;
  currentAttemptScheduledTimestampMs: number;
  startToCloseTimeoutMs: number;
}): number | undefined {
  const ends: number[] = [];
  // Start-to-close counts from the attempt's start, which is after its scheduling: this end is early, never late.
  if (info.startToCloseTimeoutMs > 0) ends.push(info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs);
  if (info.scheduleToCloseTimeoutMs > 0) ends.push(info.scheduledTimestampMs + info.scheduleToCloseTimeoutMs);
  return ends.length ? Math.min(...ends) : undefined;
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
