/** Alerts to the operator: delivered, or their failure recorded in the rollout's history; never thrown. */
import { CancellationScope } from '@temporalio/workflow';
import type { AlertPayload } from '../activities/notify';
import type { RolloutRun } from './rollout-state';
import { alerts } from './activity-options';
import { failureMessage } from './saga';

export async function alertOperator(
  run: RolloutRun,
  event: string,
  text: string,
  extra: Partial<AlertPayload['rollgate']> = {},
): Promise<void> {
  await CancellationScope.nonCancellable(async () => {
    // The worker resolves webhook_env in its own environment: the URL never enters this workflow.
    // `webhook` is a URL only specs of runs started before webhook_env carry (validation refuses it now);
    // either way the same activity is scheduled, so replays see the same commands.
    const notify = run.spec.notify;
    const webhook = notify?.webhook_env ? { webhookEnv: notify.webhook_env } : notify?.webhook ? { webhook: notify.webhook } : undefined;
    if (!webhook) {
      run.record('alert', `${event} (no notify webhook configured): ${text}`);
      return;
    }
    const escalation = await escalationFor(run);
    const payload: AlertPayload = {
      text: escalation ? `${escalation}. ${text}` : text,
      rollgate: {
        rolloutId: run.id,
        service: run.spec.service,
        release: run.spec.release,
        event,
        state: run.state,
        next: `rollgate resume ${run.id} | rollgate abort ${run.id}`,
        ...(escalation ? { escalation } : {}),
        ...extra,
      },
    };
    try {
      const res = await alerts.sendAlert({ ...webhook, payload });
      run.record('alert', `${event} alert delivered (HTTP ${res.status})`);
    } catch (err) {
      run.record('alert', `${event} alert NOT delivered: ${failureMessage(err)}`);
    }
  });
}

/** "CI pipeline repeatedly fails in the same stage": say so when it is the Nth time in a row. Best effort. */
async function escalationFor(run: RolloutRun): Promise<string | undefined> {
  const escalateAfter = run.spec.notify?.escalate_after ?? 3;
  if (!run.failedStage || escalateAfter <= 0) return undefined;
  try {
    const streak = await run.acts.reads.consecutiveStageFailures({ service: run.spec.service, stage: run.failedStage, workflowId: run.id });
    if (streak < escalateAfter) return undefined;
    const escalation = `ESCALATION: stage ${run.failedStage} failed in ${streak} consecutive rollouts of ${run.spec.service}`;
    run.record('alert', escalation);
    return escalation;
  } catch (err) {
    run.record(
      'alert',
      `could not count earlier failures of stage ${run.failedStage} (alert sent without escalation): ${failureMessage(err)}`,
    );
    return undefined;
  }
}
