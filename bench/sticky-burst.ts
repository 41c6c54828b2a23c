/**
 * The sticky queue under load (issue 12 item 4): a short `stickyQueueScheduleToStartTimeout` gets
 * a crashed worker's rollouts moving sooner, but on a healthy, busy worker a workflow task that
 * waits longer than it on the sticky queue times out and goes to the shared queue, where the
 * workflow is replayed from its whole history (more work exactly when the worker is busiest).
 *
 * So: every parked rollout gets a signal at once (a pause, then a resume: one workflow task each,
 * all on the sticky queue of the one worker), and the histories say how long each task waited to
 * start (scheduled -> started) and whether any timed out. The chosen timeout is justified when the
 * worst wait under that burst stays well below it.
 */
import type { Client } from '@temporalio/client';
import { eventMs } from './history-events';
import { pauseSignal, resumeSignal } from '../src/contract';

export interface StickyBurst {
  rollouts: number;
  /** Workflow tasks that the burst caused, measured scheduled -> started (ms). */
  waits: number[];
  /** Of those, how many timed out on the sticky queue (schedule-to-start) and went to the shared queue. */
  stickyTimeouts: number;
  /** Signal burst sent until the last task completed (ms). */
  drainMs: number;
}

async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** Pause, then resume, every rollout in `ids` at once; the sticky-queue waits of the tasks that caused. */
export async function stickyBurst(client: Client, ids: string[]): Promise<StickyBurst> {
  const sentMs = Date.now();
  for (const signal of [pauseSignal, resumeSignal])
    await inBatches(ids, 100, (id) => client.workflow.getHandle(id).signal(signal, { by: 'bench' }));
  const waits: number[] = [];
  let stickyTimeouts = 0;
  let lastDone = sentMs;
  await inBatches(ids, 25, async (id) => {
    // Until the resume has been acted on (its task completed), then read the tasks since the burst.
    for (let k = 0; k < 600; k++) {
      const events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
      const since = events.filter((e) => eventMs(e) >= sentMs - 5);
      const resumed = since.some((e) => e.workflowExecutionSignaledEventAttributes?.signalName === resumeSignal.name);
      const last = since[since.length - 1];
      if (resumed && last?.workflowTaskCompletedEventAttributes !== undefined) {
        const byId = new Map(events.map((e) => [Number(e.eventId), e]));
        for (const e of since) {
          const started = e.workflowTaskStartedEventAttributes && e;
          if (started) {
            const scheduled = byId.get(Number(started.workflowTaskStartedEventAttributes!.scheduledEventId));
            if (scheduled) waits.push(eventMs(started) - eventMs(scheduled));
          }
          if (e.workflowTaskTimedOutEventAttributes) stickyTimeouts++;
        }
        lastDone = Math.max(lastDone, eventMs(last));
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${id}: the resume was not acted on within 2 minutes`);
  });
  return { rollouts: ids.length, waits, stickyTimeouts, drainMs: lastDone - sentMs };
}
