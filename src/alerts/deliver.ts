/**
 * The one place where the alert receiver sends a verdict to a rollout. It takes the same path as
 * the scheduled analysis (src/workflows/scheduled-analysis.ts): the `externalVerdict` message to
 * the exact run that was read, naming that run's release, so a verdict never lands on a later
 * rollout, with that run's message nonce (read by query, as the scheduled analysis does: a run
 * since patch `rollout-message-nonces` refuses a verdict without it; docs/security-internal-messages.md).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { readMessageNonce } from '../activities/scheduled';
import { externalVerdictSignal, rolloutWorkflowId, type Verdict } from '../contract';
import { latestOfChain } from '../temporal/run-chain';

export interface RolloutRef {
  service: string;
  /** The run the verdict is about (the one whose status was judged). */
  runId: string;
}

/** A run hands over at the start of every long bake, right after a traffic step: follow a few. */
const MAX_HANDOVERS_FOLLOWED = 3;

/**
 * Send the verdict to the run that was judged, or, when that run continued as new meanwhile (a
 * rollout hands over before parking in a long bake, often just as a breach shows), to the run it
 * handed over to: the same rollout, not a later one. Throws WorkflowNotFoundError when the
 * rollout itself closed.
 */
export async function deliverAlertVerdict(client: Client, rollout: RolloutRef, verdict: Verdict): Promise<void> {
  const workflowId = rolloutWorkflowId(rollout.service);
  for (let runId = rollout.runId, hops = 0; ; hops++) {
    const run = client.workflow.getHandle(workflowId, runId);
    try {
      const nonce = await readMessageNonce(run);
      await run.signal(externalVerdictSignal, { ...verdict, ...(nonce ? { nonce } : {}) });
      return;
    } catch (err) {
      const next =
        err instanceof WorkflowNotFoundError && hops < MAX_HANDOVERS_FOLLOWED
          ? await runHandedOverTo(client, workflowId, runId)
          : undefined;
      if (!next) throw err;
      runId = next;
    }
  }
}

/** The open run that `runId` continued as (same first run: the same rollout), if it did. */
export async function runHandedOverTo(client: Client, workflowId: string, runId: string): Promise<string | undefined> {
  const was = await client.workflow.getHandle(workflowId, runId).describe();
  if (was.status.name !== 'CONTINUED_AS_NEW') return undefined;
  const { latest, sameChain } = await latestOfChain(client, was);
  return sameChain && latest.status.name === 'RUNNING' && latest.runId !== runId ? latest.runId : undefined;
}
