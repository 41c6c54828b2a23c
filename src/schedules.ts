/** Scheduled canary analyses as Temporal Schedules: one per service, visible in the Temporal UI. */
import { ScheduleAlreadyRunning, ScheduleNotFoundError, type Client, type ScheduleDescription } from '@temporalio/client';
import { durationMs } from './spec/duration';
import { analysisScheduleId, TASK_QUEUE, type ScheduledAnalysisInput } from './contract';
import { RolloutRefusedError } from './client/errors';

export interface ScheduleOptions {
  service: string;
  every: string;
  /** Watch window after a promotion (default 1 hour). */
  window?: string;
  taskQueue?: string;
}

export class ScheduleUsageError extends Error {}

export async function createAnalysisSchedule(client: Client, o: ScheduleOptions): Promise<string> {
  const every = durationMs(o.every);
  const watch = durationMs(o.window ?? '1 hour');
  if (every === undefined || every < 1000)
    throw new ScheduleUsageError(`--every must be a duration of at least 1 second, got "${o.every}"`);
  if (watch === undefined) throw new ScheduleUsageError(`--window must be a duration such as 1h, got "${o.window}"`);
  const id = analysisScheduleId(o.service);
  const taskQueue = o.taskQueue ?? TASK_QUEUE;
  const args: [ScheduledAnalysisInput] = [{ service: o.service, lookbackMs: every, watchMs: watch, taskQueue }];
  try {
    await client.schedule.create({
      scheduleId: id,
      spec: { intervals: [{ every }] },
      action: { type: 'startWorkflow', workflowType: 'scheduledAnalysisWorkflow', workflowId: id, taskQueue, args },
      policies: { overlap: 'SKIP', catchupWindow: every },
      memo: { service: o.service },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning)
      throw new RolloutRefusedError(`schedule ${id} already exists: delete it first (rollgate schedule delete ${o.service})`);
    throw err;
  }
  return id;
}

export interface ScheduleRow {
  id: string;
  service: string;
  paused: boolean;
  every?: string;
  recentActions: number;
  nextRun?: string;
}

export async function listAnalysisSchedules(client: Client): Promise<ScheduleRow[]> {
  const rows: ScheduleRow[] = [];
  for await (const s of client.schedule.list()) {
    if (!s.scheduleId.startsWith('rollgate-analysis-')) continue;
    // The list comes from visibility, which lags; describe gives the schedule's current state, and a
    // schedule deleted since the list was read is no longer one to show.
    const d = await client.schedule
      .getHandle(s.scheduleId)
      .describe()
      .catch((err: unknown) => {
        if (err instanceof ScheduleNotFoundError) return undefined;
        throw err;
      });
    if (!d) continue;
    const every = d.spec.intervals?.[0]?.every;
    rows.push({
      id: s.scheduleId,
      service: s.scheduleId.slice('rollgate-analysis-'.length),
      paused: d.state.paused,
      every: every !== undefined ? `${Math.round(Number(every) / 1000)}s` : undefined,
      recentActions: d.info.recentActions.length,
      nextRun: d.info.nextActionTimes[0]?.toISOString(),
    });
  }
  return rows;
}

/** pause | unpause | delete | trigger | describe one service's schedule, with a clear error when it does not exist. */
export async function scheduleAction(
  client: Client,
  service: string,
  action: 'pause' | 'unpause' | 'delete' | 'trigger' | 'describe',
): Promise<ScheduleDescription | undefined> {
  const handle = client.schedule.getHandle(analysisScheduleId(service));
  try {
    if (action === 'pause') await handle.pause('paused with rollgate');
    else if (action === 'unpause') await handle.unpause('unpaused with rollgate');
    else if (action === 'delete') await handle.delete();
    else if (action === 'trigger') await handle.trigger('ALLOW_ALL');
    else return await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError)
      throw new RolloutRefusedError(`no analysis schedule for ${service} (rollgate schedule create ${service} --every 5m)`);
    throw err;
  }
  return undefined;
}
