/** History events as the client returns them, and their server times. */
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';

export type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/** An event's server time, ms since the epoch. */
export const eventMs = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);

/** The first argument of a scheduled activity (rollgate's activities take one object). */
export function scheduledInput<T>(e: HistoryEvent): T | undefined {
  const p = e.activityTaskScheduledEventAttributes?.input?.payloads?.[0];
  return p ? (defaultPayloadConverter.fromPayload(p as Payload) as T) : undefined;
}
