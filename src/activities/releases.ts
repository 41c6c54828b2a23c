/**
 * The release registry's activities: what a closed rollout really did (read from Temporal, never
 * taken from a message), the announcement a closing rollout sends, the veto check every rollout
 * makes before it deploys, and whether the versions a rollback goes back to still exist.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { RolloutSpec, TargetSpec } from '../spec/schema';
import { NonRetryableProviderError, type ArtifactRef } from '../providers/types';
import type { RolloutResult } from '../contract';
import {
  releaseGateQuery,
  releaseRegistryWorkflowId,
  rolloutClosedSignal,
  vetoedDigestQuery,
  WORKFLOW_TASK_TIMEOUT,
  type ReleaseGate,
  type ReleaseGateArgs,
  type RolloutClosed,
  type Veto,
} from '../contract';
import { targetIdentity, type ClosedRollout } from '../workflows/release-records';
import { FileArtifactStore } from '../artifacts/store';
import { join } from 'node:path';
import { providerFor, requireClient, type ActivityDeps } from './deps';
import { readWithHeartbeat, withHeartbeat } from './heartbeat';

/** How long one attempt waits for an announced run to close (it announces just before it returns). */
const CLOSE_WAIT_MS = 20_000;
const MAX_VERDICT_LINES = 30;

