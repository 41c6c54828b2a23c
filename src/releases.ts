/**
 * Environments, promotion, rollback to a release and veto, from any program (the CLI is a thin
 * shell over these). Every refusal is decided here before anything starts, from the service's
 * release registry (src/workflows/release-registry.ts); the veto is enforced again by every rollout.
 */
import { fileURLToPath } from 'node:url';
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { RolloutRefusedError, startRollout, type StartOptions } from './client';
import { environmentGates, environmentOf, environmentSpec, type Pipeline } from './spec/pipeline';
import type { RolloutSpec } from './spec/schema';
import type { ArtifactRef } from './providers/types';
import {
  pipelineDeclaredSignal,
  registrySettledQuery,
  registryStateQuery,
  releaseRegistryWorkflowId,
  rolloutClosedSignal,
  vetoUpdate,
  type DeclaredPipeline,
  type RegistryState,
  type Veto,
} from './contract';
import { promotionPin, promotionRefusal, rollbackPlan, targetIdentity } from './workflows/release-records';
import { TASK_QUEUE, WORKFLOW_TASK_TIMEOUT } from './contract';
import type { rolloutWorkflow } from './workflows/rollout';

type Handle = WorkflowHandleWithFirstExecutionRunId<typeof rolloutWorkflow>;
export type PipelineStartOptions = Pick<
  StartOptions,
  'startedBy' | 'token' | 'taskQueue' | 'runnerTaskQueue' | 'continueAsNewAfterEvents' | 'parkHandoverAfterMs'
>;

/** The service's release records (none yet: an empty registry). Waits briefly for closes it has been told of but not yet read. */
export async function releaseRecords(client: Client, service: string, settleMs = 15_000): Promise<RegistryState> {
  const handle = client.workflow.getHandle(releaseRegistryWorkflowId(service));
  const deadline = Date.now() + settleMs;
  try {
    while (!(await handle.query(registrySettledQuery)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    return await handle.query(registryStateQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { service, releases: [], refused: [] };
    throw err;
  }
}

/**
 * Start release `release` in environment `to`. The first environment builds it; every later one
 * deploys exactly the artifact the environment before verified, and only when the release
 * succeeded there, was not rolled back, has soaked long enough and is not vetoed.
 */
export async function promoteRelease(
  client: Client,
  p: Pipeline,
  release: string,
  to: string,
  opts: PipelineStartOptions,
): Promise<Handle> {
  environmentOf(p, to);
  await declarePipeline(client, p, opts.taskQueue);
  const state = await releaseRecords(client, p.service);
  const refusal = promotionRefusal(state.releases, release, environmentGates(p), to, Date.now());
  if (refusal) throw new RolloutRefusedError(`promote ${p.service} ${release} to ${to} refused: ${refusal}. Nothing was started.`);
  const spec = environmentSpec(p, to, release);
  if (p.environments[0].name === to) return startRollout(client, spec, { ...opts, environment: to });
  // The artifact that succeeded in the environment before (a re-run there may have rebuilt it); the
  // rollout asks the registry again before every deploy pass whether the pin is that one.
  const pin = promotionPin(state.releases, release, environmentGates(p), to);
  if (!pin)
    throw new RolloutRefusedError(`promote ${p.service} ${release} to ${to} refused: no succeeded artifact recorded. Nothing was started.`);
  return startRollout(client, pinnedSpec(spec, pin), { ...opts, environment: to, pinnedArtifact: pin });
}

/** The pipeline's environments and their targets, for the registry to check each closed run's targets against. */
export function declaredPipeline(p: Pipeline): DeclaredPipeline {
  return {
    environments: p.environments.map((e) => ({
      name: e.name,
      targets: environmentSpec(p, e.name, 'declared').targets.map(targetIdentity),
    })),
  };
}

/** Tell the service's registry (started if absent) the pipeline, before anything starts that will report to it. */
export async function declarePipeline(client: Client, p: Pipeline, taskQueue = TASK_QUEUE): Promise<void> {
  await client.workflow.signalWithStart('releaseRegistryWorkflow', {
    workflowId: releaseRegistryWorkflowId(p.service),
    taskQueue,
    args: [{ service: p.service }],
    signal: pipelineDeclaredSignal,
    signalArgs: [declaredPipeline(p)],
  });
}

/** Put every target of `env` back on the versions `release` promoted there (no build, no canary analysis). */
export async function rollbackToRelease(
  client: Client,
  p: Pipeline,
  release: string,
  env: string,
  opts: PipelineStartOptions,
): Promise<Handle> {
  const environment = environmentOf(p, env);
  await declarePipeline(client, p, opts.taskQueue);
  const state = await releaseRecords(client, p.service);
  const plan = rollbackPlan(state.releases, release, env);
  if ('refusal' in plan)
    throw new RolloutRefusedError(`rollback of ${p.service} ${env} to ${release} refused: ${plan.refusal}. Nothing was started.`);
  const spec = environmentSpec(p, env, release);
  const unrecorded = spec.targets.filter((t) => !plan.versions.some((v) => v.name === t.name)).map((t) => t.name);
  if (unrecorded.length)
    throw new RolloutRefusedError(
      `rollback of ${p.service} ${env} to ${release} refused: release ${release} did not run on ${unrecorded.join(', ')} (targets added to ${env} since). Nothing was started.`,
    );
  return startRollout(client, pinnedSpec(spec, plan.artifact), {
    ...opts,
    environment: env,
    rollbackTo: { release, versions: plan.versions, approval: environment.approval },
  });
}

/** Mark `release` bad: no later rollout of the service (plain, promoted, train member) deploys its digest. */
export async function vetoRelease(
  client: Client,
  service: string,
  release: string,
  v: { by: string; reason: string; token?: string },
): Promise<Veto> {
  try {
    return await client.workflow.getHandle(releaseRegistryWorkflowId(service)).executeUpdate(vetoUpdate, { args: [{ release, ...v }] });
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new RolloutRefusedError(`no releases of ${service} are recorded: nothing to veto`);
    // The registry's refusal (unknown release, no reason, a refused token) is the update's cause.
    if (err instanceof WorkflowUpdateFailedError && err.cause) throw new RolloutRefusedError(`veto refused: ${err.cause.message}`);
    throw err;
  }
}

/** Tell the registry about a closed pipeline rollout it missed (it reads the run itself, like any announcement). */
export async function recordClosedRollout(
  client: Client,
  service: string,
  workflowId: string,
  runId: string,
  taskQueue = TASK_QUEUE,
): Promise<void> {
  await client.workflow.signalWithStart('releaseRegistryWorkflow', {
    workflowId: releaseRegistryWorkflowId(service),
    taskQueue,
    args: [{ service }],
    signal: rolloutClosedSignal,
    signalArgs: [{ workflowId, runId }],
    workflowTaskTimeout: WORKFLOW_TASK_TIMEOUT,
  });
}

/** The spec as it shows the artifact a promotion deploys: the recorded zip by digest, the recorded image. */
function pinnedSpec(spec: RolloutSpec, a: ArtifactRef): RolloutSpec {
  const zip = spec.targets.some((t) => t.provider === 'aws-lambda');
  const file = a.path ?? (a.location?.startsWith('file:') ? fileURLToPath(a.location) : a.location);
  return { ...spec, artifact: { ...(zip && file ? { file, sha256: a.digest } : {}), ...(a.image ? { image: a.image } : {}) } };
}
