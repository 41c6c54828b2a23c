/**
 * Benchmark 2: breach to revert. Temporal's share of a revert (the breach against the same reverts
 * called directly, in the same run) and where its time goes (bench/revert-timeline.ts).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { createSampleFunction, regionalLambdaTargets, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { LambdaProvider } from '../src/providers/aws-lambda';
import type { TargetProvider } from '../src/providers/types';
import { startRollout } from '../src/client';
import type { CloudRunTargetSpec, LambdaTargetSpec, TargetSpec } from '../src/spec/schema';
import { abortSignal, externalVerdictSignal, messageNonceQuery, statusQuery } from '../src/contract';
import {
  QUICK,
  client,
  cloudRun,
  cloudRunProvider,
  cloudRunTargets,
  inProcessWorker,
  median,
  moto,
  pct,
  proxy,
  report,
  sleep,
  spec,
} from './common';
import { RevertLandings, revertTimeline, TIMELINE_ROWS, WorkerClock, type ProviderCall, type RevertTimeline } from './revert-timeline';

// ---- 2: breach to revert -----------------------------------------------------------------------

/** Lambda targets (a function each: the fault proxy tells them apart by function name) and Cloud Run targets, in the emulators. */
export async function revertTargets(prefix: string, lambdaCount: number, runCount: number) {
  const lambdas: LambdaTargetSpec[] = regionalLambdaTargets(prefix, lambdaCount);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs: CloudRunTargetSpec[] = runCount ? cloudRunTargets(prefix, runCount) : [];
  return { lambdas, runs, targets: [...lambdas, ...runs] as TargetSpec[] };
}

/** A rollout of `targets` mid-wave: the canary at 10 %, the other targets at 50 %, in a 1-hour bake. */
export async function midWave(prefix: string, targets: TargetSpec[], taskQueue: string) {
  const s = spec(prefix, targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
    canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
  });
  const h = await startRollout(client, s, { startedBy: 'bench', taskQueue });
  for (;;) {
    const st = await h.query(statusQuery);
    if (st.stage === 'wave:w1' && st.bakeEndsAtMs) {
      const stable = new Map(st.targets.map((t) => [t.name, t.stableVersion!]));
      const next = new Map(st.targets.map((t) => [t.name, t.newVersion!]));
      return { h, release: s.release, stable, next };
    }
    if (st.state !== 'running') throw new Error(`bench rollout ${st.state} in ${st.stage}: ${st.detail}`);
    await sleep(50);
  }
}

/** Once the rollback is over (every revert activity completed; then `onPaused`): the history, then abort the paused rollout. */
export async function historyAfterRollback(h: WorkflowHandle, onPaused = () => {}) {
  for (let k = 0; (await h.query(statusQuery)).state !== 'paused' && k < 600; k++) await sleep(50);
  onPaused();
  const events = (await h.fetchHistory()).events ?? [];
  await h.signal(abortSignal);
  await h.result();
  return events;
}

export async function benchBreach() {
  console.log(
    "2. breach to revert: Temporal's share of a revert. A rollout mid-wave (canary 10 %, the other targets at 50 %, in a bake),\n" +
      '   the breach sent as a signal; until every target took its revert in the emulators (moto answered the alias write; the\n' +
      '   fake serves 100 % on stable), then the same reverts called directly in the same run. Share = breach - direct, per run.',
  );
  await revertSet('10 Lambda', 10, 0);
  await revertSet('5 Lambda + 5 Cloud Run', 5, 5);
}

type Trips = ReturnType<RevertLandings['roundTrips']>;

