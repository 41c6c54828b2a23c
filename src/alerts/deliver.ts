/**
 * The one place where the alert receiver sends a verdict to a rollout. It takes the same path as
 * the scheduled analysis (src/workflows/scheduled-analysis.ts): the `externalVerdict` message to
 * the exact run that was read, naming that run's release, so a verdict never lands on a later
 * rollout. If rollouts come to authenticate their outside verdicts, only this function changes.
 */
import type { Client } from '@temporalio/client';
import { externalVerdictSignal, rolloutWorkflowId, type Verdict } from '../workflows/messages';

export interface RolloutRef {
  service: string;
  /** The run the verdict is about (the one whose status was judged). */
  runId: string;
}

export async function deliverAlertVerdict(client: Client, rollout: RolloutRef, verdict: Verdict): Promise<void> {
  await client.workflow.getHandle(rolloutWorkflowId(rollout.service), rollout.runId).signal(externalVerdictSignal, verdict);
}