export function releaseActivities(deps: ActivityDeps) {
  const client = () => requireClient(deps, 'the release registry');
  const store = () => deps.artifactStore ?? new FileArtifactStore(join(deps.stateDir, 'artifacts'));
  /** The ref a promotion deploys again: the zip from this worker's content-addressed store by digest, the image by digest. */
  function artifactOf(digest: string, spec: RolloutSpec): ArtifactRef {
    const lambda = spec.targets.some((t) => t.provider === 'aws-lambda');
    const stored = lambda ? store().locationOf(digest) : undefined;
    return {
      digest,
      ...(stored ? { location: stored.location, ...(stored.region ? { locationRegion: stored.region } : {}) } : {}),
      ...(spec.artifact.image ? { image: spec.artifact.image } : {}),
    };
  }
  return {
    /** Tell the service's registry (started if absent) that this run closed; the registry reads it itself. */
    async announceRolloutClosed(input: { service: string; taskQueue: string } & RolloutClosed): Promise<void> {
      await withHeartbeat(() =>
        client().workflow.signalWithStart('releaseRegistryWorkflow', {
          workflowId: releaseRegistryWorkflowId(input.service),
          taskQueue: input.taskQueue,
          args: [{ service: input.service }],
          signal: rolloutClosedSignal,
          signalArgs: [{ workflowId: input.workflowId, runId: input.runId }],
          workflowTaskTimeout: WORKFLOW_TASK_TIMEOUT,
        }),
      );
    },

    /**
     * The named run's real outcome, from Temporal: it must be a closed rollout of this service in a
     * pipeline environment. Anything else is refused (non-retryable) with the reason.
     */
    async readClosedRollout(input: { service: string } & RolloutClosed): Promise<ClosedRollout> {
      const handle = client().workflow.getHandle(input.workflowId, input.runId, { followRuns: false });
      let desc;
      try {
        desc = await handle.describe();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw refused('no such run');
        throw err;
      }
      if (desc.type !== 'rolloutWorkflow') throw refused(`the named run is a ${desc.type.slice(0, 100)}, not a rollout`);
      if (desc.status.name === 'RUNNING') {
        // Announced from its last step: give it a moment, then let the retry ask again.
        await Promise.race([handle.result().catch(() => undefined), new Promise((r) => setTimeout(r, CLOSE_WAIT_MS))]);
        desc = await handle.describe();
        if (desc.status.name === 'RUNNING') throw new Error('the named run is still open');
      }
      if (desc.status.name !== 'COMPLETED') throw refused(`the named run is ${desc.status.name}: it returned no outcome`);
      const result = (await client().workflow.getHandle(input.workflowId, input.runId, { followRuns: false }).result()) as RolloutResult;
      const s = result.status;
      if (s.service !== input.service)
        throw refused(`the named run is a rollout of ${String(s.service).slice(0, 63)}, not of ${input.service}`);
      if (!s.environment) throw refused('the named run is not a pipeline rollout (no environment)');
      const artifact = s.artifactDigest ? artifactOf(s.artifactDigest, s.spec) : undefined;
      return {
        service: s.service,
        release: s.release,
        environment: s.environment,
        ...(s.rollbackTo ? { rollbackTo: s.rollbackTo } : {}),
        rolloutId: input.workflowId,
        runId: input.runId,
        outcome: result.state,
        startedAtMs: s.startedAtMs,
        closedAtMs: desc.closeTime?.getTime() ?? Date.now(),
        ...(artifact ? { artifact } : {}),
        targets: s.targets.map((t) => ({
          name: t.name,
          provider: t.provider,
          ...(t.newVersion !== undefined ? { version: t.newVersion } : {}),
          ...(t.stableVersion !== undefined ? { previous: t.stableVersion } : {}),
        })),
        // What the run's targets are in the cloud: the registry compares them with the pipeline's environment.
        targetIdentities: s.spec.targets.map(targetIdentity),
        verdicts: s.history
          .filter((e) => e.kind === 'verdict' || (e.kind === 'decision' && e.text.startsWith('verify ')))
          .map((e) => e.text)
          .slice(-MAX_VERDICT_LINES),
        approvals: s.approvals.map((a) => ({ wave: a.wave, by: a.by, decision: a.decision, ...(a.verified ? { verified: true } : {}) })),
        startedBy: s.starter?.name ?? s.startedBy,
        ...(s.starter ? { starterVerified: s.starter.verified } : {}),
      };
    },

    /** The vetoed release whose artifact has one of these digests (no registry yet: none). */
    async findVeto(input: { service: string; digests: string[] }): Promise<{ release: string; veto: Veto } | null> {
      // An embedded worker without a Temporal client has no registry either (only clients write
      // one). A registry that cannot be reached is retried and then fails the stage: never skipped.
      if (!deps.client) return null;
      return readWithHeartbeat(async () => {
        try {
          return (
            (await client().workflow.getHandle(releaseRegistryWorkflowId(input.service)).query(vetoedDigestQuery, input.digests)) ?? null
          );
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) return null;
          throw err;
        }
      });
    },

    /**
     * The registry's gate before a deploy pass or a route back: a veto, and for a promotion whether
     * the pin is what the environment before verified. No client (embedded worker): no registry can
     * exist, nothing to refuse, unless the run is pinned (a pin is only ever checked, never trusted).
     */
    async checkReleaseGate(input: { service: string } & ReleaseGateArgs): Promise<ReleaseGate> {
      const { service, ...args } = input;
      if (!deps.client)
        return args.pinned
          ? { pinRefusal: 'pinnedArtifact: no Temporal client on this worker to check the pin with the release registry' }
          : {};
      // Heartbeats like every read (patch rollgate-fast-failover: a 5 s heartbeat timeout).
      return readWithHeartbeat(async () => {
        try {
          return await client().workflow.getHandle(releaseRegistryWorkflowId(service)).query(releaseGateQuery, args);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError)
            return args.pinned ? { pinRefusal: `pinnedArtifact: no release registry for ${service}: nothing verified the pin` } : {};
          throw err;
        }
      });
    },

    /** Whether each target still has the version a rollback would route to (read from the cloud). */
    async findMissingVersions(input: { targets: { target: TargetSpec; version: string }[] }): Promise<string[]> {
      return readWithHeartbeat(async () => {
        const missing: string[] = [];
        for (const { target, version } of input.targets) {
          try {
            await providerFor(deps, target).fingerprint(target, version, deps.hashKey);
          } catch (err) {
            if (isNotFound(err)) missing.push(`${target.name}: version ${version} no longer exists`);
            else throw err;
          }
        }
        return missing;
      });
    },
  };
}

function refused(reason: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(reason, 'RegistryRefused');
}

function isNotFound(err: unknown): boolean {
  return err instanceof NonRetryableProviderError && (err.code === 'ResourceNotFoundException' || err.code === 'NOT_FOUND');
}
