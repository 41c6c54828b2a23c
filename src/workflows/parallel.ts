/**
 * Parallel steps on several targets that settle together. When one target fails, its siblings are
 * cancelled and then *awaited*: with WAIT_CANCELLATION_COMPLETED activities the returned promise
 * rejects only after every sibling activity has stopped. So a compensation that runs after
 * `settleAll` can never be overtaken by a sibling's late write: safe by construction, not timing.
 */
import { CancellationScope, isCancellation } from '@temporalio/workflow';

export async function settleAll<T>(tasks: (() => Promise<T>)[]): Promise<T[]> {
  const scope = new CancellationScope();
  const results = await scope.run(() =>
    Promise.allSettled(
      tasks.map(async (task) => {
        try {
          return await task();
        } catch (err) {
          if (!isCancellation(err)) scope.cancel(); // stop the siblings early; they still settle
          throw err;
        }
      }),
    ),
  );
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
  // The first real failure explains the stop better than the cancellations it caused.
  const failure = failures.find((e) => !isCancellation(e)) ?? failures[0];
  if (failures.length) throw failure;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
