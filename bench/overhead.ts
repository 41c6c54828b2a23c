/** Benchmarks 1 and 4: orchestration overhead against a plain script of the same calls, and the history of one reference rollout. */
import { performance } from 'node:perf_hooks';
import { createSampleFunction, regionalLambdaTargets, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudRunProvider } from '../src/providers/cloud-run';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import type { TargetProvider } from '../src/providers/types';
import type { MetricProvider } from '../src/analysis/types';
import { startRollout } from '../src/client';
import type { RolloutSpec, TargetSpec } from '../src/spec/schema';
import type { ArtifactRef } from '../src/providers/types';
import { type RolloutResult } from '../src/contract';
import {
  QUICK,
  client,
  cloudRunProvider,
  cloudRunTargets,
  createDigest,
  inProcessWorker,
  median,
  monitoring,
  moto,
  report,
  spec,
} from './common';
import { eventMs, type HistoryEvent } from './history-events';

// ---- 1 + 4: orchestration overhead, history size ---------------------------------------------

export async function benchOverhead() {
  console.log(
    '1. orchestration overhead (reference rollout: 2 providers x 3 regions = 3 Lambda in moto + 3 Cloud Run in the fake,\n' +
      '   canary + 3 waves x 3 steps, bakes 0, analysis on)',
  );
  const lambdas = regionalLambdaTargets('ref', 3);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs3 = cloudRunTargets('ref', 3);
  const targets: TargetSpec[] = [...lambdas, ...runs3];
  // Canary on Lambda us-east-1; waves mix both clouds: [Lambda eu-west-1, Cloud Run europe-west1],
  // [Lambda ap-southeast-2, Cloud Run us-central1], [Cloud Run asia-northeast1].
  const waves = [[lambdas[1].name, runs3[0].name], [lambdas[2].name, runs3[1].name], [runs3[2].name]];
  const steps = [10, 50, 100];
  const stop = await inProcessWorker('bench-overhead', moto.url);
  const runs = QUICK ? 1 : 5;
  const wf: number[] = [];
  const script: number[] = [];
  const profiles: HistoryProfile[] = [];
  let events = 0;
  // Transitions: 8 stages + 1 canary step + 9 wave steps.
  const transitions = 8 + 1 + waves.length * steps.length;
  try {
    // warm-up (bundle load, connections)
    await (
      await startRollout(client, spec('ref', targets, waves, steps, '0 seconds'), { startedBy: 'bench', taskQueue: 'bench-overhead' })
    ).result();
    for (let i = 0; i < runs; i++) {
      const s1 = spec('ref', targets, waves, steps, '0 seconds');
      const t0 = performance.now();
      const h = await startRollout(client, s1, { startedBy: 'bench', taskQueue: 'bench-overhead' });
      const res = (await h.result()) as RolloutResult;
      wf.push(performance.now() - t0);
      if (res.state !== 'succeeded') throw new Error(`reference rollout ${res.state}: ${res.reason}`);
      const history = (await h.fetchHistory()).events!;
      events = history.length;
      profiles.push(historyProfile(history));
      const s2 = spec('ref', targets, waves, steps, '0 seconds');
      const t1 = performance.now();
      await plainScript(s2, waves, steps);
      script.push(performance.now() - t1);
    }
  } finally {
    await stop();
  }
  const w = median(wf);
  const s = median(script);
  report('overhead', 'rollout on Temporal (median)', w, 'ms');
  report('overhead', 'plain script, same calls (median)', s, 'ms');
  report('overhead', 'ratio Temporal / script', w / s, 'x', { op: '<=', v: 2 });
  report('overhead', `overhead per stage transition (${transitions})`, Math.max(0, w - s) / transitions, 'ms', { op: '<=', v: 20 });
  // Where the workflow's time goes (p50 over the runs, from the history's server timestamps).
  const prof = (k: Exclude<keyof HistoryProfile, 'kinds'>) => median(profiles.map((x) => x[k]));
  report('overhead', '  history: first event -> completed', prof('totalMs'), 'ms');
  report('overhead', '  time with >= 1 activity in flight', prof('busyMs'), 'ms');
  report('overhead', '  time with no activity in flight (gaps)', prof('idleMs'), 'ms');
  report('overhead', '  activities per rollout', prof('activities'), '');
  report('overhead', '  activity dispatch p50 (scheduled -> started)', prof('dispatchP50'), 'ms');
  report('overhead', '  workflow tasks per rollout', prof('workflowTasks'), '');
  report('overhead', '  workflow task p50 (scheduled -> completed)', prof('wftP50'), 'ms');
  report('overhead', '  workflow tasks, total (scheduled -> completed)', prof('wftTotalMs'), 'ms');
  report('overhead', '  timers started per rollout', prof('timers'), '');
  const kinds = profiles[profiles.length - 1]?.kinds ?? {};
  console.log(
    `             activities by type: ${Object.entries(kinds)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  );
  report('history', 'events per reference rollout', events, 'events', { op: '<=', v: 400 });
}

interface HistoryProfile {
  totalMs: number;
  busyMs: number;
  idleMs: number;
  activities: number;
  dispatchP50: number;
  workflowTasks: number;
  wftP50: number;
  wftTotalMs: number;
  timers: number;
  /** Activity type -> count, and markers (local activities, side effects) as "marker". */
  kinds: Record<string, number>;
}

/**
 * Orchestration vs provider time in one rollout's history: the union of activity intervals
 * (started -> closed) is provider time; the rest of the wall time (workflow tasks, dispatch, timers
 * of 0 s) is what Temporal adds on the critical path.
 */
function historyProfile(events: HistoryEvent[]): HistoryProfile {
  const byId = new Map(events.map((e) => [Number(e.eventId), e]));
  const intervals: [number, number][] = [];
  const dispatch: number[] = [];
  for (const e of events) {
    const a =
      e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? undefined;
    if (!a) continue;
    const started = byId.get(Number(a.startedEventId));
    const scheduled = byId.get(Number(a.scheduledEventId));
    if (!started || !scheduled) continue;
    intervals.push([eventMs(started), eventMs(e)]);
    dispatch.push(eventMs(started) - eventMs(scheduled));
  }
  intervals.sort((x, y) => x[0] - y[0]);
  let busy = 0;
  let cur: [number, number] | undefined;
  for (const iv of intervals) {
    if (cur && iv[0] <= cur[1]) cur[1] = Math.max(cur[1], iv[1]);
    else {
      if (cur) busy += cur[1] - cur[0];
      cur = [...iv];
    }
  }
  if (cur) busy += cur[1] - cur[0];
  const wft: number[] = [];
  for (const e of events) {
    const c = e.workflowTaskCompletedEventAttributes;
    const scheduled = c && byId.get(Number(c.scheduledEventId));
    if (scheduled) wft.push(eventMs(e) - eventMs(scheduled));
  }
  const total = eventMs(events[events.length - 1]) - eventMs(events[0]);
  const kinds: Record<string, number> = {};
  for (const e of events) {
    const k = e.activityTaskScheduledEventAttributes?.activityType?.name ?? (e.markerRecordedEventAttributes ? 'marker' : undefined);
    if (k) kinds[k] = (kinds[k] ?? 0) + 1;
  }
  return {
    totalMs: total,
    busyMs: busy,
    idleMs: total - busy,
    activities: intervals.length,
    dispatchP50: median(dispatch),
    workflowTasks: wft.length,
    wftP50: median(wft),
    wftTotalMs: wft.reduce((x, y) => x + y, 0),
    timers: events.filter((e) => e.timerStartedEventAttributes).length,
    kinds,
  };
}

/**
 * The same provider calls as the workflow, in the same order and parallelism, without Temporal:
 * LambdaProvider + CloudWatchMetrics against moto, CloudRunProvider + CloudMonitoringMetrics against
 * the fakes, each configured as the worker's.
 */
async function plainScript(s: RolloutSpec, waves: string[][], steps: number[]) {
  const lambda = new LambdaProvider({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const run = cloudRunProvider();
  const cw = new CloudWatchMetrics({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const mon = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  try {
    await plainRollout(s, waves, steps, lambda, run, cw, mon);
  } finally {
    await run.close();
    await mon.close();
  }
}

async function plainRollout(
  s: RolloutSpec,
  waves: string[][],
  steps: number[],
  lambda: LambdaProvider,
  run: CloudRunProvider,
  cw: MetricProvider,
  mon: MetricProvider,
) {
  const provider = (t: TargetSpec): TargetProvider<any> => (t.provider === 'cloud-run' ? run : lambda);
  const metrics = (t: TargetSpec): MetricProvider => (t.provider === 'cloud-run' ? mon : cw);
  const targets = s.targets;
  const byName = new Map(targets.map((t) => [t.name, t]));
  const artifact: ArtifactRef = { digest: createDigest(s.artifact.file!), path: s.artifact.file, image: s.artifact.image };
  const contract = { RELEASE_ID: s.release, SCHEMA_REV: s.schema_rev };
  const stable = new Map<string, string>();
  const next = new Map<string, string>();
  await Promise.all(
    targets.map(async (t) => {
      const p = provider(t);
      stable.set(t.name, (await p.readTraffic(t)).stableVersion);
      next.set(t.name, (await p.deployRevision(t, artifact, contract, 'script')).newVersion);
    }),
  );
  await Promise.all(
    targets.map(async (t) => {
      const p = provider(t);
      for (const probe of s.probes) await p.probe(t, next.get(t.name)!, probe);
      await Promise.all([p.fingerprint(t, stable.get(t.name)!, 'k'), p.fingerprint(t, next.get(t.name)!, 'k')]);
    }),
  );
  for (const t of targets) await metrics(t).preflight(t, stable.get(t.name)!);
  const step = async (names: string[], percent: number) => {
    await Promise.all(names.map((n) => provider(byName.get(n)!).setTraffic(byName.get(n)!, stable.get(n)!, next.get(n)!, percent)));
    const now = Date.now();
    await Promise.all(
      names.map((n) =>
        metrics(byName.get(n)!).collect({
          target: byName.get(n)!,
          canaryVersion: next.get(n)!,
          baselineVersion: stable.get(n)!,
          startMs: now - 1000,
          endMs: now + 60_000,
        }),
      ),
    );
  };
  await step([targets[0].name], s.canary.weight);
  for (const w of waves) for (const pc of steps) await step(w, pc);
  await Promise.all(
    targets.map(async (t) => {
      await provider(t).routeAll(t, next.get(t.name)!);
      await provider(t).recordRelease(t, next.get(t.name)!, s.release, artifact.digest);
    }),
  );
}
