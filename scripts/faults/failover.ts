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
