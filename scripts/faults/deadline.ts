/** Client calls of the fault-schedule checkers, each bounded by a gRPC deadline. */
import type { WorkflowHandle } from '@temporalio/client';
import { statusQuery, type RolloutStatus } from '../../src/contract';

/**
 * A client call of the checker, bounded by a gRPC deadline. Never race a call against a timer: the
 * call left behind keeps running (a query no worker answers waits on the server; across a dev-server
 * restart it retries for ~20 s), and when it fails after its connection was closed, the client's
 * retry timer throws "Channel has been shut down" where nothing can catch it. With a deadline the
 * call itself gives up, and the checker awaits it.
 */
export function withDeadline<T>(handle: WorkflowHandle, ms: number, fn: () => Promise<T>): Promise<T> {
  return handle.client.connection.withDeadline(Date.now() + ms, fn);
}

/** The rollout's status, or undefined when it does not answer within `ms` (the call has ended either way). */
export async function queryStatus(handle: WorkflowHandle, ms = 3_000): Promise<RolloutStatus | undefined> {
  try {
    return await withDeadline(handle, ms, () => handle.query(statusQuery));
  } catch {
    return undefined;
  }
}
