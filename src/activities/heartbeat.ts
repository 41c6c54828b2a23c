import { Context, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/activity';
import { NonRetryableProviderError } from '../providers/types';

/** Heartbeat every second while a long call runs, so a dead worker is noticed in seconds. No-op outside an activity. */
export async function withHeartbeat<R>(fn: () => Promise<R>): Promise<R> {
  let inActivity = true;
  try {
    Context.current();
  } catch {
    inActivity = false;
  }
  const timer = inActivity ? setInterval(() => heartbeat(), 1000) : undefined;
  try {
    return await fn();
  } finally {
    if (timer) clearInterval(timer);
  }
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
