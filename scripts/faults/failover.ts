/**
 * Fleet failover (issue 12 item 5): how long a rollout stood still because the worker that held
 * its work was SIGKILLed. Read from the rollout's own Temporal history, which records when each
 * workflow task and activity became ready and when a worker started it.
 *
 * A rollout's stall is the longest wait, after the kill, between a task being ready and a live
 * worker starting it: `start - max(ready, kill)`. A task is ready when it was scheduled; a workflow
 * task that timed out (its worker died holding it, or its sticky queue had no poller) passes its
 * ready time on to the task scheduled after it, so the stall runs from the kill to the start on the
 * surviving worker. An activity retried after a heartbeat timeout records only its last attempt's
 * start, with the original schedule time: the same formula covers it.
 */
import { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const { EventType } = temporal.api.enums.v1;

function ms(t: HistoryEvent['eventTime']): number {
  if (!t) return NaN;
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** The longest wait for a live worker after `killAtMs` (0 when nothing waited), and what waited. */
export function stallAfterKill(events: HistoryEvent[], killAtMs: number): { stallMs: number; what?: string } {
  const readyAt = new Map<string, number>(); // scheduled event id -> ready time
  let carried: number | undefined; // ready time handed on by a workflow task that timed out or failed
  let worst = { stallMs: 0, what: undefined as string | undefined };
  const note = (start: number, ready: number | undefined, what: string) => {
    if (ready === undefined || start <= killAtMs) return;
    const wait = start - Math.max(ready, killAtMs);
    if (wait > worst.stallMs) worst = { stallMs: wait, what };
  };
  for (const e of events) {
    const at = ms(e.eventTime);
    const id = String(e.eventId);
    switch (e.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        readyAt.set(id, carried ?? at);
        carried = undefined;
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
        note(at, readyAt.get(String(e.workflowTaskStartedEventAttributes?.scheduledEventId)), `workflow task ${id}`);
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
      case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: {
        const a = e.workflowTaskTimedOutEventAttributes ?? e.workflowTaskFailedEventAttributes;
        carried = readyAt.get(String(a?.scheduledEventId));
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        readyAt.set(id, at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const a = e.activityTaskStartedEventAttributes;
        note(at, readyAt.get(String(a?.scheduledEventId)), `activity ${a?.scheduledEventId} attempt ${a?.attempt ?? 1}`);
        break;
      }
    }
  }
  return worst;
}

/** Timeouts in one rollout's history, by when they happened relative to the kill (no kill: all `before`). */
export interface TimeoutCounts {
  /** Workflow tasks a worker started and did not complete in time (start-to-close). */
  workflowTask: Phases;
  /** Activity attempts retried after a heartbeat timeout (timed by the retry's start). */
  heartbeat: Phases;
  /** Heartbeat timeouts of a live worker (before the kill or past the grace) by activity type. */
  liveHeartbeatByType: Record<string, number>;
}

/** Before the kill and more than `graceMs` after it: a live worker was too slow; within: the dead worker's. */
export interface Phases {
  before: number;
  within: number;
  after: number;
}

export const noTimeouts = (): TimeoutCounts => ({
  workflowTask: { before: 0, within: 0, after: 0 },
  heartbeat: { before: 0, within: 0, after: 0 },
  liveHeartbeatByType: {},
});

export function addTimeouts(into: TimeoutCounts, c: TimeoutCounts): void {
  for (const k of ['workflowTask', 'heartbeat'] as const) for (const p of ['before', 'within', 'after'] as const) into[k][p] += c[k][p];
  for (const [t, n] of Object.entries(c.liveHeartbeatByType)) into.liveHeartbeatByType[t] = (into.liveHeartbeatByType[t] ?? 0) + n;
}

/**
 * Counts the timeouts of a history. A workflow task timeout is counted at its event; a heartbeat
 * timeout only shows as the last failure of the attempt that completed (the started event of the
 * retry), so it is timed by that retry's start.
 */
export function timeoutsIn(events: HistoryEvent[], killAtMs: number | undefined, graceMs = 10_000): TimeoutCounts {
  const c = noTimeouts();
  const phase = (at: number): keyof Phases =>
    killAtMs === undefined || at < killAtMs ? 'before' : at <= killAtMs + graceMs ? 'within' : 'after';
  const { TimeoutType } = temporal.api.enums.v1;
  const types = new Map<string, string>();
  for (const e of events) {
    const at = ms(e.eventTime);
    if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      types.set(String(e.eventId), e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?');
    if (e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT) {
      if (e.workflowTaskTimedOutEventAttributes?.timeoutType === TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE) c.workflowTask[phase(at)]++;
    } else if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) {
      const f = e.activityTaskStartedEventAttributes?.lastFailure;
      if (f?.timeoutFailureInfo?.timeoutType !== TimeoutType.TIMEOUT_TYPE_HEARTBEAT) continue;
      const p = phase(at);
      c.heartbeat[p]++;
      if (p === 'within') continue;
      const type = types.get(String(e.activityTaskStartedEventAttributes?.scheduledEventId)) ?? '?';
      c.liveHeartbeatByType[type] = (c.liveHeartbeatByType[type] ?? 0) + 1;
    }
  }
  return c;
}
