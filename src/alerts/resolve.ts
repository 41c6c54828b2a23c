/**
 * From claims to decisions: which open rollout an alert is about, and whether it may act on it.
 * `judgeClaims` is pure (tested without servers); `openRollout` / `rolloutsWithLambda` read Temporal.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { SA, judgedRun, rolloutWorkflowId, statusQuery, type RolloutInput, type RolloutStatus, type Verdict } from '../contract';
import type { RolloutSpec } from '../spec/schema';
import type { AlertClaim } from './claims';

/** How long a lookup waits for a rollout's status (the receiver answers 503 past it). */
export const STATUS_DEADLINE_MS = 5_000;

export interface OpenRollout {
  service: string;
  runId: string;
  status: RolloutStatus;
}

export type Outcome =
  /** The alert acts: a failing verdict goes to the rollout. */
  | { outcome: 'reverting'; alert: string; service: string; release: string; detail: string }
  /** Acknowledged, nothing to do (resolved, no open rollout, no traffic on the new version yet). */
  | { outcome: 'ignored'; alert: string; service?: string; detail: string }
  /** Refused: the alert is about another release or revision, or older than the rollout (a stale alert). */
  | { outcome: 'refused'; alert: string; service?: string; detail: string };

/** Decide every claim about one service against its open rollout (or null), and the verdict to send, if any. */
export function judgeClaims(
  service: string,
  claims: AlertClaim[],
  rollout: OpenRollout | null,
): { outcomes: Outcome[]; verdict?: Verdict } {
  const outcomes: Outcome[] = [];
  const acting: AlertClaim[] = [];
  let target: string | undefined;
  for (const c of claims) {
    const base = { alert: c.name, service };
    if (!c.firing) {
      outcomes.push({ outcome: 'ignored', ...base, detail: 'not firing: acknowledged' });
      continue;
    }
    if (!rollout) {
      outcomes.push({ outcome: 'ignored', ...base, detail: `no open rollout of ${service}` });
      continue;
    }
    const s = rollout.status;
    if (s.release !== undefined && c.release !== undefined && c.release !== s.release) {
      outcomes.push({
        outcome: 'refused',
        ...base,
        detail: `about release ${c.release}, but ${rolloutWorkflowId(service)} runs ${s.release}`,
      });
      continue;
    }
    if (c.revision !== undefined) {
      const t = s.targets.find((x) => x.newVersion === c.revision);
      if (!t) {
        outcomes.push({
          outcome: 'refused',
          ...base,
          detail: `about revision ${c.revision}, which is not a new version of release ${s.release}`,
        });
        continue;
      }
      target = t.name;
    }
    if (c.release === undefined && c.revision === undefined && c.sinceMs !== undefined && c.sinceMs < s.startedAtMs) {
      outcomes.push({
        outcome: 'refused',
        ...base,
        detail: `firing since ${new Date(c.sinceMs).toISOString()}, before release ${s.release} started (label it with release= to act)`,
      });
      continue;
    }
    if (s.state === 'rollback-failed' || s.pausedAfterRollback || (s.state !== 'running' && s.state !== 'paused')) {
      outcomes.push({ outcome: 'ignored', ...base, detail: `${rolloutWorkflowId(service)} is ${s.state} after a rollback already` });
      continue;
    }
    if (!s.targets.some((t) => t.newVersion && t.weight > 0)) {
      outcomes.push({ outcome: 'ignored', ...base, detail: `no traffic on release ${s.release} yet` });
      continue;
    }
    acting.push(c);
    outcomes.push({ outcome: 'reverting', ...base, release: s.release, detail: `fail sent to ${rolloutWorkflowId(service)}` });
  }
  if (!acting.length || !rollout) return { outcomes };
  const source = acting[0].source === 'alertmanager' ? 'Alertmanager' : 'CloudWatch alarm';
  const names = acting.map((c) => c.summary).join('; ');
  const verdict: Verdict = {
    verdict: 'fail',
    reason: `${source}: ${names}`.slice(0, 300),
    metric: 'alert',
    // The release and pass read above: a rollback and a resume before the signal lands make it stale, and ignored.
    ...judgedRun(rollout.status),
    atMs: Date.now(),
    ...(target && acting.length === 1 ? { target } : {}),
  };
  return { outcomes, verdict };
}

/**
 * The service's open rollout with its status, or null when none is open. A status not answered
 * within `queryTimeoutMs` (the worker down or busy) fails, naming the rollout: the receiver answers
 * 503 and the sender delivers the alert again, instead of holding its request for the SDK's 30 s.
 */
