/** Reading a rollout's status: from its query while open, from its result once closed. */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { REDACTED, redactDeep } from '../security/redact';
import { statusQuery, type RolloutResult, type RolloutStatus } from '../contract';
import { RolloutRefusedError } from './errors';

/** Status of a rollout: from its query while open, from its result once closed. */
export async function getStatus(client: Client, rolloutId: string, runId?: string): Promise<RolloutStatus> {
  const o = await observeRollout(client, rolloutId, runId);
  if (!o.status)
    throw new RolloutRefusedError(`rollout ${rolloutId} is ${o.execution.toLowerCase().replace(/_/g, ' ')} and its status cannot be read`);
  return o.status;
}

/** One look at a rollout: the workflow execution's status and, when it can be read, the rollout's. */
export interface RolloutObservation {
  runId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, TERMINATED, FAILED, TIMED_OUT, CANCELLED, ... */
  execution: string;
  /** When the run closed (absent while it runs). */
  closedAtMs?: number;
  status?: RolloutStatus;
}

/** One look at a rollout, its status as a program may show it (through `safeStatus`). */
export async function observeRollout(client: Client, rolloutId: string, runId?: string): Promise<RolloutObservation> {
  const o = await readRollout(client, rolloutId, runId);
  return o.status ? { ...o, status: safeStatus(o.status) } : o;
}

/**
 * One look at a rollout, its status as the workflow holds it: not redacted, for the worker's own
 * use (a scheduled analysis re-runs the spec it reads, so a URL in it must stay as written).
 * Anything shown to a person goes through `observeRollout`. `closedStatus: false` skips the status
 * of a terminated/failed run, which only a replay on a worker can answer.
 */
export async function readRollout(
  client: Client,
  rolloutId: string,
  runId?: string,
  opts: { closedStatus?: boolean } = {},
): Promise<RolloutObservation> {
  const handle = client.workflow.getHandle(rolloutId, runId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new RolloutRefusedError(`no rollout with id ${rolloutId}`);
    throw err;
  }
  const execution = desc.status.name;
  // A run that continued as new: follow the chain to its current run.
  if (execution === 'CONTINUED_AS_NEW' && runId) return readRollout(client, rolloutId, undefined, opts);
  const pinned = client.workflow.getHandle(rolloutId, desc.runId);
  const seen = { runId: desc.runId, execution, ...(desc.closeTime ? { closedAtMs: desc.closeTime.getTime() } : {}) };
  if (execution === 'RUNNING') return { ...seen, status: await pinned.query(statusQuery) };
  if (execution === 'COMPLETED') return { ...seen, status: ((await pinned.result()) as RolloutResult).status };
  if (opts.closedStatus === false) return seen;
  // Terminated/failed/timed out: the status query still answers by replaying the history on a worker.
  try {
    return { ...seen, status: await pinned.query(statusQuery) };
  } catch {
    return seen;
  }
}

/**
 * A status as the client shows it (`status`, `watch`, `--json`): through the redactor, and without
 * the webhook URL that specs of rollouts started before notify.webhook_env still carry.
 */
export function safeStatus(s: RolloutStatus): RolloutStatus {
  const out = redactDeep(s);
  if (out.spec?.notify?.webhook !== undefined) out.spec = { ...out.spec, notify: { ...out.spec.notify, webhook: REDACTED } };
  return out;
}
