import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';

/** The whole history as text, with every payload's data base64-decoded, for "never in history" checks. */
export async function historyText(handle: WorkflowHandle): Promise<string> {
  const json = historyToJSON(await handle.fetchHistory());
  const decoded: string[] = [json];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if (k === 'data' && typeof x === 'string') decoded.push(Buffer.from(x, 'base64').toString('utf8'));
        else walk(x);
      }
  };
  walk(JSON.parse(json));
  return decoded.join('\n');
}

/**
 * With ROLLGATE_RECORD_HISTORIES=1, save the closed workflow's history as test/histories/NAME.json
 * for the replay suite. Never overwrites: a recorded history is kept for as long as its workflow
 * version may still be running (record a new version under a new name).
 */
export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.ROLLGATE_RECORD_HISTORIES !== '1') return;
  saveHistoryFile(name, await handle.fetchHistory());
}

/**
 * Write a history as test/histories/NAME.json (proto JSON, as the replay suite reads it). Refuses
 * a name that exists, atomically (open with `wx`): every recorder goes through here
 * (test/history-files.unit.test.ts checks that no test writes into test/histories on its own).
 */
export function saveHistoryFile(name: string, history: temporal.api.history.v1.IHistory, dir = join(__dirname, '..', 'histories')): void {
  const file = join(dir, `${name}.json`);
  try {
    writeFileSync(file, JSON.stringify(JSON.parse(historyToJSON(history)), null, 1), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new Error(`${file} exists: recorded histories are never overwritten; use a new name`);
    throw err;
  }
}

export interface HistoryEvent {
  id: number;
  /** e.g. TIMER_FIRED, ACTIVITY_TASK_SCHEDULED (EVENT_TYPE_ dropped). */
  type: string;
  /** Server time of the event: workflow time, not the test's clock. */
  timeMs: number;
  /** ACTIVITY_TASK_SCHEDULED: the activity type; other activity events: that of the event they close. */
  activity?: string;
  /** TIMER_STARTED / TIMER_FIRED: the timer's summary (e.g. "bake 2s at canary 10 %") and duration. */
  timer?: { summary?: string; ms: number };
}

/** The workflow's history as a list of events with their workflow time, activity types and timer summaries. */
export async function workflowEvents(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  const json = JSON.parse(historyToJSON(await handle.fetchHistory())) as { events: Record<string, any>[] };
  const activities = new Map<string, string>();
  const timers = new Map<string, HistoryEvent['timer']>();
  const seconds = (d?: string) => (d ? Math.round(parseFloat(d) * 1000) : 0);
  const text = (p?: { data?: string }): string | undefined => {
    try {
      return p?.data ? String(JSON.parse(Buffer.from(p.data, 'base64').toString('utf8'))) : undefined;
    } catch {
      return undefined; // encrypted (payload codec)
    }
  };
  return json.events.map((e) => {
    const ev: HistoryEvent = {
      id: Number(e.eventId),
      type: String(e.eventType).replace(/^EVENT_TYPE_/, ''),
      timeMs: Date.parse(e.eventTime),
    };
    const sched = e.activityTaskScheduledEventAttributes;
    if (sched) activities.set(String(e.eventId), (ev.activity = sched.activityType.name));
    for (const k of ['activityTaskStartedEventAttributes', 'activityTaskCompletedEventAttributes', 'activityTaskFailedEventAttributes'])
      if (e[k]?.scheduledEventId) ev.activity = activities.get(String(e[k].scheduledEventId));
    if (e.timerStartedEventAttributes) {
      ev.timer = { summary: text(e.userMetadata?.summary), ms: seconds(e.timerStartedEventAttributes.startToFireTimeout) };
      timers.set(String(e.timerStartedEventAttributes.timerId), ev.timer);
    }
    if (e.timerFiredEventAttributes) ev.timer = timers.get(String(e.timerFiredEventAttributes.timerId));
    return ev;
  });
}
