/**
 * Runs of one rollout across continue-as-new: the latest run of a workflow id is of the same
 * rollout only when it has the same first run (a later rollout of the same service has the same
 * workflow id and is another chain).
 */
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';

/**
 * The latest run of `was`'s workflow id, and whether it is of `was`'s chain (undefined when the
 * server does not say which chain a run is of).
 */
export async function latestOfChain(
  client: Client,
  was: WorkflowExecutionDescription,
): Promise<{ latest: WorkflowExecutionDescription; sameChain?: boolean }> {
  const latest = await client.workflow.getHandle(was.workflowId).describe();
  const chain = was.raw.workflowExecutionInfo?.firstRunId;
  const latestChain = latest.raw.workflowExecutionInfo?.firstRunId;
  return { latest, ...(chain && latestChain ? { sameChain: chain === latestChain } : {}) };
}
