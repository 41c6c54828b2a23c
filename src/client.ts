/**
 * Starting and driving rollouts from any program with @temporalio/client. The CLI is a thin shell
 * over these functions.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { RolloutSpec } from './spec/schema';
import {
  SA,
  TASK_QUEUE,
  rolloutWorkflowId,
  statusQuery,
  type RolloutInput,
  type RolloutResult,
  type RolloutStatus,
} from './workflows/messages';
import type { rolloutWorkflow } from './workflows/rollout';

export class RolloutRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutRefusedError';
  }
}

export interface StartOptions {
  startedBy: string;
  taskQueue?: string;
  /** Revert mode (used by scheduled analyses after a failed post-promotion check). */
  revertPromoted?: RolloutInput['revertPromoted'];
}

/**
 * Start the rollout of one release. The workflow id is derived from the service, so Temporal
 * itself refuses a second rollout of a service while one runs or is paused after a rollback.
 */
export async function startRollout(client: Client, spec: RolloutSpec, opts: StartOptions): Promise<WorkflowHandle<typeof rolloutWorkflow>> {
  const workflowId = rolloutWorkflowId(spec.service);
  const input: RolloutInput = { spec, startedBy: opts.startedBy, ...(opts.revertPromoted ? { revertPromoted: opts.revertPromoted } : {}) };
  const providers = [...new Set(spec.targets.map((t) => t.provider))];
  const digest = spec.artifact.sha256 ?? spec.artifact.image?.split('@')[1] ?? 'built at the build stage';
  try {
    return await client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', {
      workflowId,
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: [
        { key: SA.service, value: spec.service },
        { key: SA.release, value: spec.release },
        { key: SA.stage, value: 'pending' },
        { key: SA.state, value: 'running' },
        { key: SA.providers, value: providers },
      ],
      staticSummary: `${opts.revertPromoted ? 'revert' : 'rollout'} ${spec.service} ${spec.release}`,
      staticDetails: [
        `**service** ${spec.service}  `,
        `**release** ${spec.release} (schema_rev ${spec.schema_rev}${spec.index_hash ? `, index ${spec.index_hash}` : ''})  `,
        `**artifact** ${digest}  `,
        `**started by** ${opts.startedBy}  `,
        `**targets** ${spec.targets.map((t) => t.name).join(', ')}  `,
        `**canary** ${spec.canary.weight} % on ${spec.canary.targets.join(', ')}, then ${spec.waves.map((w) => `${w.name} ${w.steps.join('→')} %`).join(', ') || 'promote'}`,
      ].join('\n'),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      const current = await getStatus(client, workflowId).catch(() => undefined);
      const what = current ? `release ${current.release} is ${current.state} (stage ${current.stage})` : 'a rollout is open';
      const hint =
        current?.state === 'paused' || current?.state === 'rollback-failed'
          ? `its pipeline is paused: \`rollgate resume ${workflowId}\` to retry it or \`rollgate abort ${workflowId}\` to close it`
          : `wait for it to finish, or \`rollgate abort ${workflowId}\``;
      throw new RolloutRefusedError(
        `service ${spec.service} already has rollout ${workflowId}: ${what}. Only one rollout per service runs at a time; ${hint}.`,
      );
    }
    throw err;
  }
}

/** Status of a rollout: from its query while open, from its result once closed. */
export async function getStatus(client: Client, rolloutId: string): Promise<RolloutStatus> {
  const handle = client.workflow.getHandle(rolloutId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new RolloutRefusedError(`no rollout with id ${rolloutId}`);
    throw err;
  }
  if (desc.status.name === 'RUNNING') return handle.query(statusQuery);
  if (desc.status.name === 'COMPLETED') return ((await handle.result()) as RolloutResult).status;
  // Terminated/failed/timed out: the status query still answers by replaying the history on a worker.
  try {
    return await handle.query(statusQuery);
  } catch {
    throw new RolloutRefusedError(`rollout ${rolloutId} is ${desc.status.name.toLowerCase()} and its status cannot be read`);
  }
}
