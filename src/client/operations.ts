/**
 * Operating a rollout (approve, reject, pause, resume, abort, retry) and reading it (list,
 * history). Each operation returns the line that says what happened (the CLI prints it after the
 * rollout id). A refusal by the workflow (four-eyes rule, a late approval, a token it does not
 * accept) throws the SDK's WorkflowUpdateFailedError with the reason as its cause; a refusal here,
 * RolloutRefusedError.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import {
  SA,
  abortSignal,
  abortUpdate,
  approveUpdate,
  pauseSignal,
  pauseUpdate,
  rejectUpdate,
  resumeSignal,
  resumeUpdate,
  type RolloutStatus,
} from '../contract';
import { RolloutRefusedError } from './errors';
import { getStatus } from './status';

export interface ApproveOptions {
  /** The approver (in the spec's approvers, not the starter); with a token, the token names them. */
  by?: string;
  comment?: string;
  /** The wave meant: refused if the rollout waits for another one (a late approval). */
  wave?: string;
  /** Bearer token (OIDC/JWT), when the worker verifies identities. */
  token?: string;
}

/** Approve the wave the rollout waits for; returns the workflow's answer. */
export async function approveRollout(client: Client, rolloutId: string, o: ApproveOptions): Promise<string> {
  const args = { by: o.by ?? '', comment: o.comment, ...(o.wave ? { wave: o.wave } : {}), ...(o.token ? { token: o.token } : {}) };
  return client.workflow.getHandle(rolloutId).executeUpdate(approveUpdate, { args: [args] });
}

export interface RejectOptions extends Omit<ApproveOptions, 'comment'> {
  /** Why (sent in the alert). */
  reason: string;
}

/** Reject the wave the rollout waits for (it reverts and pauses); returns the workflow's answer. */
export async function rejectRollout(client: Client, rolloutId: string, o: RejectOptions): Promise<string> {
  const args = { by: o.by ?? '', reason: o.reason, ...(o.wave ? { wave: o.wave } : {}), ...(o.token ? { token: o.token } : {}) };
  return client.workflow.getHandle(rolloutId).executeUpdate(rejectUpdate, { args: [args] });
}

export interface OperatorOptions {
  by: string;
  /** Recorded in the history. */
  reason?: string;
  /** With a token the action is an update the worker verifies and answers; without one, a signal. */
  token?: string;
}

export type OperatorAction = 'pause' | 'resume' | 'abort';

const OPERATOR_MESSAGES = {
  pause: { signal: pauseSignal, update: pauseUpdate },
  resume: { signal: resumeSignal, update: resumeUpdate },
  abort: { signal: abortSignal, update: abortUpdate },
} as const;

/**
 * Pause, resume or abort an open rollout. With a token: the workflow's answer, once it took effect.
 * Without: `ACTION sent` (a signal is applied later, not when this returns: wait on the status).
 */
export async function operateRollout(client: Client, rolloutId: string, action: OperatorAction, o: OperatorOptions): Promise<string> {
  const handle = await openRollout(client, rolloutId);
  const { signal, update } = OPERATOR_MESSAGES[action];
  if (o.token) return handle.executeUpdate(update, { args: [{ by: o.by, reason: o.reason, token: o.token }] });
  await handle.signal(signal as typeof pauseSignal, { by: o.by, reason: o.reason });
  return `${action} sent`;
}

/** Hold the rollout at its current weights; bake timers stop. */
export const pauseRollout = (client: Client, rolloutId: string, o: OperatorOptions) => operateRollout(client, rolloutId, 'pause', o);
/** Continue a paused rollout; after a rollback, retry the release from the deploy stage. */
export const resumeRollout = (client: Client, rolloutId: string, o: OperatorOptions) => operateRollout(client, rolloutId, 'resume', o);
/** Revert every touched target and close the rollout. */
export const abortRollout = (client: Client, rolloutId: string, o: OperatorOptions) => operateRollout(client, rolloutId, 'abort', o);

