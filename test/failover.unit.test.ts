/**
 * The fleet-failover stall (scripts/faults/failover.ts) on hand-built histories: each case is the
 * shape a SIGKILLed worker leaves in a rollout's history.
 */
import { temporal } from '@temporalio/proto';
import { stallAfterKill } from '../scripts/faults/failover';

const E = temporal.api.enums.v1.EventType;
type Ev = temporal.api.history.v1.IHistoryEvent;
const at = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
let id = 0;
// Plain numbers where the proto types say Long: what a decoded history holds for small values too.
const ev = (type: temporal.api.enums.v1.EventType, ms: number, attrs: Record<string, unknown> = {}): Ev =>
  ({ eventId: ++id, eventType: type, eventTime: at(ms), ...attrs }) as unknown as Ev;
const KILL = 100_000;

beforeEach(() => (id = 0));

test('a workflow task held by the dead worker times out: the stall runs from the kill to the start on the survivor', () => {
  const sched = ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, KILL - 50);
  const events = [
    sched,
    ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED, KILL - 40, { workflowTaskStartedEventAttributes: { scheduledEventId: sched.eventId } }),
    ev(E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, KILL + 9_960, { workflowTaskTimedOutEventAttributes: { scheduledEventId: sched.eventId } }),
  ];
  const again = ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, KILL + 9_960);
  events.push(
    again,
    ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED, KILL + 9_980, { workflowTaskStartedEventAttributes: { scheduledEventId: again.eventId } }),
  );
  expect(stallAfterKill(events, KILL)).toEqual({ stallMs: 9_980, what: `workflow task ${id}` });
});

test('an activity retried after its heartbeat timeout: last attempt start minus the kill', () => {
  const sched = ev(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, KILL - 500);
  const events = [
    sched,
    ev(E.EVENT_TYPE_ACTIVITY_TASK_STARTED, KILL + 10_400, {
      activityTaskStartedEventAttributes: { scheduledEventId: sched.eventId, attempt: 2 },
    }),
  ];
  expect(stallAfterKill(events, KILL).stallMs).toBe(10_400);
});

test('work before the kill and prompt work after it: no stall counted beyond the real waits', () => {
  const a = ev(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, KILL - 5_000);
  const b = ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, KILL + 3_000);
  const events = [
    a,
    ev(E.EVENT_TYPE_ACTIVITY_TASK_STARTED, KILL - 4_990, {
      activityTaskStartedEventAttributes: { scheduledEventId: a.eventId, attempt: 1 },
    }),
    b,
    ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED, KILL + 3_025, { workflowTaskStartedEventAttributes: { scheduledEventId: b.eventId } }),
  ];
  expect(stallAfterKill(events, KILL).stallMs).toBe(25);
  expect(stallAfterKill([], KILL)).toEqual({ stallMs: 0, what: undefined });
});

test('a sticky task with no poller moves to the normal queue: the wait is counted from the kill', () => {
  const sticky = ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, KILL + 1_000); // a timer fired after the kill
  const events = [
    sticky,
    ev(E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, KILL + 3_000, { workflowTaskTimedOutEventAttributes: { scheduledEventId: sticky.eventId } }),
  ];
  const normal = ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, KILL + 3_000);
  events.push(
    normal,
    ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED, KILL + 3_010, { workflowTaskStartedEventAttributes: { scheduledEventId: normal.eventId } }),
  );
  // Ready at the timer (KILL + 1 s), started 2.01 s later.
  expect(stallAfterKill(events, KILL).stallMs).toBe(2_010);
});
