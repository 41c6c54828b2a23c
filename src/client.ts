/**
 * Starting and driving rollouts from any program with @temporalio/client: start, status, wait,
 * approve, reject, pause, resume, abort, retry, list, history and the analysis schedules. The CLI
 * (src/cli/main.ts) is a thin shell over these functions: arguments in, one printed line out.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ServiceError, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { formatDuration } from './spec/duration';
import type { RolloutSpec } from './spec/schema';
import { MAX_SPEC_BYTES } from './spec/validate';
import {
  SA,
  RUNNER_TASK_QUEUE,
  TASK_QUEUE,
  WORKFLOW_TASK_TIMEOUT,
  imageDigest,
  rolloutWorkflowId,
  type RolloutInput,
  type RolloutStatus,
} from './contract';
import type { rolloutWorkflow } from './workflows/rollout';
import { RolloutRefusedError } from './client/errors';
import { getStatus, observeRollout, type RolloutObservation } from './client/status';

// The whole client API is importable from this module.
export { RolloutRefusedError };
export { getStatus, observeRollout, readRollout, safeStatus, type RolloutObservation } from './client/status';
export {
  abortRollout,
  approveRollout,
  listRollouts,
  operateRollout,
  pauseRollout,
  rejectRollout,
  resumeRollout,
  retryRollout,
  rolloutHistory,
  ROLLOUT_LIST_STATES,
  type ApproveOptions,
  type OperatorAction,
  type OperatorOptions,
  type RejectOptions,
  type RolloutFilter,
  type RolloutRow,
} from './client/operations';
export {
  createAnalysisSchedule,
  listAnalysisSchedules,
  scheduleAction,
  ScheduleUsageError,
  type ScheduleOptions,
  type ScheduleRow,
} from './schedules';

export interface StartOptions {
  startedBy: string;
  taskQueue?: string;
  /** Revert mode (used by scheduled analyses after a failed post-promotion check). */
  revertPromoted?: RolloutInput['revertPromoted'];
  /** The runner's task queue (default ROLLGATE_RUNNER_TASK_QUEUE, else `rollgate-runner`). */
  runnerTaskQueue?: string;
  /** Continue as new past this many history events (default 10,000): small values exercise it in tests. */
  continueAsNewAfterEvents?: number;
  /** Hand over to a new run before a wait at least this long (off when unset; 5 minutes is a sensible value for fleets parked by the thousand). */
  parkHandoverAfterMs?: number;
  /** The starter's bearer token (OIDC/JWT), checked by the worker before anything runs (see docs/security-identities.md). */
  token?: string;
  /** Pipeline rollouts (src/releases.ts): the environment, a promotion's pinned artifact, a rollback to a release. */
  environment?: RolloutInput['environment'];
  pinnedArtifact?: RolloutInput['pinnedArtifact'];
  rollbackTo?: RolloutInput['rollbackTo'];
}

/**
 * Start the rollout of one release. The workflow id is derived from the service, so Temporal
 * itself refuses a second rollout of a service while one runs or is paused after a rollback.
 */