/** The handle of a rollout that is still open, or RolloutRefusedError saying why not. */
async function openRollout(client: Client, rolloutId: string): Promise<WorkflowHandle> {
  const handle = client.workflow.getHandle(rolloutId);
  const desc = await handle.describe().catch((err) => {
    throw new RolloutRefusedError(`no running rollout ${rolloutId} (${(err as Error).message})`);
  });
  if (desc.status.name !== 'RUNNING') throw new RolloutRefusedError(`rollout ${rolloutId} is closed (${desc.status.name.toLowerCase()})`);
  return handle;
}

/**
 * Resume, refused unless there is something to retry: a pipeline paused after a rollback (the
 * release again from the deploy stage) or a failed revert (the reverts again).
 */
export async function retryRollout(client: Client, rolloutId: string, o: Omit<OperatorOptions, 'reason'>): Promise<string> {
  const s = await getStatus(client, rolloutId);
  if (s.state !== 'paused' && s.state !== 'rollback-failed')
    throw new RolloutRefusedError(
      `rollout ${rolloutId} is ${s.state}; retry works on a paused pipeline (see \`rollgate status ${rolloutId}\`)`,
    );
  const handle = client.workflow.getHandle(rolloutId);
  if (o.token) await handle.executeUpdate(resumeUpdate, { args: [{ by: o.by, token: o.token }] });
  else await handle.signal(resumeSignal, { by: o.by });
  // The canary is where traffic moves again (the deploy finds the version it already made).
  return `retrying${s.state === 'rollback-failed' ? ' the failed revert' : ' from the canary'}`;
}

// ---- reading: list and history ----------------------------------------------------------------

/** The states `listRollouts` filters on (RolloutState search attribute). */
export const ROLLOUT_LIST_STATES = ['running', 'paused', 'succeeded', 'rolled-back', 'rollback-failed', 'aborted', 'failed'] as const;

export interface RolloutFilter {
  service?: string;
  state?: (typeof ROLLOUT_LIST_STATES)[number];
  /** At most this many rows (default 50). */
  limit?: number;
}

/** One rollout as Temporal visibility lists it (search attributes; may lag by a second). */
export interface RolloutRow {
  id: string;
  runId: string;
  /** A release train (trainWorkflow) or one rollout; trains are listed with their members. */
  kind: 'rollout' | 'train';
  /** The train a member rollout belongs to. */
  train?: string;
  parentId?: string;
  service?: string;
  release?: string;
  state?: string;
  stage?: string;
  startTime: string;
  closeTime?: string;
}

/** Rollouts from Temporal visibility, newest first. */
export async function listRollouts(client: Client, filter: RolloutFilter = {}): Promise<RolloutRow[]> {
  if (filter.state && !ROLLOUT_LIST_STATES.includes(filter.state))
    throw new RolloutRefusedError(`state must be one of ${ROLLOUT_LIST_STATES.join(', ')}`);
  // Trains are listed with their members (a member's `train` names it), unless a service is asked for.
  const clauses = [
    filter.service ? `WorkflowType = 'rolloutWorkflow'` : `(WorkflowType = 'rolloutWorkflow' OR WorkflowType = 'trainWorkflow')`,
  ];
  // A quote would end the string literal of the visibility query: a service name never has one.
  if (filter.service) clauses.push(`RolloutService = '${filter.service.replace(/'/g, '')}'`);
  if (filter.state) clauses.push(`RolloutState = '${filter.state}'`);
  const limit = filter.limit ?? 50;
  const rows: RolloutRow[] = [];
  for await (const wf of client.workflow.list({ query: clauses.join(' AND ') })) {
    const sa = wf.typedSearchAttributes;
    rows.push({
      id: wf.workflowId,
      runId: wf.runId,
      kind: wf.type === 'trainWorkflow' ? 'train' : 'rollout',
      train: sa.get(SA.train),
      ...(wf.parentExecution?.workflowId ? { parentId: wf.parentExecution.workflowId } : {}),
      service: sa.get(SA.service),
      release: sa.get(SA.release),
      state: sa.get(SA.state),
      stage: sa.get(SA.stage),
      startTime: wf.startTime.toISOString(),
      closeTime: wf.closeTime?.toISOString(),
    });
    if (rows.length >= limit) break;
  }
  return rows;
}

/** Decisions, approvals, verdicts and compensations of a rollout, in time order. */
export async function rolloutHistory(client: Client, rolloutId: string): Promise<RolloutStatus['history']> {
  return (await getStatus(client, rolloutId)).history;
}
