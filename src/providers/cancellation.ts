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
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return;
  }
  if (ctx.cancellationSignal.aborted) throw new CancelledFailure(`cancelled before ${before}`);
}

/** The running activity's cancellation signal, for waits that should end with it (undefined outside an activity). */
export function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/**
 * A deadline for a call's waits: `defaultMs` from now, but never past the running attempt's own
 * start-to-close timeout (less a margin), so an attempt gives up before the server times it out and
 * schedules a retry: two attempts of one step never run, and write, at the same time.
 */
export function callDeadline(defaultMs: number, marginMs = 10_000): number {
  const own = Date.now() + defaultMs;
  try {
    const info = Context.current().info;
    if (!info.startToCloseTimeoutMs) return own;
    return Math.min(own, info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs - marginMs);
  } catch {
    return own;
  }
}

/** Heartbeat with a progress note when running inside an activity (no-op elsewhere). */
export function heartbeat(detail: string): void {
  try {
    Context.current().heartbeat(detail);
  } catch {
    // not in an activity (CLI, tests)
  }
}
