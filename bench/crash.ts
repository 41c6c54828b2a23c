/**
 * Benchmark 5: crash to resume (SIGKILL just before a bake ends; a new worker picks the rollout up),
 * broken into the new worker's start and the history's events after the kill.
 */
import { createSampleFunction, regionalLambdaTargets } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { statusQuery } from '../src/contract';
import { STICKY_QUEUE_TIMEOUT_MS } from '../src/worker';
import { QUICK, bundlePath, client, median, moto, proxy, report, sleep, spawnWorker, spec, type WorkerPhases } from './common';
import { eventMs, type HistoryEvent } from './history-events';

// ---- 5: crash to resume ------------------------------------------------------------------------

export async function benchCrash() {
  // BENCH_STICKY_TIMEOUT_MS: the workers' sticky-queue timeout, to measure a candidate (rollgate's by default).
  const sticky = Number(process.env.BENCH_STICKY_TIMEOUT_MS || STICKY_QUEUE_TIMEOUT_MS);
  console.log(
    `5. crash to resume (SIGKILL just before a bake ends; new worker start -> next activity starts; prebuilt bundle; sticky timeout ${sticky} ms)`,
  );
  const targets = regionalLambdaTargets('crs', 1);
  for (const tt of targets) await createSampleFunction(moto.url, tt);
  const runs = QUICK ? 1 : Number(process.env.BENCH_CRASH_RUNS || 3);
  const env = { BENCH_TASK_QUEUE: 'bench-crash', BENCH_PROVIDER: 'emulators', BENCH_LAMBDA_ENDPOINT: proxy.url, BENCH_BUNDLE: bundlePath };
  const gaps: number[] = [];
  const parts: CrashTimeline[] = [];
  for (let i = 0; i < runs; i++) {
    let w = await spawnWorker(env);
    const h = await startRollout(client, spec('crs', targets, [], [100], '3 seconds'), { startedBy: 'bench', taskQueue: 'bench-crash' });
    let bakeEnd = 0;
    for (;;) {
      const st = await h.query(statusQuery);
      if (st.stage === 'canary' && st.bakeEndsAtMs) {
        bakeEnd = st.bakeEndsAtMs;
        break;
      }
      if (st.stage === 'done') throw new Error(`crash bench: the rollout ended before its canary bake: ${st.detail}`);
      await sleep(30);
    }
    await sleep(Math.max(0, bakeEnd - Date.now() - 300));
    w.child.kill('SIGKILL');
    await new Promise((r) => w.child.once('exit', r));
    const killedAt = Date.now();
    const callsBefore = proxy.calls.length;
    w = await spawnWorker(env);
    const readyAt = Date.now();
    while (proxy.calls.length <= callsBefore) await sleep(10);
    const firstCall = proxy.calls[callsBefore].atMs;
    await h.result();
    gaps.push(firstCall - killedAt);
    parts.push(crashTimeline((await h.fetchHistory()).events ?? [], killedAt, readyAt, firstCall, w.phases));
    w.child.kill('SIGKILL');
  }
  report('crash', `crash to resume: SIGKILL -> next activity's first call (median of ${gaps.length})`, median(gaps), 'ms', {
    op: '<=',
    v: 2000,
  });
  const part = (k: keyof CrashTimeline) => median(parts.map((x) => x[k]).filter((v) => Number.isFinite(v)));
  for (const [k, metric] of CRASH_ROWS) {
    const v = part(k);
    if (Number.isFinite(v)) report('crash', `  ${metric}`, v, 'ms');
  }
}

/** One crash -> resume, component by component (ms); NaN when the history lacks the event. */
interface CrashTimeline {
  workerReady: number;
  modules: number;
  connect: number;
  create: number;
  timerFired: number;
  stickyWait: number;
  taskDispatch: number;
  workflowTask: number;
  activityDispatch: number;
  activityStart: number;
}

const CRASH_ROWS: [keyof CrashTimeline, string][] = [
  ['workerReady', 'SIGKILL -> new worker polling (process start to Worker.run)'],
  ['modules', '  of which: loading modules'],
  ['connect', '  of which: connecting to Temporal'],
  ['create', '  of which: Worker.create (prebuilt bundle)'],
  ['timerFired', 'SIGKILL -> bake timer fired'],
  ['stickyWait', 'timer fired -> task off the dead sticky queue (sticky timeout)'],
  ['taskDispatch', 'task on the shared queue -> started by the new worker'],
  ['workflowTask', 'workflow task (replay of the history) started -> completed'],
  ['activityDispatch', 'activity scheduled -> started'],
  ['activityStart', 'activity started -> its first call at moto'],
];

/** Where crash -> resume goes: the new worker's start phases, then the history's events after the kill. */
function crashTimeline(events: HistoryEvent[], killedAt: number, readyAt: number, firstCall: number, phases: WorkerPhases): CrashTimeline {
  const after = events.filter((e) => eventMs(e) >= killedAt - 1);
  const fired = after.find((e) => e.timerFiredEventAttributes);
  const timedOut = after.find((e) => e.workflowTaskTimedOutEventAttributes);
  const started = after.find((e) => e.workflowTaskStartedEventAttributes);
  const scheduledOfStarted =
    started && events.find((e) => Number(e.eventId) === Number(started.workflowTaskStartedEventAttributes!.scheduledEventId));
  const completed = after.find((e) => e.workflowTaskCompletedEventAttributes);
  const actScheduled = after.find((e) => e.activityTaskScheduledEventAttributes);
  const actStarted =
    actScheduled && after.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId) === Number(actScheduled.eventId));
  const at = (e: HistoryEvent | undefined) => (e ? eventMs(e) : NaN);
  return {
    workerReady: readyAt - killedAt,
    modules: phases.importedMs,
    connect: phases.connectedMs - phases.importedMs,
    create: phases.createdMs - phases.connectedMs,
    timerFired: at(fired) - killedAt,
    // No timed-out task in the history: the sticky queue was not in the way (0).
    stickyWait: timedOut ? at(timedOut) - at(fired) : 0,
    taskDispatch: at(started) - at(scheduledOfStarted),
    workflowTask: at(completed) - at(started),
    activityDispatch: at(actStarted) - at(actScheduled),
    activityStart: firstCall - at(actStarted),
  };
}