export async function openRollout(client: Client, service: string, queryTimeoutMs = STATUS_DEADLINE_MS): Promise<OpenRollout | null> {
  const handle = client.workflow.getHandle(rolloutWorkflowId(service));
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
  if (desc.status.name !== 'RUNNING') return null;
  const run = client.workflow.getHandle(handle.workflowId, desc.runId);
  try {
    return { service, runId: desc.runId, status: await client.withDeadline(Date.now() + queryTimeoutMs, () => run.query(statusQuery)) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null; // closed meanwhile
    throw unreadStatus(handle.workflowId, err);
  }
}

/**
 * Services of open rollouts with a Lambda target on `fn` (in `region`, on `alias`, when given), for
 * CloudWatch alarms on Lambda's own metrics, which name the function, not the service. Read from
 * visibility (lags by about a second; only rollouts with a Lambda target) and each rollout's
 * status, asked in parallel with a deadline; at most 200 open rollouts. A status that cannot be
 * read (the worker is down or busy past the deadline) is matched by the spec in the run's start
 * event instead; when that names the function too (or cannot be read) the whole lookup fails, so
 * the receiver answers 503 and SNS delivers the alarm again, rather than acknowledging it as about
 * no rollout.
 */
export async function servicesWithLambda(
  client: Client,
  fn: { function: string; region?: string; alias?: string },
  queryTimeoutMs = STATUS_DEADLINE_MS,
): Promise<string[]> {
  const open: { workflowId: string; runId: string }[] = [];
  // Runs that continued as new in the last minute too: visibility may list the closed run of a
  // handover before it lists the next one as running. Its status is the same rollout's; the
  // verdict goes to the open run of that workflow (openRollout), one per workflow id.
  const since = new Date(Date.now() - 60_000).toISOString();
  const query = `WorkflowType = 'rolloutWorkflow' AND (ExecutionStatus = 'Running' OR (ExecutionStatus = 'ContinuedAsNew' AND CloseTime > '${since}')) AND ${SA.providers.name} = 'aws-lambda'`;
  const seen = new Set<string>();
  for await (const wf of client.workflow.list({ query })) {
    if (open.length >= 200) break;
    if (seen.has(wf.workflowId)) continue;
    seen.add(wf.workflowId);
    open.push({ workflowId: wf.workflowId, runId: wf.runId });
  }
  const deadline = Date.now() + queryTimeoutMs;
  const matches = (spec: RolloutSpec) =>
    spec.targets.some(
      (t) =>
        t.provider === 'aws-lambda' &&
        t.function === fn.function &&
        (fn.region === undefined || t.region === fn.region) &&
        (fn.alias === undefined || t.alias === fn.alias),
    );
  const services = await Promise.all(
    open.map(async (wf) => {
      try {
        const status = await client.withDeadline(deadline, () => client.workflow.getHandle(wf.workflowId, wf.runId).query(statusQuery));
        return matches(status.spec) ? status.service : null;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return null; // gone meanwhile
        // Its spec is in its start event, which the server answers without a worker: a rollout about
        // another function does not hold this alarm back. One about this function does (503).
        const spec = await specFromStart(client, wf, deadline + START_READ_GRACE_MS).catch(() => undefined);
        if (spec && !matches(spec)) return null;
        throw unreadStatus(wf.workflowId, err, ' to match the alarm');
      }
    }),
  );
  return [...new Set(services.filter((s): s is string => s !== null))];
}

/** The receiver's 503: which rollout did not answer, and the first line of why. */
function unreadStatus(workflowId: string, err: unknown, purpose = ''): Error {
  return new Error(`the status of ${workflowId} could not be read${purpose}: ${(err as Error).message.split('\n')[0]}`);
}

/** Past the status deadline, how long the start events of the unanswered rollouts may still take. */
const START_READ_GRACE_MS = 2_000;

/**
 * The spec a rollout run was started with (its first history event's input; a run continued as
 * new carries the spec too). Read from the server and decoded with the client's data converter
 * (the payload codec included); the input's other fields are not kept.
 */
async function specFromStart(client: Client, wf: { workflowId: string; runId: string }, deadline: number): Promise<RolloutSpec> {
  const page = await client.withDeadline(deadline, () =>
    client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId: wf.workflowId, runId: wf.runId },
      maximumPageSize: 1,
    }),
  );
  const payloads = page.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
  const input = await decodeFromPayloadsAtIndex<RolloutInput>(client.options.loadedDataConverter, 0, payloads);
  if (!Array.isArray(input?.spec?.targets)) throw new Error('no spec in the start event');
  return input.spec;
}
