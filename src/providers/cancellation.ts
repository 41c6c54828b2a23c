/**
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