export async function startRollout(
  client: Client,
  spec: RolloutSpec,
  opts: StartOptions,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof rolloutWorkflow>> {
  const workflowId = rolloutWorkflowId(spec.service);
  // validateSpec refuses it too; a program may hand over a spec it built itself.
  if (spec.notify?.webhook !== undefined)
    throw new RolloutRefusedError(
      'notify.webhook: a webhook URL in the spec would be stored in the workflow history and shown by every status: put it in a variable ROLLGATE_WEBHOOK_<NAME> on the workers and give its name as notify.webhook_env. Nothing was started.',
    );
  for (const field of ['continueAsNewAfterEvents', 'parkHandoverAfterMs'] as const) {
    const v = opts[field];
    if (v !== undefined && !(Number.isInteger(v) && v > 0))
      throw new RolloutRefusedError(`${field}: must be a positive whole number, got ${String(v)}. Nothing was started.`);
  }
  const input: RolloutInput = {
    spec,
    startedBy: opts.startedBy,
    ...(opts.token ? { startToken: opts.token } : {}),
    runnerTaskQueue: opts.runnerTaskQueue ?? (process.env.ROLLGATE_RUNNER_TASK_QUEUE || RUNNER_TASK_QUEUE),
    ...(opts.revertPromoted ? { revertPromoted: opts.revertPromoted } : {}),
    ...(opts.continueAsNewAfterEvents ? { continueAsNewAfterEvents: opts.continueAsNewAfterEvents } : {}),
    ...(opts.parkHandoverAfterMs ? { parkHandoverAfterMs: opts.parkHandoverAfterMs } : {}),
    ...(opts.environment ? { environment: opts.environment } : {}),
    ...(opts.pinnedArtifact ? { pinnedArtifact: opts.pinnedArtifact } : {}),
    ...(opts.rollbackTo ? { rollbackTo: opts.rollbackTo } : {}),
  };
  const providers = [...new Set(spec.targets.map((t) => t.provider))];
  const digest =
    opts.pinnedArtifact?.digest ??
    spec.artifact.sha256 ??
    (spec.artifact.image ? `sha256:${imageDigest(spec.artifact.image)}` : undefined) ??
    'built at the build stage';
  const kind = opts.revertPromoted
    ? 'revert'
    : opts.rollbackTo
      ? 'rollback to'
      : opts.environment
        ? `${opts.environment} rollout`
        : 'rollout';
  try {
    return await client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', {
      workflowId,
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      // Explicit, one knob for every start (see WORKFLOW_TASK_TIMEOUT: shorter values were measured slower).
      workflowTaskTimeout: WORKFLOW_TASK_TIMEOUT,
      typedSearchAttributes: [
        { key: SA.service, value: spec.service },
        { key: SA.release, value: spec.release },
        { key: SA.stage, value: 'pending' },
        { key: SA.state, value: 'running' },
        { key: SA.providers, value: providers },
      ],
      staticSummary: `${kind} ${spec.service} ${spec.release}`,
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
    if (err instanceof ServiceError) {
      // The SDK's message is a bare "Failed to start Workflow"; the reason is in the gRPC cause.
      const cause = err.cause as (Error & { code?: number; details?: string }) | undefined;
      const said = (cause?.details || cause?.message || '').split('\n')[0];
      if (isSizeRefusal(cause)) {
        const bytes = Buffer.byteLength(JSON.stringify(input), 'utf8');
        const blob = /blob/i.test(said);
        throw new RolloutRefusedError(
          `the Temporal server refused to start ${workflowId}: the request is over its ${blob ? 'payload' : 'message'} size limit (workflow input ${Math.ceil(bytes / 1024)} KiB; server said: ${said}). ` +
            `Nothing was started. Make the spec smaller (\`rollgate validate\` allows ${MAX_SPEC_BYTES / 1024} KiB)${blob ? ' or raise the server limit limit.blobSize.error' : ''}.`,
        );
      }
      // Keep the error's class (callers may test for ServiceError); give it the server's reason.
      if (said) err.message = `${err.message} ${workflowId}: ${said}`;
    }
    throw err;
  }
}

/**
 * A refusal for size: the frontend's payload limit ("Blob data size exceeds limit.", INVALID_ARGUMENT,
 * answered at once) or gRPC's 4 MiB message limit ("received message larger than max",
 * RESOURCE_EXHAUSTED, which the SDK retries for ~40 s before giving up).
 */
function isSizeRefusal(cause: (Error & { details?: string }) | undefined): boolean {
  if (!cause) return false;
  return /blob data size exceeds limit|larger than max|message too large|exceeds .*size limit/i.test(
    `${cause.details ?? ''} ${cause.message ?? ''}`,
  );
}

/**
 * Wait (at most `timeoutMs`) until the worker has checked who started the rollout. Throws
 * RolloutRefusedError with the reason when the start was refused (the rollout closed as failed
 * before anything ran); returns the starter, or undefined when no worker answered in time.
 */
export async function awaitStarterCheck(
  client: Client,
  rolloutId: string,
  runId: string,
  timeoutMs = 10_000,
): Promise<RolloutStatus['starter'] | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const o = await observeRollout(client, rolloutId, runId).catch(() => undefined);
    if (o?.status?.starter) return o.status.starter;
    if (o?.status && o.execution !== 'RUNNING') {
      const refused = /^failed: (start refused: .*)$/.exec(o.status.detail);
      if (refused) throw new RolloutRefusedError(`rollout ${rolloutId} was not started: ${refused[1]}`);
      return undefined;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

// ---- waiting for an outcome (start --wait, watch) -------------------------------------------

/**
 * How a wait ends. Besides the closed states, a rollout that waits on a human decision it has
 * announced ends the wait too: the pipeline paused after a rollback (`rolled-back`, open until
 * resume/abort) and a failed revert (`rollback-failed`, open until resume/abort). An approval gate
 * ends it only when asked (`awaiting-approval`); an operator's pause never does (someone paused on
 * purpose and will resume or abort: use a timeout to bound the wait).
 */
export type RolloutOutcome = 'succeeded' | 'rolled-back' | 'rollback-failed' | 'aborted' | 'failed' | 'timeout' | 'awaiting-approval';

export interface OutcomeReport {
  outcome: RolloutOutcome;
  /** Whether the rollout is still open (waiting for resume/abort/approve, or still running at a timeout). */
  open: boolean;
  /** One line: why, and what to do next. */
  reason: string;
  /** The last status read, when there was one. */
  status?: RolloutStatus;
}

/**
 * The pipeline is paused after a rollback (waiting for resume or abort), not by an operator's pause.
 * v2 rollouts say so in `pausedAfterRollback`; for older ones this looks for positive evidence that the rollback is done: the detail the workflow sets once the reverts
 * succeeded, or the `rolled-back` alert recorded after the last rollback stage began. An operator's
 * pause that is followed by an abort also reads paused/rollback while the reverts run: neither sign
 * is there, so the wait goes on until the rollout closes as aborted.
 */
export function isPausedAfterRollback(s: RolloutStatus): boolean {
  if (s.pausedAfterRollback !== undefined) return s.state === 'paused' && s.pausedAfterRollback;
  // Rollouts started before v2 have no such field: read the signs they leave.
  if (s.state !== 'paused' || s.stage !== 'rollback') return false;
  if (/^pipeline paused after /.test(s.detail)) return true;
  let i = s.history.length - 1;
  while (i >= 0 && !(s.history[i].kind === 'stage' && s.history[i].text.startsWith('stage rollback'))) i--;
  return s.history.slice(i + 1).some((e) => e.kind === 'alert' && e.text.startsWith('rolled-back '));
}

/** The outcome a status means, or undefined while the wait goes on. */
export function classifyRollout(o: RolloutObservation, opts: { exitOnApproval?: boolean } = {}): Omit<OutcomeReport, 'status'> | undefined {
  const s = o.status;
  const id = s?.id ?? 'the rollout';
  if (o.execution !== 'RUNNING' && o.execution !== 'COMPLETED') {
    const how = o.execution.toLowerCase().replace(/_/g, ' ');
    return {
      outcome: 'failed',
      open: false,
      reason: `the workflow was ${how}${s ? ` in stage ${s.stage} (state ${s.state})` : ''}; targets may not be on their stable version: check \`rollgate status ${id}\``,
    };
  }
  if (!s) return undefined;
  const why = s.rollbackReason ?? s.detail;
  if (o.execution === 'COMPLETED' || !['running', 'paused'].includes(s.state)) {
    const open = o.execution === 'RUNNING';
    switch (s.state) {
      case 'succeeded':
        return { outcome: 'succeeded', open: false, reason: s.detail.replace(/^succeeded: /, '') };
      case 'rolled-back':
        return { outcome: 'rolled-back', open: false, reason: `rolled back and closed: ${why}` };
      case 'aborted':
        return { outcome: 'aborted', open: false, reason: s.detail.replace(/^aborted: /, '') };
      case 'failed':
        return { outcome: 'failed', open: false, reason: s.detail.replace(/^failed: /, '') };
      case 'rollback-failed':
        return {
          outcome: 'rollback-failed',
          open,
          reason: open
            ? `a revert failed, targets may still serve the new version: ${why}; fix the target, then \`rollgate resume ${id}\` (retry the revert) or \`rollgate abort ${id}\``
            : `closed with a failed revert: ${why}`,
        };
      default:
        // COMPLETED with a state the result should never carry: report it rather than wait forever.
        return { outcome: 'failed', open: false, reason: `workflow completed in state ${s.state}: ${s.detail}` };
    }
  }
  if (isPausedAfterRollback(s))
    return {
      outcome: 'rolled-back',
      open: true,
      reason: `rolled back, pipeline paused: ${why}; \`rollgate resume ${id}\` retries from the canary, \`rollgate abort ${id}\` closes it`,
    };
  if (opts.exitOnApproval && s.awaitingApproval)
    return {
      outcome: 'awaiting-approval',
      open: true,
      reason: `waiting for an approval of wave ${s.awaitingApproval}: \`rollgate approve ${id} --by NAME\` (approvers: ${s.spec.approvers.join(', ')})`,
    };
  return undefined;
}

export interface WaitOptions {
  /** Follow this run (default: the latest run at the first look, then that run). */
  runId?: string;
  /** Give up after this long (outcome `timeout`; the rollout goes on). */
  timeoutMs?: number;
  /** End the wait when the rollout waits for an approval. */
  exitOnApproval?: boolean;
  /** Poll interval (default 1 s). */
  intervalMs?: number;
  /** Called with every status read (watch prints them). */
  onStatus?: (s: RolloutStatus) => void;
  /** Reading the status may fail for this long in a row (worker restart, server restart) before the error is thrown. */
  toleranceMs?: number;
}

/**
 * Poll a rollout until it reaches an outcome: closed, paused after a rollback, a failed revert,
 * (with exitOnApproval) an approval gate, or the timeout. Never waits on an operator's pause
 * beyond the timeout.
 */
export async function waitForOutcome(client: Client, rolloutId: string, opts: WaitOptions = {}): Promise<OutcomeReport> {
  const started = Date.now();
  const deadline = opts.timeoutMs === undefined ? Infinity : started + opts.timeoutMs;
  const interval = opts.intervalMs ?? 1000;
  const tolerance = opts.toleranceMs ?? 60_000;
  let runId = opts.runId;
  let last: RolloutStatus | undefined;
  let failingSince: number | undefined;
  for (;;) {
    let o: RolloutObservation | undefined;
    try {
      o = await observeRollout(client, rolloutId, runId);
      failingSince = undefined;
    } catch (err) {
      if (err instanceof RolloutRefusedError) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > tolerance)
        throw new Error(
          `cannot read the status of ${rolloutId} for ${formatDuration(Date.now() - failingSince)} (is a worker polling its task queue?): ${(err as Error).message.split('\n')[0]}`,
          { cause: err },
        );
    }
    if (o) {
      runId = o.runId;
      if (o.status) {
        last = o.status;
        opts.onStatus?.(o.status);
      }
      const done = classifyRollout(o, opts);
      if (done) return { ...done, status: o.status ?? last };
    }
    const left = deadline - Date.now();
    if (left <= 0)
      return {
        outcome: 'timeout',
        open: true,
        reason: `still ${last ? `${last.state} in stage ${last.stage} (${last.detail})` : 'not readable'} after ${formatDuration(Date.now() - started)}; the rollout goes on`,
        status: last,
      };
    await new Promise((r) => setTimeout(r, Math.min(interval, left)));
  }
}
