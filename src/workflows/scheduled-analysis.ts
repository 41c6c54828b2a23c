/**
 * One run of a scheduled canary analysis (started by a Temporal Schedule every N minutes).
 * During a rollout it sends its verdict to the rollout (a fail triggers the rollback); for a watch
 * window after a promotion, a fail reverts the promoted release on every target and pauses the
 * service's pipeline. Each run is short, so its history stays small; the Schedule keeps the cadence.
 */
import { getExternalWorkflowHandle, patched, workflowInfo } from '@temporalio/workflow';
import { combineVerdicts } from '../analysis/threshold-judge';
import { externalVerdictSignal, judgedRun, type ScheduledAnalysisInput, type ScheduledAnalysisResult } from '../contract';
// Unchanged since v1: the same activity options keep every recorded scheduled-analysis history replaying.
import { acts } from './v1/activity-options';

export async function scheduledAnalysisWorkflow(input: ScheduledAnalysisInput): Promise<ScheduledAnalysisResult> {
  const { service } = input;
  const rollout = await acts.readServiceRollout({ service });
  if (!rollout)
    return {
      service,
      mode: 'nothing-to-analyse',
      verdict: { verdict: 'inconclusive', reason: `${service} has no rollout yet` },
      action: 'none',
    };
  const { status } = rollout;
  const touched = status.targets.filter((t) => t.newVersion && t.stableVersion && t.weight > 0);
  const targets = touched.map((t) => ({
    target: status.spec.targets.find((s) => s.name === t.name)!,
    stableVersion: t.stableVersion!,
    newVersion: t.newVersion!,
  }));

  if (rollout.open && status.state === 'running') {
    if (targets.length === 0)
      return {
        service,
        mode: 'during-rollout',
        verdict: { verdict: 'inconclusive', reason: 'no traffic on the new version yet' },
        action: 'none',
      };
    const verdicts = await acts.analyzeCanary({ targets, rule: status.spec.rollback, startMs: Date.now() - input.lookbackMs });
    const verdict = { ...combineVerdicts(verdicts), reason: `scheduled analysis: ${combineVerdicts(verdicts).reason}` };
    if (patched('scheduled-verdict-pinned-to-run')) {
      // Only a fail is sent (each signal grows the rollout's history; a pass changes nothing there),
      // to the run that was analysed, naming its release: a verdict never lands on a later rollout.
      if (verdict.verdict !== 'fail') return { service, mode: 'during-rollout', verdict, action: 'none (not a fail)' };
      try {
        // The analysed run's message nonce: runs since patch `rollout-message-nonces` refuse a verdict without it.
        const nonce = rollout.messageNonce !== undefined && patched('scheduled-verdict-nonce') ? { nonce: rollout.messageNonce } : {};
        await getExternalWorkflowHandle(rollout.workflowId, rollout.runId).signal(externalVerdictSignal, {
          ...verdict,
          // The release and pass that were read (a recorded activity result: a replay sends what was sent).
          ...judgedRun(status),
          ...nonce,
        });
      } catch {
        return { service, mode: 'during-rollout', verdict, action: 'the analysed rollout closed meanwhile: verdict dropped' };
      }
    } else await getExternalWorkflowHandle(rollout.workflowId).signal(externalVerdictSignal, verdict);
    return {
      service,
      mode: 'during-rollout',
      verdict,
      action: verdict.verdict === 'fail' ? 'sent fail to the rollout: it rolls back' : 'sent verdict to the rollout',
    };
  }

  const promoted = !rollout.open && status.state === 'succeeded';
  if (!promoted || targets.length === 0)
    return {
      service,
      mode: 'nothing-to-analyse',
      verdict: { verdict: 'inconclusive', reason: `latest rollout is ${status.state}` },
      action: 'none',
    };
  const verdicts = await acts.analyzePromoted({
    targets,
    rule: status.spec.rollback,
    rolloutStartMs: status.startedAtMs,
    lookbackMs: input.lookbackMs,
  });
  const verdict = combineVerdicts(verdicts);
  const inWatch = Date.now() - (rollout.closedAtMs ?? 0) <= input.watchMs;
  if (!inWatch) return { service, mode: 'report-only', verdict, action: 'watch window over: reported only' };
  if (verdict.verdict !== 'fail') return { service, mode: 'after-promotion', verdict, action: 'none' };
  const action = await acts.startRevertRollout({
    spec: status.spec,
    reason: verdict.reason,
    artifactDigest: status.artifactDigest ?? '',
    targets: touched.map((t) => ({ name: t.name, stableVersion: t.stableVersion!, newVersion: t.newVersion! })),
    taskQueue: input.taskQueue ?? workflowInfo().taskQueue,
    // The four-eyes rule after the revert compares names: the verified one when the start was verified.
    releasedBy: status.starter?.verified ? status.starter.name : status.startedBy,
    // A pipeline rollout's revert is recorded on the release in its environment (rolled back there).
    ...(status.environment ? { environment: status.environment } : {}),
  });
  return { service, mode: 'after-promotion', verdict, action };
}
