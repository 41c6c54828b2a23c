/** Benchmark 2: breach to revert, and the revert phases read from the history (shared with the alert benchmark). */
import { performance } from 'node:perf_hooks';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { createSampleFunction, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { LambdaProvider } from '../src/providers/aws-lambda';
import type { TargetProvider } from '../src/providers/types';
import { startRollout } from '../src/client';
import type { CloudRunTargetSpec, LambdaTargetSpec, TargetSpec } from '../src/spec/schema';
import { abortSignal, externalVerdictSignal, messageNonceQuery, statusQuery } from '../src/contract';
import { aliasOf } from './support';
import {
  type HistoryEvent,
  QUICK,
  client,
  cloudRun,
  cloudRunProvider,
  cloudRunTargets,
  eventMs,
  inProcessWorker,
  lambdaTargets,
  median,
  moto,
  pct,
  report,
  sleep,
  spec,
} from './common';

// ---- 2: breach to revert -----------------------------------------------------------------------

export async function benchBreach() {
  console.log(
    '2. breach to revert (10 targets = 5 Lambda in moto + 5 Cloud Run in the fake, mid-wave; breach delivered as a signal;\n' +
      '   until every target is 100 % on stable as seen by moto and the fake; then the same 10 reverts without Temporal)',
  );
  const lambdas = lambdaTargets('brc', 1, 5);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs5 = cloudRunTargets('brc', 5);
  const targets: TargetSpec[] = [...lambdas, ...runs5];
  const stop = await inProcessWorker('bench-breach', moto.url);
  // For the direct comparison: the same providers, configured as the worker's, called from this process.
  const lambda = new LambdaProvider({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const run = cloudRunProvider();
  const provider = (t: TargetSpec): TargetProvider<any> => (t.provider === 'cloud-run' ? run : lambda);
  const runs = QUICK ? 2 : 20;
  const wf: RevertTimes[] = [];
  const direct: RevertTimes[] = [];
  const phases: BreachPhases[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const s = spec('brc', targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
        canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
      });
      const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-breach' });
      for (;;) {
        const st = await h.query(statusQuery);
        if (st.stage === 'wave:w1' && st.bakeEndsAtMs) break;
        await sleep(50);
      }
      const status = await h.query(statusQuery);
      const stable = new Map(status.targets.map((t) => [t.name, t.stableVersion!]));
      const next = new Map(status.targets.map((t) => [t.name, t.newVersion!]));
      // As rollgate's scheduled analysis sends it: with the run's message nonce (read before the clock starts).
      const nonce = await h.query(messageNonceQuery);
      const t0 = performance.now();
      const t0Wall = Date.now();
      await h.signal(externalVerdictSignal, { verdict: 'fail', reason: 'bench breach', nonce });
      const times = await waitAllStable(lambdas, runs5, stable, t0);
      wf.push(times);
      // The fake serves the reverted split before the Cloud Run activity has seen it and returned:
      // read the history once the rollback is over, so every revert activity has completed.
      for (let k = 0; (await h.query(statusQuery)).state !== 'paused' && k < 600; k++) await sleep(50);
      phases.push(breachPhases((await h.fetchHistory()).events ?? [], t0Wall, t0Wall + times.all));
      await h.signal(abortSignal);
      await h.result();

      // The floor: back to mid-wave with the providers, then the same 10 reverts in parallel, no Temporal.
      await Promise.all(targets.map((t) => provider(t).setTraffic(t, stable.get(t.name)!, next.get(t.name)!, t === targets[0] ? 10 : 50)));
      const t1 = performance.now();
      const done = await Promise.all(
        targets.map(async (t) => {
          await provider(t).routeAll(t, stable.get(t.name)!, { dropTag: true });
          return [t.provider, performance.now() - t1] as const;
        }),
      );
      const seen = await waitAllStable(lambdas, runs5, stable, t1);
      const callsDone = (kind: TargetSpec['provider']) => Math.max(...done.filter(([k]) => k === kind).map(([, ms]) => ms));
      // all: until seen in the emulators, like the workflow's; per cloud: until that cloud's calls returned.
      direct.push({ all: seen.all, lambda: callsDone('aws-lambda'), run: callsDone('cloud-run') });
    }
  } finally {
    await stop();
    await run.close();
  }
  const p50 = (xs: RevertTimes[], k: keyof RevertTimes) => median(xs.map((x) => x[k]));
  report('breach', `breach -> all 10 reverted, p50 (${wf.length} runs)`, p50(wf, 'all'), 'ms', { op: '<=', v: 250 });
  report(
    'breach',
    'breach -> all 10 reverted, p95',
    pct(
      wf.map((x) => x.all),
      95,
    ),
    'ms',
  );
  report('breach', 'breach -> 5 Lambda reverted (moto), p50', p50(wf, 'lambda'), 'ms');
  report('breach', 'breach -> 5 Cloud Run reverted (fake), p50', p50(wf, 'run'), 'ms');
  report('breach', 'direct: same 10 reverts, no Temporal, p50', p50(direct, 'all'), 'ms');
  report('breach', 'direct: 5 Lambda routeAll calls returned, p50', p50(direct, 'lambda'), 'ms');
  report('breach', 'direct: 5 Cloud Run routeAll calls returned, p50', p50(direct, 'run'), 'ms');
  report('breach', 'ratio workflow / direct (p50)', p50(wf, 'all') / p50(direct, 'all'), 'x');
  // Where the time goes (p50 of each phase, from the workflow history's server timestamps).
  const phase = (k: keyof BreachPhases) => median(phases.map((x) => x[k]).filter((v) => Number.isFinite(v)));
  const phaseRow = (metric: string, k: keyof BreachPhases) => {
    const v = phase(k);
    if (Number.isFinite(v)) report('breach', metric, v, 'ms');
    else console.log(`  ${'breach'.padEnd(10)} ${metric.padEnd(50)} (not in the histories)`);
  };
  phaseRow('  signal sent -> signal in history', 'signalled');
  phaseRow('  signal -> reacting workflow task started', 'taskStarted');
  phaseRow('  task started -> revert activities scheduled', 'scheduled');
  phaseRow('  activities scheduled -> last one started', 'started');
  phaseRow('  Lambda revert activity (routeAll), slowest', 'lambdaActivity');
  phaseRow('  Cloud Run revert activity (routeAll), slowest', 'runActivity');
  phaseRow('  last revert activity completed -> seen in emulators', 'seen');
}

export interface RevertTimes {
  all: number;
  lambda: number;
  run: number;
}

/** Poll moto and the Cloud Run fake until every target serves 100 % on its stable version; ms since t0. */
export async function waitAllStable(
  lambdas: LambdaTargetSpec[],
  runs: CloudRunTargetSpec[],
  stable: Map<string, string>,
  t0: number,
): Promise<RevertTimes> {
  const lambdaBack = Array.from({ length: lambdas.length }, () => 0);
  const runBack = Array.from({ length: runs.length }, () => 0);
  for (;;) {
    const states = await Promise.all(lambdas.map((t) => aliasOf(moto.url, t)));
    const at = performance.now() - t0;
    states.forEach((a, j) => {
      if (!lambdaBack[j] && a.version === stable.get(lambdas[j].name) && Object.keys(a.weights).length === 0) lambdaBack[j] = at;
    });
    runs.forEach((t, j) => {
      const split = cloudRun.servedSplit(t.project, t.region, t.service);
      const keys = Object.keys(split);
      if (!runBack[j] && keys.length === 1 && keys[0] === stable.get(t.name) && split[keys[0]] === 100) runBack[j] = at;
    });
    if (lambdaBack.every(Boolean) && runBack.every(Boolean)) break;
    if (performance.now() - t0 > 120_000) throw new Error('targets not back on stable after 120 s');
    await sleep(5); // leave moto (one Python process) to the worker's calls between polls
  }
  return { all: Math.max(...lambdaBack, ...runBack), lambda: Math.max(...lambdaBack), run: Math.max(...runBack) };
}

export interface BreachPhases {
  signalled: number;
  taskStarted: number;
  scheduled: number;
  started: number;
  lambdaActivity: number;
  runActivity: number;
  seen: number;
}

/**
 * Phases of one breach, from the history's (server) event times and the bench's wall clock (same
 * machine): signal → history, → the workflow task that reacts, → revert activities scheduled, →
 * started (dispatch), each provider's slowest activity, last completion → state seen in emulators.
 */
export function breachPhases(events: HistoryEvent[], sentMs: number, seenMs: number): BreachPhases {
  const at = eventMs;
  const out: BreachPhases = {
    signalled: NaN,
    taskStarted: NaN,
    scheduled: NaN,
    started: NaN,
    lambdaActivity: NaN,
    runActivity: NaN,
    seen: NaN,
  };
  const sig = events.find((e) => e.workflowExecutionSignaledEventAttributes?.signalName === externalVerdictSignal.name);
  if (!sig) return out;
  const sigMs = at(sig);
  const after = events.filter((e) => Number(e.eventId) > Number(sig.eventId));
  const task = after.find((e) => e.workflowTaskStartedEventAttributes);
  const scheduled = after.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'routeAll');
  if (!task || !scheduled.length) return out;
  const ids = new Set(scheduled.map((e) => Number(e.eventId)));
  const startedEv = after.filter((e) => ids.has(Number(e.activityTaskStartedEventAttributes?.scheduledEventId)));
  const completed = after.filter((e) => ids.has(Number(e.activityTaskCompletedEventAttributes?.scheduledEventId)));
  const provider = (schedId: number) => {
    const input = events.find((e) => Number(e.eventId) === schedId)?.activityTaskScheduledEventAttributes?.input?.payloads?.[0];
    const arg = input ? (defaultPayloadConverter.fromPayload(input as Payload) as { target: TargetSpec }) : undefined;
    return arg?.target.provider;
  };
  const slowest = (kind: TargetSpec['provider']) =>
    Math.max(
      ...completed
        .filter((c) => provider(Number(c.activityTaskCompletedEventAttributes!.scheduledEventId)) === kind)
        .map((c) => {
          const sid = Number(c.activityTaskCompletedEventAttributes!.scheduledEventId);
          const st = startedEv.find((e) => Number(e.activityTaskStartedEventAttributes!.scheduledEventId) === sid);
          return st ? at(c) - at(st) : NaN;
        }),
    );
  out.signalled = sigMs - sentMs;
  out.taskStarted = at(task) - sigMs;
  out.scheduled = at(scheduled[0]) - at(task);
  out.started = Math.max(...startedEv.map(at)) - at(scheduled[0]);
  out.lambdaActivity = slowest('aws-lambda');
  out.runActivity = slowest('cloud-run');
  out.seen = seenMs - Math.max(...completed.map(at));
  return out;
}
