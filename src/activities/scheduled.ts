/** Activities of the scheduled canary analysis: read a service's rollout, judge a promotion, revert it. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readRollout, RolloutRefusedError, startRollout } from '../client';
import { QueryNotRegisteredError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { RollbackRule, RolloutSpec } from '../spec/schema';
import type { ArtifactRef } from '../providers/types';
import { judgeThreshold } from '../analysis/threshold-judge';
import { messageNonceQuery, rolloutWorkflowId, type RolloutResult, type RolloutStatus, type Verdict } from '../contract';
import { nativeMetricSource, requireClient, type ActivityDeps } from './deps';
import type { AnalysisTarget } from './analysis';
import { readWithHeartbeat, withHeartbeat } from './heartbeat';

export interface ServiceRollout {
  workflowId: string;
  /** The open run (what a verdict about it is signalled to). */
  runId?: string;
  /** The open run's message nonce, which a verdict to it must carry (absent for runs before patch `rollout-message-nonces`). */
  messageNonce?: string;
  open: boolean;
  closedAtMs?: number;
  status: RolloutStatus;
}

/** A run of the frozen v1 code registers no such query: it takes verdicts without a nonce. */
export async function readMessageNonce(run: WorkflowHandle): Promise<string | undefined> {
  try {
    return await run.query(messageNonceQuery);
  } catch (err) {
    if (err instanceof QueryNotRegisteredError) return undefined;
    throw err;
  }
}

export function scheduledActivities(deps: ActivityDeps) {
  const client = () => requireClient(deps, 'scheduled analyses');

  return {
    /** The service's latest rollout (open or closed) with its status, or null when it never had one. */
    async readServiceRollout(input: { service: string }): Promise<ServiceRollout | null> {
      const workflowId = rolloutWorkflowId(input.service);
      // Unredacted (readRollout, not getStatus): a revert re-runs the spec read here as written.
      const o = await readRollout(client(), workflowId, undefined, { closedStatus: false }).catch((err: unknown) => {
        if (err instanceof RolloutRefusedError) return null; // never had a rollout
        throw err;
      });
      if (!o?.status) return null; // terminated/failed: nothing promoted to watch
      if (o.execution === 'RUNNING') {
        const messageNonce = await readMessageNonce(client().workflow.getHandle(workflowId, o.runId));
        return { workflowId, runId: o.runId, open: true, status: o.status, ...(messageNonce ? { messageNonce } : {}) };
      }
      return { workflowId, open: false, closedAtMs: o.closedAtMs, status: o.status };
    },

    /**
     * "No increase in error rate after rollout": the promoted version now (last `lookbackMs`) against
     * the previous version in the same length of time before the rollout started.
     */
    async analyzePromoted(input: {
      targets: AnalysisTarget[];
      rule: RollbackRule;
      rolloutStartMs: number;
      lookbackMs: number;
    }): Promise<Verdict[]> {
      return withHeartbeat(() =>
        Promise.all(
          input.targets.map(async (t) => {
            const m = nativeMetricSource(deps, t.target);
            const now = Date.now();
            const [after, before] = await Promise.all([
              m.collect({
                target: t.target,
                canaryVersion: t.newVersion,
                baselineVersion: t.stableVersion,
                startMs: now - input.lookbackMs,
                endMs: now + 60_000,
              }),
              m.collect({
                target: t.target,
                canaryVersion: t.newVersion,
                baselineVersion: t.stableVersion,
                startMs: input.rolloutStartMs - input.lookbackMs,
                endMs: input.rolloutStartMs,
              }),
            ]);
            const v = judgeThreshold(
              input.rule,
              { source: `${after.source}, baseline before the rollout`, canary: after.canary, baseline: before.baseline },
              t.target.name,
            );
            return { ...v, atMs: Date.now() };
          }),
        ),
      );
    },

    /**
     * How many rollouts of the service in a row (this one included) ended with a failure in `stage`:
     * read from the closed runs' results in visibility, newest first.
     */
    async consecutiveStageFailures(input: { service: string; stage: string; workflowId: string }): Promise<number> {
      return readWithHeartbeat(() => countStageFailures(client(), input));
    },

    /** Start the revert of a promoted release under the service's rollout id (which pauses its pipeline). */
    async startRevertRollout(input: {
      spec: RolloutSpec;
      reason: string;
      artifactDigest: string;
      targets: { name: string; stableVersion: string; newVersion: string }[];
      taskQueue: string;
      /** Who started the promoted rollout: still may not approve its re-run (four-eyes). */
      releasedBy?: string;
      /** The promoted rollout's pipeline environment: the revert is announced to the release registry. */
      environment?: string;
    }): Promise<string> {
      const path = join(deps.stateDir, 'artifacts', `${input.artifactDigest}.zip`);
      const artifact: ArtifactRef = {
        digest: input.artifactDigest,
        path: existsSync(path) ? path : undefined,
        image: input.spec.artifact.image,
      };
      // A spec recorded before notify.webhook_env may carry a webhook URL: it is not copied into a new history.
      const { webhook: legacyWebhook, ...notify } = input.spec.notify ?? { escalate_after: 3 };
      const spec: RolloutSpec =
        legacyWebhook !== undefined ? { ...input.spec, notify: notify.webhook_env ? notify : undefined } : input.spec;
      try {
        await startRollout(client(), spec, {
          startedBy: 'rollgate-schedule',
          taskQueue: input.taskQueue,
          revertPromoted: {
            reason: input.reason,
            artifact,
            targets: input.targets,
            ...(input.releasedBy ? { releasedBy: input.releasedBy } : {}),
          },
          ...(input.environment ? { environment: input.environment } : {}),
        });
        return `started the revert of ${input.spec.release} as ${rolloutWorkflowId(input.spec.service)}`;
      } catch (err) {
        if (err instanceof RolloutRefusedError)
          return `not reverted: ${rolloutWorkflowId(input.spec.service)} is already open (a newer rollout runs)`;
        throw err;
      }
    },
  };
}

/** consecutiveStageFailures' work: the closed runs of the rollout id, newest first, until one did not fail in `stage`. */
async function countStageFailures(c: Client, input: { stage: string; workflowId: string }): Promise<number> {
  const runs: { runId: string; start: number }[] = [];
  for await (const wf of c.workflow.list({ query: `WorkflowId = '${input.workflowId}' AND ExecutionStatus = 'Completed'` })) {
    runs.push({ runId: wf.runId, start: wf.startTime.getTime() });
    if (runs.length >= 100) break;
  }
  runs.sort((a, b) => b.start - a.start);
  let streak = 1; // this rollout
  for (const r of runs) {
    const res = (await c.workflow.getHandle(input.workflowId, r.runId).result()) as RolloutResult;
    if (res.state === 'succeeded' || res.status.failedStage !== input.stage) break;
    streak++;
  }
  return streak;
}
