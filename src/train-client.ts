/**
 * Starting and following release trains from any program (the CLI is a thin shell over these).
 * A train is `trainWorkflow` with id `train-NAME`; its members are child rollouts `rollout-SERVICE`.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { WorkflowNotFoundError, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { redactDeep } from './security/redact';
import { getStatus, RolloutRefusedError } from './client';
import { SA, RUNNER_TASK_QUEUE, TASK_QUEUE, WORKFLOW_TASK_TIMEOUT, rolloutWorkflowId, type RolloutStatus } from './contract';
import { trainStatusQuery, trainWorkflowId, type TrainInput, type TrainResult, type TrainSpec, type TrainStatus } from './contract/train';
import type { trainWorkflow } from './workflows/train';

export interface TrainStartOptions {
  startedBy: string;
  taskQueue?: string;
  runnerTaskQueue?: string;
  token?: string;
  /** How often held or waiting members check that the train is still open (ms, >= 1000; default 60 s). */
  memberParentCheckMs?: number;
}

/**
 * Start a validated train. Refused before anything starts when the train is already open, or when
 * one of its services has an open rollout (the member would not start, and the train would stop).
 */
export async function startTrain(
  client: Client,
  train: TrainSpec,
  opts: TrainStartOptions,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof trainWorkflow>> {
  const workflowId = trainWorkflowId(train.train);
  const checkMs = opts.memberParentCheckMs;
  if (checkMs !== undefined && (!Number.isInteger(checkMs) || checkMs < 1000))
    throw new RolloutRefusedError(`memberParentCheckMs must be an integer of at least 1000 (ms), got ${String(checkMs)}`);
  for (const m of train.members) {
    const id = rolloutWorkflowId(m.service);
    const open = await client.workflow
      .getHandle(id)
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch((err) => {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      });
    if (open)
      throw new RolloutRefusedError(
        `train ${train.train}: service ${m.service} already has an open rollout ${id}; finish or abort it first (\`rollgate status ${id}\`). Nothing was started.`,
      );
  }
  const input: TrainInput = {
    train,
    startedBy: opts.startedBy,
    ...(opts.token ? { startToken: opts.token } : {}),
    runnerTaskQueue: opts.runnerTaskQueue ?? (process.env.ROLLGATE_RUNNER_TASK_QUEUE || RUNNER_TASK_QUEUE),
    ...(checkMs !== undefined ? { memberParentCheckMs: checkMs } : {}),
  };
  try {
    return await client.workflow.start<typeof trainWorkflow>('trainWorkflow', {
      workflowId,
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      workflowTaskTimeout: WORKFLOW_TASK_TIMEOUT,
      typedSearchAttributes: [
        { key: SA.train, value: train.train },
        { key: SA.release, value: train.train },
        { key: SA.stage, value: 'train' },
        { key: SA.state, value: 'running' },
        { key: SA.providers, value: [...new Set(train.members.flatMap((m) => m.spec.targets.map((t) => t.provider)))] },
      ],
      staticSummary: `train ${train.train}: ${train.members.map((m) => `${m.service} ${m.spec.release}`).join(', ')}`,
      staticDetails: [
        `**train** ${train.train}${train.lockstep ? ' (lockstep)' : ''}  `,
        `**started by** ${opts.startedBy}  `,
        ...train.members.map((m) => `**${m.service}** ${m.spec.release}${m.dependsOn.length ? ` after ${m.dependsOn.join(', ')}` : ''}  `),
      ].join('\n'),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new RolloutRefusedError(
        `train ${train.train} is already open as ${workflowId}: \`rollgate status ${workflowId}\`, or \`rollgate abort ${workflowId}\` to close it`,
      );
    throw err;
  }
}

/** `train-NAME` or `NAME` of an existing train, else undefined (then the id is a rollout's). */
export async function resolveTrainId(client: Client, id: string): Promise<string | undefined> {
  if (id.startsWith('rollout-')) return undefined;
  for (const candidate of id.startsWith('train-') ? [id, trainWorkflowId(id)] : [trainWorkflowId(id)]) {
    try {
      const d = await client.workflow.getHandle(candidate).describe();
      if (d.type === 'trainWorkflow') return candidate;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  return undefined;
}

export interface TrainView {
  execution: string;
  status: TrainStatus;
  /** Each member's own status, when it can be read (not for members that never started). */
  members: Record<string, RolloutStatus | undefined>;
}

/** The train's status (query while open, result once closed) and each started member's. */
export async function getTrainView(client: Client, trainId: string): Promise<TrainView> {
  const handle = client.workflow.getHandle(trainId);
  const desc = await handle.describe().catch((err) => {
    if (err instanceof WorkflowNotFoundError) throw new RolloutRefusedError(`no train with id ${trainId}`);
    throw err;
  });
  const execution = desc.status.name;
  let status: TrainStatus;
  if (execution === 'COMPLETED') status = ((await handle.result()) as TrainResult).status;
  else status = await handle.query(trainStatusQuery);
  status = redactDeep(status);
  const members: TrainView['members'] = {};
  await Promise.all(
    status.members.map(async (m) => {
      if (m.state === 'pending' || m.state === 'not-started' || m.startedAtMs === undefined) return;
      members[m.service] = await getStatus(client, m.rolloutId).catch(() => undefined);
    }),
  );
  return { execution, status, members };
}

export type TrainOutcome = 'succeeded' | 'rolled-back' | 'rollback-failed' | 'aborted' | 'failed' | 'timeout';

/** How a wait on a train ends: closed, or paused after a rollback (open, waiting for resume/abort). */
export function classifyTrain(v: TrainView): { outcome: TrainOutcome; open: boolean; reason: string } | undefined {
  const s = v.status;
  if (v.execution !== 'RUNNING' && v.execution !== 'COMPLETED')
    return { outcome: 'failed', open: false, reason: `the train workflow was ${v.execution.toLowerCase()}` };
  if (s.pausedAfterRollback)
    return {
      outcome: s.state === 'rollback-failed' ? 'rollback-failed' : 'rolled-back',
      open: true,
      reason: `${s.reason ?? s.detail}; reverted ${s.reverted.join(', ') || 'nothing else'}; \`rollgate resume ${s.id}\` retries the train, \`rollgate abort ${s.id}\` closes it`,
    };
  if (v.execution === 'COMPLETED') {
    const outcome: TrainOutcome = s.state === 'succeeded' || s.state === 'rolled-back' || s.state === 'aborted' ? s.state : 'failed';
    return { outcome, open: false, reason: s.detail.replace(/^[a-z-]+: /, '') };
  }
  return undefined;
}

/** Poll a train until it closes or pauses after a rollback (or the timeout). */
export async function waitForTrain(
  client: Client,
  trainId: string,
  opts: { timeoutMs?: number; intervalMs?: number; onView?: (v: TrainView) => void } = {},
): Promise<{ outcome: TrainOutcome; open: boolean; reason: string; view?: TrainView }> {
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  let last: TrainView | undefined;
  for (;;) {
    last = await getTrainView(client, trainId);
    opts.onView?.(last);
    const done = classifyTrain(last);
    if (done) return { ...done, view: last };
    if (Date.now() >= deadline)
      return { outcome: 'timeout', open: true, reason: `still ${last.status.state}: ${last.status.detail}`, view: last };
    await new Promise((r) => setTimeout(r, Math.min(opts.intervalMs ?? 1000, Math.max(0, deadline - Date.now()))));
  }
}