async function revertSet(label: string, lambdaCount: number, runCount: number) {
  const prefix = `brc${lambdaCount}x${runCount}`;
  const { lambdas, runs, targets } = await revertTargets(prefix, lambdaCount, runCount);
  const queue = `bench-breach-${lambdaCount}x${runCount}`;
  const calls: ProviderCall[] = [];
  // Through the fault proxy, as the direct calls below: it sees when moto took each write.
  const clock = new WorkerClock();
  const stop = await inProcessWorker(queue, proxy.url, calls, clock);
  const lambda = new LambdaProvider({ endpoint: proxy.url, credentials: TEST_CREDENTIALS });
  const run = cloudRunProvider();
  const provider = (t: TargetSpec): TargetProvider<any> => (t.provider === 'cloud-run' ? run : lambda);
  const n = QUICK ? 1 : Number(process.env.BENCH_BREACH_RUNS || 20);
  const wf: number[] = [];
  const direct: number[] = [];
  const share: number[] = [];
  const directSlowest: number[] = [];
  const timelines: ReturnType<typeof revertTimeline>[] = [];
  let trips: Trips | undefined;
  let directTrips: Trips | undefined;
  try {
    for (let i = 0; i < n; i++) {
      const { h, stable, next } = await midWave(prefix, targets, queue);
      // As rollgate's scheduled analysis sends it: with the run's message nonce (read before the clock starts).
      const nonce = await h.query(messageNonceQuery);
      await sleep(200); // let the worker go idle after the queries
      calls.length = 0;
      clock.marks.length = 0;
      const landings = new RevertLandings(proxy, cloudRun, lambdas, runs, stable);
      const sentMs = Date.now();
      await h.signal(externalVerdictSignal, { verdict: 'fail', reason: 'bench breach', nonce });
      const landedMs = await landings.all();
      const events = await historyAfterRollback(h, () => (trips = landings.roundTrips()));
      await landings.confirm(moto.url);
      timelines.push(revertTimeline(events, externalVerdictSignal.name, sentMs, landings.landedMs, calls, clock));

      // The floor: back to mid-wave, then the same reverts (same writes: fence mark, tag dropped) in parallel, no Temporal.
      await Promise.all(targets.map((t) => provider(t).setTraffic(t, stable.get(t.name)!, next.get(t.name)!, t === targets[0] ? 10 : 50)));
      await sleep(200);
      const floor = new RevertLandings(proxy, cloudRun, lambdas, runs, stable);
      const fence = { chain: `bench-direct-${prefix}-${i}`, pass: 1 };
      const t1 = Date.now();
      const took = await Promise.all(
        targets.map(async (t) => {
          const c0 = Date.now();
          await provider(t).routeAll(t, stable.get(t.name)!, { dropTag: true, fence, revert: true });
          return Date.now() - c0;
        }),
      );
      const directLanded = await floor.all();
      directTrips = floor.roundTrips();
      await floor.confirm(moto.url);
      wf.push(landedMs - sentMs);
      direct.push(directLanded - t1);
      share.push(landedMs - sentMs - (directLanded - t1));
      directSlowest.push(Math.max(...took));
    }
  } finally {
    await stop();
    await run.close();
  }
  const b = 'breach';
  const L = `[${label}]`;
  report(b, `Temporal's share of a revert ${L}: p50 of (breach - direct) per run (${n} runs)`, median(share), 'ms', { op: '<=', v: 20 });
  report(b, `  ${L} share: p50(breach) - p50(direct)`, median(wf) - median(direct), 'ms');
  report(b, `  ${L} breach -> every target reverted in the emulators, p50`, median(wf), 'ms', runCount ? { op: '<=', v: 250 } : undefined);
  report(b, `  ${L} breach -> every target reverted, p95`, pct(wf, 95), 'ms');
  report(b, `  ${L} direct: the same reverts without Temporal, p50`, median(direct), 'ms');
  report(b, `  ${L} direct: slowest routeAll call, p50`, median(directSlowest), 'ms');
  report(b, `  ${L} ratio breach / direct (p50)`, median(wf) / median(direct), 'x');
  reportTimelines(b, L, timelines);
  if (trips && directTrips) reportTrips(b, L, trips, directTrips, lambdas.length, runs.length);
}

/** Where the time goes: the p50 of each component over the runs (history event times + the worker's calls + the landings). */
export function reportTimelines(bench: string, label: string, timelines: ReturnType<typeof revertTimeline>[]) {
  const part = (k: keyof RevertTimeline) => median(timelines.map((x) => x[k]).filter((v) => Number.isFinite(v)));
  for (const [k, metric, unit] of TIMELINE_ROWS) {
    const v = part(k);
    if (Number.isFinite(v)) report(bench, `  ${label} ${metric}`, v, unit);
  }
  const last = timelines[timelines.length - 1];
  console.log(`                ${label} last run: per revert, scheduled -> started (ms): ${last?.dispatchMs.join(' ')}`);
  console.log(`                ${label} last run: commands before the reverts: ${last?.publishedBefore.join(', ')}`);
}

const LAMBDA_OPS = ['GetAlias', 'UpdateAlias'];
const RUN_OPS = ['GetService', 'UpdateService', 'GetOperation'];

/** Round trips per revert to each emulator, the workflow's against the direct calls' (the last run of each). */
function reportTrips(b: string, L: string, trips: Trips, directTrips: Trips, lambdas: number, runs: number) {
  const per = (r: Record<string, number>, ks: string[], count: number) =>
    count ? ks.map((k) => `${k} ${((r[k] ?? 0) / count).toFixed(1)}`).join(', ') : '-';
  for (const [who, t] of [
    ['Temporal', trips],
    ['direct  ', directTrips],
  ] as const)
    console.log(
      `                ${L} round trips per revert, ${who}: moto ${per(t.moto, LAMBDA_OPS, lambdas)}; fake ${per(t.cloudRun, RUN_OPS, runs)}`,
    );
  const sum = (r: Record<string, number>, ks: string[]) => ks.reduce((x, k) => x + (r[k] ?? 0), 0);
  if (lambdas) report(b, `  ${L} moto round trips per Lambda revert (Get + Update)`, sum(trips.moto, LAMBDA_OPS) / lambdas, '');
  if (runs) report(b, `  ${L} fake round trips per Cloud Run revert`, sum(trips.cloudRun, RUN_OPS) / runs, '');
}
