/**
 * The one place where the alert receiver sends a verdict to a rollout. It takes the same path as
 * the scheduled analysis (src/workflows/scheduled-analysis.ts): the `externalVerdict` message to
 * the exact run that was read, naming that run's release, so a verdict never lands on a later
 * rollout, with that run's message nonce (read by query, as the scheduled analysis does: a run
 * since patch `rollout-message-nonces` refuses a verdict without it; docs/security-internal-messages.md).
 */
import type { Client } from '@temporalio/client';
import { readMessageNonce } from '../activities/scheduled';
import { externalVerdictSignal, rolloutWorkflowId, type Verdict } from '../contract';

export interface RolloutRef {
  service: string;
  /** The run the verdict is about (the one whose status was judged). */
  runId: string;
}

export async function deliverAlertVerdict(client: Client, rollout: RolloutRef, verdict: Verdict): Promise<void> {
  const run = client.workflow.getHandle(rolloutWorkflowId(rollout.service), rollout.runId);
  const nonce = await readMessageNonce(run);
  await run.signal(externalVerdictSignal, { ...verdict, ...(nonce ? { nonce } : {}) });
}
