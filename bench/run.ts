/**
 * rollgate benchmarks on the local dev server and emulators. Prints a table and writes JSON.
 *
 *   npm run bench                  # everything, full sizes (several minutes)
 *   npm run bench -- --quick       # tiny sizes (the smoke run in the test suite)
 *   npm run bench -- --only overhead,breach --out /tmp/b.json
 *   npm run bench -- --only alert    # alert to revert (Alertmanager webhook POST -> 10 targets on stable)
 *
 * Numbers on shared machines are noisy: medians over repeated runs; every comparison is a ratio
 * measured in the same run.
 *
 * Benchmarks 1, 2 and 4 are cross-cloud: Lambda targets in moto and Cloud Run targets in rollgate's
 * dev/test fakes of the Cloud Run Admin API and Cloud Monitoring (src/dev/, in this process). The
 * fake completes an operation on its first GetOperation poll (operationPolls = 1), so every Cloud
 * Run change costs at least one provider poll interval (CLOUD_RUN_POLL_MS) on top of the calls.
 * To see how much of a number that is: BENCH_CLOUD_RUN_POLL_MS=N (provider's first poll pause, ms)
 * and BENCH_CLOUD_RUN_OPERATION_POLLS=0 (the fake returns finished operations: no poll pause at all).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { startMoto, startTemporalDevServer, type DevServer, type MotoServer } from '../src/dev/processes';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { FaultProxy } from '../src/dev/fault-proxy';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudRunProvider } from '../src/providers/cloud-run';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import type { TargetProvider } from '../src/providers/types';
import type { MetricProvider } from '../src/analysis/types';
import { createRollgateWorker, STICKY_QUEUE_TIMEOUT_MS } from '../src/worker';
import { createRunnerWorker } from '../src/runner';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, TargetSpec } from '../src/spec/schema';
import type { ArtifactRef } from '../src/providers/types';
import {
  abortSignal,
  externalVerdictSignal,
  messageNonceQuery,
  pauseSignal,
  statusQuery,
  type RolloutResult,
} from '../src/workflows/messages';
import { aliasOf } from './support';
import { eventMs, type HistoryEvent } from './history-events';
import { stickyBurst, type StickyBurst } from './sticky-burst';
import { RevertLandings, revertTimeline, timedProviders, type ProviderCall, type RevertTimeline } from './revert-timeline';
import { startAlertReceiver } from '../src/alerts/receiver';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const ONLY = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : undefined;
const OUT = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : join(__dirname, 'results', QUICK ? 'quick.json' : 'latest.json');
const ROOT = resolve(__dirname, '..');
const STATE = join(ROOT, '.state', 'bench');
/** Cloud Run provider: first pause between operation / status polls, and the largest (ms). Same as the test harness. */
const CLOUD_RUN_POLL_MS = Number(process.env.BENCH_CLOUD_RUN_POLL_MS || 100);
const CLOUD_RUN_MAX_POLL_MS = 500;
const GCP_PROJECT = 'bench-project';
const LOAD_AT_START = loadavg().map((x) => Math.round(x * 100) / 100);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}
const rows: Row[] = [];
function report(bench: string, metric: string, value: number, unit: string, target?: { op: '<=' | '>='; v: number }) {
  const ok = target ? (target.op === '<=' ? value <= target.v : value >= target.v) : undefined;
  rows.push({ bench, metric, value: Math.round(value * 100) / 100, unit, target: target ? `${target.op} ${target.v}` : undefined, ok });
  console.log(
    `  ${bench.padEnd(10)} ${metric.padEnd(50)} ${String(Math.round(value * 100) / 100).padStart(10)} ${unit.padEnd(6)} ${target ? `${target.op} ${target.v} ${ok ? 'ok' : 'MISSED'}` : ''}`,
  );
}

let temporal: DevServer;
let moto: MotoServer;
let proxy: FaultProxy;
let cloudRun: CloudRunFake;
let monitoring: CloudMonitoringFake;
let client: Client;
let nativeConnection: NativeConnection;
let bundlePath: string;

const REGIONS = [
  'us-east-1',
  'eu-west-1',
  'ap-southeast-2',
  'us-west-2',
  'eu-central-1',
  'ap-northeast-1',
  'sa-east-1',
  'ca-central-1',
  'eu-north-1',
  'ap-south-1',
];

const RUN_REGIONS = ['europe-west1', 'us-central1', 'asia-northeast1', 'europe-north1', 'us-east4', 'australia-southeast1'];

function lambdaTargets(prefix: string, functions: number, regions: number): LambdaTargetSpec[] {
  const out: LambdaTargetSpec[] = [];
  for (let f = 0; f < functions; f++)
    for (const region of REGIONS.slice(0, regions))
      out.push({
        name: `${prefix}${f}-${region}`.slice(0, 63),
        provider: 'aws-lambda',
        region,
        function: `${prefix}${f}-fn`,
        alias: 'live',
      });
  return out;
}

/** One Cloud Run service per region, seeded in the fake at one ready revision serving 100 %. */
function cloudRunTargets(prefix: string, regions: number): CloudRunTargetSpec[] {
  const out = RUN_REGIONS.slice(0, regions).map((region) => ({
    name: `${prefix}-run-${region}`.slice(0, 63),
    provider: 'cloud-run' as const,
    project: GCP_PROJECT,
    region,
    service: `${prefix}-svc`,
  }));
  for (const t of out)
    cloudRun.seedService({
      project: t.project,
      region: t.region,
      service: t.service,
      image: imageFor(t.service, 'seed'),
      env: { RELEASE_ID: 'seed', SCHEMA_REV: '1', LOG_LEVEL: 'info' },
      secretEnv: { DB_PASSWORD: ['db-password', '1'] },
    });
  return out;
}

function imageFor(service: string, release: string): string {
  return `europe-docker.pkg.dev/${GCP_PROJECT}/apps/${service}@sha256:${createHash('sha256').update(`${service}:${release}`).digest('hex')}`;
}

function cloudRunProvider(): CloudRunProvider {
  return new CloudRunProvider({
    endpoint: cloudRun.address,
    probeUrlRewrite: (u) => cloudRun.loopbackUrl(u),
    pollIntervalMs: CLOUD_RUN_POLL_MS,
    maxPollIntervalMs: CLOUD_RUN_MAX_POLL_MS,
    operationTimeoutMs: 60_000,
  });
}

let releaseCounter = 0;
function spec(
  service: string,
  targets: TargetSpec[],
  waves: string[][],
  steps: number[],
  bake: string,
  over: Record<string, unknown> = {},
): RolloutSpec {
  const release = `b${++releaseCounter}`;
  const zip = join(STATE, `${service}-${release}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${release}`));
  return validateSpec({
    service,
    release,
    schema_rev: '1',
    artifact: { file: zip, ...(targets.some((t) => t.provider === 'cloud-run') ? { image: imageFor(`${service}-svc`, release) } : {}) },
    targets,
    probes: [{ name: 'health', payload: { ping: 1 }, path: '/ping' }],
    canary: { targets: [targets[0].name], weight: 10, bake },
    waves: waves.map((ts, i) => ({ name: `w${i + 1}`, targets: ts, steps, bake })),
    rollback: { min_requests: 0, on_no_data: 'pass' },
    ...over,
  });
}

/** A worker in this process with both clouds: Lambda + CloudWatch at `endpoint`, Cloud Run + Cloud Monitoring in the fakes. */
async function inProcessWorker(taskQueue: string, endpoint: string, calls?: ProviderCall[]) {
  const run = cloudRunProvider();
  const mon = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  const providers = { 'aws-lambda': new LambdaProvider({ endpoint, credentials: TEST_CREDENTIALS }), 'cloud-run': run };
  const worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundlePath: bundlePath,
    deps: {
      providers: calls ? timedProviders(providers, calls) : providers,
      metrics: [new CloudWatchMetrics({ endpoint, credentials: TEST_CREDENTIALS }), mon],
      stateDir: STATE,
      hashKey: 'bench',
      client,
    },
  });
  const running = worker.run();
  return async () => {
    worker.shutdown();
    await running;
    await run.close();
    await mon.close();
  };
}

// ---- 1 + 4: orchestration overhead, history size ---------------------------------------------

async function benchOverhead() {
  console.log(
    '1. orchestration overhead (reference rollout: 2 providers x 3 regions = 3 Lambda in moto + 3 Cloud Run in the fake,\n' +
      '   canary + 3 waves x 3 steps, bakes 0, analysis on)',
  );
  const lambdas = lambdaTargets('ref', 1, 3);
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

function createDigest(path: string) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

// ---- 2: breach to revert -----------------------------------------------------------------------

/** Lambda targets with a function of their own each (the fault proxy sees function names, not regions). */
function ownLambdaTargets(prefix: string, n: number): LambdaTargetSpec[] {
  return REGIONS.slice(0, n).map((region) => ({
    name: `${prefix}-${region}`,
    provider: 'aws-lambda' as const,
    region,
    function: `${prefix}-${region}-fn`,
    alias: 'live',
  }));
}

async function benchBreach() {
  console.log(
    "2. breach to revert: Temporal's share of a revert. A rollout mid-wave (canary 10 %, the other targets at 50 %, in a bake),\n" +
      '   the breach sent as a signal; until every target took its revert in the emulators (moto answered the alias write; the\n' +
      '   fake serves 100 % on stable), then the same reverts called directly in the same run. Share = breach - direct, per run.',
  );
  const sets: [string, number, number][] = [
    ['10 Lambda', 10, 0],
    ['5 Lambda + 5 Cloud Run', 5, 5],
  ];
  for (const [label, lambdaCount, runCount] of sets) await revertSet(label, lambdaCount, runCount);
}

async function revertSet(label: string, lambdaCount: number, runCount: number) {
  const prefix = `brc${lambdaCount}x${runCount}`;
  const lambdas = ownLambdaTargets(prefix, lambdaCount);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs = runCount ? cloudRunTargets(prefix, runCount) : [];
  const targets: TargetSpec[] = [...lambdas, ...runs];
  const queue = `bench-breach-${lambdaCount}x${runCount}`;
  const calls: ProviderCall[] = [];
  // Through the fault proxy, as the direct calls below: it sees when moto took each write.
  const stop = await inProcessWorker(queue, proxy.url, calls);
  const lambda = new LambdaProvider({ endpoint: proxy.url, credentials: TEST_CREDENTIALS });
  const run = cloudRunProvider();
  const provider = (t: TargetSpec): TargetProvider<any> => (t.provider === 'cloud-run' ? run : lambda);
  const n = QUICK ? 2 : Number(process.env.BENCH_BREACH_RUNS || 20);
  const wf: number[] = [];
  const direct: number[] = [];
  const share: number[] = [];
  const directSlowest: number[] = [];
  const timelines: RevertTimeline[] = [];
  let trips: ReturnType<RevertLandings['roundTrips']> | undefined;
  let directTrips: ReturnType<RevertLandings['roundTrips']> | undefined;
  try {
    for (let i = 0; i < n; i++) {
      const s = spec(prefix, targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
        canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
      });
      const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: queue });
      for (;;) {
        const st = await h.query(statusQuery);
        if (st.stage === 'wave:w1' && st.bakeEndsAtMs) break;
        if (st.state !== 'running') throw new Error(`bench rollout ${st.state} in ${st.stage}: ${st.detail}`);
        await sleep(50);
      }
      const status = await h.query(statusQuery);
      const stable = new Map(status.targets.map((t) => [t.name, t.stableVersion!]));
      const next = new Map(status.targets.map((t) => [t.name, t.newVersion!]));
      // As rollgate's scheduled analysis sends it: with the run's message nonce (read before the clock starts).
      const nonce = await h.query(messageNonceQuery);
      await sleep(200); // let the worker go idle after the queries
      const landings = new RevertLandings(proxy, cloudRun, lambdas, runs, stable);
      const sentMs = Date.now();
      await h.signal(externalVerdictSignal, { verdict: 'fail', reason: 'bench breach', nonce });
      const landedMs = await landings.all();
      for (let k = 0; (await h.query(statusQuery)).state !== 'paused' && k < 600; k++) await sleep(50);
      await landings.stop();
      trips = landings.roundTrips();
      await confirmStable(lambdas, runs, stable);
      const events = (await h.fetchHistory()).events ?? [];
      timelines.push(revertTimeline(events, externalVerdictSignal.name, sentMs, landedMs, calls));
      calls.length = 0;
      await h.signal(abortSignal);
      await h.result();

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
      await floor.stop();
      directTrips = floor.roundTrips();
      await confirmStable(lambdas, runs, stable);
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
  // Where the time goes (p50 of each component over the runs; history event times + the worker's calls).
  const part = (k: Exclude<keyof RevertTimeline, 'dispatchMs'>) => median(timelines.map((x) => x[k]).filter((v) => Number.isFinite(v)));
  const parts: [string, Exclude<keyof RevertTimeline, 'dispatchMs'>, string][] = [
    ['signal sent -> signal in history (signal RPC)', 'signalRpc', 'ms'],
    ['signal -> reacting workflow task started (task dispatch)', 'taskDispatch', 'ms'],
    ['workflow task started -> completed (reverts scheduled)', 'workflowTask', 'ms'],
    ['workflow tasks from the signal to the reverts', 'tasksUntilReverts', ''],
    ['commands before the first revert in that task', 'commandsBeforeReverts', ''],
    ['reverts scheduled -> last one started (activity dispatch)', 'activityDispatchLast', 'ms'],
    ['reverts started in the task response (eager)', 'eagerStarts', ''],
    ['activity started -> provider call began in worker, slowest', 'activityStartLast', 'ms'],
    ['provider call (routeAll) in the worker, slowest', 'providerCallSlowest', 'ms'],
    ['last revert completed -> workflow task done (completion back)', 'completionBack', 'ms'],
    ['history length at the breach', 'historyAtSignal', 'events'],
  ];
  for (const [metric, k, unit] of parts) {
    const v = part(k);
    if (Number.isFinite(v)) report(b, `  ${L} ${metric}`, v, unit);
  }
  console.log(
    `             ${L} per revert, scheduled -> started (ms), last run: ${timelines[timelines.length - 1]?.dispatchMs.join(' ')}`,
  );
  const perTarget = (r: Record<string, number> | undefined, ks: string[], count: number) =>
    count ? ks.map((k) => `${k} ${((r?.[k] ?? 0) / count).toFixed(1)}`).join(', ') : '';
  if (trips && directTrips) {
    console.log(
      `             ${L} round trips per revert, Temporal: moto ${perTarget(trips.moto, ['GetAlias', 'UpdateAlias'], lambdas.length)}; ` +
        `fake ${perTarget(trips.cloudRun, ['GetService', 'UpdateService', 'GetOperation'], runs.length)}`,
    );
    console.log(
      `             ${L} round trips per revert, direct:   moto ${perTarget(directTrips.moto, ['GetAlias', 'UpdateAlias'], lambdas.length)}; ` +
        `fake ${perTarget(directTrips.cloudRun, ['GetService', 'UpdateService', 'GetOperation'], runs.length)}`,
    );
    if (lambdas.length)
      report(
        b,
        `  ${L} moto round trips per Lambda revert (Get + Update)`,
        ((trips.moto.GetAlias ?? 0) + (trips.moto.UpdateAlias ?? 0)) / lambdas.length,
        '',
      );
    if (runs.length)
      report(
        b,
        `  ${L} fake round trips per Cloud Run revert`,
        ['GetService', 'UpdateService', 'GetOperation'].reduce((x, k) => x + (trips!.cloudRun[k] ?? 0), 0) / runs.length,
        '',
      );
  }
}

/** Every target 100 % on its stable version, read from moto and the fake (the ground truth for "reverted"). */
async function confirmStable(lambdas: LambdaTargetSpec[], runs: CloudRunTargetSpec[], stable: Map<string, string>) {
  for (const t of lambdas) {
    const a = await aliasOf(moto.url, t);
    if (a.version !== stable.get(t.name) || Object.keys(a.weights).length)
      throw new Error(`${t.name}: alias serves ${a.version} ${JSON.stringify(a.weights)}, not ${stable.get(t.name)}`);
  }
  for (const t of runs) {
    const split = cloudRun.servedSplit(t.project, t.region, t.service);
    if (split[stable.get(t.name)!] !== 100) throw new Error(`${t.name}: serves ${JSON.stringify(split)}, not 100 % ${stable.get(t.name)}`);
  }
}

// ---- 2b: alert to revert ------------------------------------------------------------------------

/**
 * The same mid-wave rollout over 10 targets as benchmark 2, but the breach arrives as an
 * Alertmanager webhook POST (documented payload version 4, bearer token) to the alert receiver in
 * this process, which reads the rollout and sends the failing verdict: from the POST to every
 * target 100 % on stable in moto and the fake.
 */
async function benchAlert() {
  console.log(
    '2b. alert to revert (10 targets = 5 Lambda in moto + 5 Cloud Run in the fake, mid-wave; breach delivered as an\n' +
      '    Alertmanager webhook POST to the alert receiver; until every target is 100 % on stable as seen by moto and the fake)',
  );
  const lambdas = lambdaTargets('alr', 1, 5);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs5 = cloudRunTargets('alr', 5);
  const targets: TargetSpec[] = [...lambdas, ...runs5];
  const stop = await inProcessWorker('bench-alert', moto.url);
  const token = 'bench-alert-token-0123456789';
  const receiver = await startAlertReceiver(client, { port: 0, host: '127.0.0.1', token }, () => undefined);
  const runs = QUICK ? 2 : 20;
  const all: RevertTimes[] = [];
  const answered: number[] = [];
  const phases: BreachPhases[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const s = spec('alr', targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
        canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
      });
      const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-alert' });
      for (;;) {
        const st = await h.query(statusQuery);
        if (st.stage === 'wave:w1' && st.bakeEndsAtMs) break;
        await sleep(50);
      }
      const status = await h.query(statusQuery);
      const stable = new Map(status.targets.map((t) => [t.name, t.stableVersion!]));
      const body = JSON.stringify({
        version: '4',
        status: 'firing',
        receiver: 'rollgate',
        groupLabels: { alertname: 'HighErrorRate' },
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'HighErrorRate', service: 'alr', release: s.release },
            annotations: { summary: 'bench breach' },
            startsAt: new Date().toISOString(),
          },
        ],
      });
      const t0 = performance.now();
      const t0Wall = Date.now();
      const post = fetch(`${receiver.url}/alertmanager`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      }).then(async (r) => {
        answered.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`alert receiver answered ${r.status}: ${await r.text()}`);
      });
      const [times] = await Promise.all([waitAllStable(lambdas, runs5, stable, t0), post]);
      all.push(times);
      for (let k = 0; (await h.query(statusQuery)).state !== 'paused' && k < 600; k++) await sleep(50);
      phases.push(breachPhases((await h.fetchHistory()).events ?? [], t0Wall, t0Wall + times.all));
      await h.signal(abortSignal);
      await h.result();
    }
  } finally {
    await receiver.close();
    await stop();
  }
  report('alert', `alert to revert: POST -> all 10 reverted, p50 (${all.length} runs)`, median(all.map((x) => x.all)), 'ms', {
    op: '<=',
    v: 250,
  });
  report(
    'alert',
    'alert to revert: POST -> all 10 reverted, p95',
    pct(
      all.map((x) => x.all),
      95,
    ),
    'ms',
  );
  report('alert', '  POST answered by the receiver (read + verdict sent), p50', median(answered), 'ms');
  const phase = median(phases.map((x) => x.signalled).filter((v) => Number.isFinite(v)));
  if (Number.isFinite(phase)) report('alert', '  POST sent -> verdict in history, p50', phase, 'ms');
}

interface RevertTimes {
  all: number;
  lambda: number;
  run: number;
}

/** Poll moto and the Cloud Run fake until every target serves 100 % on its stable version; ms since t0. */
async function waitAllStable(
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

interface BreachPhases {
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
function breachPhases(events: HistoryEvent[], sentMs: number, seenMs: number): BreachPhases {
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

// ---- 3: parked rollouts ------------------------------------------------------------------------

interface WorkerPhases {
  importedMs: number;
  connectedMs: number;
  createdMs: number;
}

function spawnWorker(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; readyMs: number; spawnedAt: number; phases?: WorkerPhases }> {
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'worker-process.ts')], {
    cwd: ROOT,
    env: { ...process.env, BENCH_TEMPORAL: temporal.address, BENCH_STATE_DIR: STATE, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  return new Promise((res, rej) => {
    child.stdout!.on('data', (b: Buffer) => {
      const m = /worker ready (\d+)(?: (\{.*\}))?/.exec(b.toString());
      if (m) res({ child, readyMs: Number(m[1]), spawnedAt, phases: m[2] ? (JSON.parse(m[2]) as WorkerPhases) : undefined });
    });
    child.once('exit', (c) => rej(new Error(`bench worker exited ${c}: ${err}`)));
  });
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function benchParked() {
  const sizes = QUICK ? [10, 20] : [500, 1000, 2000];
  console.log(
    `3. parked rollouts (${sizes.join(', ')}) in a long bake on one worker (in-memory provider: measures the worker, not an emulator)`,
  );
  const { child } = await spawnWorker({
    BENCH_TASK_QUEUE: 'bench-parked',
    BENCH_PROVIDER: 'memory',
    BENCH_BUNDLE: bundlePath,
    BENCH_MAX_CACHED: String(sizes[sizes.length - 1] + 100),
  });
  const t = [{ name: 'mem', provider: 'aws-lambda', region: 'us-east-1', function: 'mem', alias: 'live' }] as LambdaTargetSpec[];
  const zip = join(STATE, 'parked.zip');
  writeFileSync(zip, sampleZip('parked'));
  const base = validateSpec({
    service: 'parked',
    release: 'p1',
    schema_rev: '1',
    artifact: { file: zip },
    targets: t,
    canary: { targets: ['mem'], weight: 10, bake: '2 hours' },
  });
  let started = 0;
  const ids: string[] = [];
  try {
    for (const n of sizes) {
      const todo = n - started;
      const t0 = performance.now();
      let next = started;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < n) {
            const i = next++;
            const targets = [{ ...t[0], function: `parked-${i}` }];
            const h = await startRollout(
              client,
              { ...base, service: `parked-${i}`, targets },
              { startedBy: 'bench', taskQueue: 'bench-parked' },
            );
            ids.push(h.workflowId);
          }
        }),
      );
      const rate = todo / ((performance.now() - t0) / 1000);
      started = n;
      // Parked = every rollout has reached its bake.
      const deadline = Date.now() + (QUICK ? 60_000 : 600_000);
      for (;;) {
        const { count } = await client.workflow.count(
          `WorkflowType = 'rolloutWorkflow' AND RolloutStage = 'canary' AND TaskQueue = 'bench-parked'`,
        );
        if (count >= n) break;
        const closed = await client.workflow.count(
          `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus != 'Running'`,
        );
        if (closed.count > 0) {
          // Say why (the server and its histories are gone once the bench exits).
          const why: string[] = [];
          for await (const wf of client.workflow.list({
            query: `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus != 'Running'`,
          })) {
            const r = (await client.workflow
              .getHandle(wf.workflowId)
              .result()
              .catch((e: Error) => ({ state: 'failed', reason: e.message }))) as RolloutResult;
            why.push(`${wf.workflowId}: ${r.state}: ${r.reason}`);
            if (why.length >= 3) break;
          }
          throw new Error(`${closed.count} parked rollout(s) closed instead of parking: ${why.join(' | ')}`);
        }
        if (Date.now() > deadline) throw new Error(`only ${count} of ${n} rollouts reached their bake in time`);
        await sleep(500);
      }
      await sleep(1000);
      report('parked', `start rate while starting ${todo} (to ${n})`, rate, '/s', { op: '>=', v: 50 });
      report('parked', `worker RSS at ${n} parked`, rssMiB(child.pid!), 'MiB', n === 2000 ? { op: '<=', v: 1536 } : undefined);
    }
    const q: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < 20; i++) {
      const h = client.workflow.getHandle(ids[Math.floor((i * ids.length) / 20)]);
      const t0 = performance.now();
      await h.query(statusQuery);
      q.push(performance.now() - t0);
      const t1 = performance.now();
      await h.signal(pauseSignal, { by: 'bench' });
      s.push(performance.now() - t1);
    }
    report('parked', `status query latency p50 at ${started}`, median(q), 'ms');
    report('parked', `pause signal latency p50 at ${started}`, median(s), 'ms');
    reportStickyBurst(await stickyBurst(client, ids));
  } finally {
    child.kill('SIGKILL');
  }
}

/** The sticky queue of one busy worker: how long workflow tasks waited there under a burst (justifies its timeout). */
function reportStickyBurst(r: StickyBurst) {
  const n = r.rollouts;
  console.log(`   sticky queue at ${n} parked: every rollout paused, then resumed, at once (${r.waits.length} workflow tasks)`);
  report('sticky', `sticky queue at ${n} parked: task wait (scheduled -> started) p50`, median(r.waits), 'ms');
  report('sticky', `sticky queue at ${n} parked: task wait p99`, pct(r.waits, 99), 'ms');
  report('sticky', `sticky queue at ${n} parked: task wait max`, Math.max(...r.waits), 'ms', {
    op: '<=',
    v: STICKY_QUEUE_TIMEOUT_MS / 2,
  });
  report('sticky', `sticky queue at ${n} parked: tasks timed out to the shared queue`, r.stickyTimeouts, '', { op: '<=', v: 0 });
  report('sticky', `sticky queue at ${n} parked: burst drained (last task completed)`, r.drainMs, 'ms');
}

// ---- 5 + 6: crash to resume, cold start --------------------------------------------------------

async function benchCrash() {
  console.log('5. crash to resume (SIGKILL just before a bake ends; new worker start -> next activity starts; prebuilt bundle)');
  const targets = lambdaTargets('crs', 1, 1);
  for (const tt of targets) await createSampleFunction(moto.url, tt);
  const runs = QUICK ? 1 : Number(process.env.BENCH_CRASH_RUNS || 5);
  const gaps: number[] = [];
  const parts: CrashTimeline[] = [];
  const before: number[] = [];
  const env = { BENCH_TASK_QUEUE: 'bench-crash', BENCH_PROVIDER: 'emulators', BENCH_LAMBDA_ENDPOINT: proxy.url, BENCH_BUNDLE: bundlePath };
  // Every other run (not in --quick) with the sticky-queue timeout rollgate had before (2 s), for the comparison.
  const schedule = QUICK ? [0] : Array.from({ length: 2 * runs }, (_, i) => (i % 2 ? EARLIER_STICKY_TIMEOUT_MS : 0));
  for (const sticky of schedule) {
    const envOf = sticky ? { ...env, BENCH_STICKY_TIMEOUT_MS: String(sticky) } : env;
    let w = await spawnWorker(envOf);
    const s = spec('crs', targets, [], [100], '3 seconds');
    const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-crash' });
    let bakeEnd = 0;
    for (;;) {
      const st = await h.query(statusQuery);
      if (st.stage === 'canary' && st.bakeEndsAtMs) {
        bakeEnd = st.bakeEndsAtMs;
        break;
      }
      await sleep(30);
    }
    await sleep(Math.max(0, bakeEnd - Date.now() - 300));
    w.child.kill('SIGKILL');
    await new Promise((r) => w.child.once('exit', r));
    const killedAt = Date.now();
    const callsBefore = proxy.calls.length;
    w = await spawnWorker(envOf);
    const readyAt = Date.now();
    for (;;) {
      if (proxy.calls.length > callsBefore) break;
      await sleep(10);
    }
    const firstCall = proxy.calls[callsBefore].atMs;
    await h.result();
    if (sticky) before.push(firstCall - killedAt);
    else {
      gaps.push(firstCall - killedAt);
      parts.push(crashTimeline((await h.fetchHistory()).events ?? [], killedAt, readyAt, firstCall, w.phases));
    }
    w.child.kill('SIGKILL');
  }
  report('crash', `crash to resume: SIGKILL -> next activity's first call (median of ${gaps.length})`, median(gaps), 'ms', {
    op: '<=',
    v: 2000,
  });
  if (before.length)
    report(
      'crash',
      `  same, sticky-queue timeout ${EARLIER_STICKY_TIMEOUT_MS} ms as before (median of ${before.length})`,
      median(before),
      'ms',
    );
  const part = (k: keyof CrashTimeline) => median(parts.map((x) => x[k]).filter((v) => Number.isFinite(v)));
  const rows: [string, keyof CrashTimeline][] = [
    ['SIGKILL -> new worker polling (process start to Worker.run)', 'workerReady'],
    ['  of which: loading modules', 'modules'],
    ['  of which: connecting to Temporal', 'connect'],
    ['  of which: Worker.create (prebuilt bundle)', 'create'],
    ['SIGKILL -> bake timer fired', 'timerFired'],
    ['timer fired -> task off the dead sticky queue (sticky timeout)', 'stickyWait'],
    ['task on the shared queue -> started by the new worker', 'taskDispatch'],
    ['workflow task (replay of the history) started -> completed', 'workflowTask'],
    ['activity scheduled -> started', 'activityDispatch'],
    ['activity started -> its first call at moto', 'activityStart'],
  ];
  for (const [metric, k] of rows) {
    const v = part(k);
    if (Number.isFinite(v)) report('crash', `  ${metric}`, v, 'ms');
  }
}

/** rollgate's sticky-queue timeout before issue 12 item 4 (the SDK's default is 10 s). */
const EARLIER_STICKY_TIMEOUT_MS = 2_000;

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

/** Where crash -> resume goes: the new worker's start phases, then the history's events after the kill. */
function crashTimeline(events: HistoryEvent[], killedAt: number, readyAt: number, firstCall: number, phases?: WorkerPhases): CrashTimeline {
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
    modules: phases?.importedMs ?? NaN,
    connect: phases ? phases.connectedMs - phases.importedMs : NaN,
    create: phases ? phases.createdMs - phases.connectedMs : NaN,
    timerFired: at(fired) - killedAt,
    // No timed-out task in the history: the sticky queue was not in the way (0).
    stickyWait: timedOut ? at(timedOut) - at(fired) : 0,
    taskDispatch: at(started) - at(scheduledOfStarted),
    workflowTask: at(completed) - at(started),
    activityDispatch: at(actStarted) - at(actScheduled),
    activityStart: firstCall - at(actStarted),
  };
}

async function benchColdStart() {
  console.log('6. worker cold start (process spawn -> polling)');
  const runs = QUICK ? 1 : 5;
  const withBundle: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < runs; i++) {
    const a = await spawnWorker({ BENCH_TASK_QUEUE: 'bench-cold', BENCH_PROVIDER: 'memory', BENCH_BUNDLE: bundlePath });
    withBundle.push(performance.now() - a.spawnedAt);
    a.child.kill('SIGKILL');
    if (i < (QUICK ? 1 : 2)) {
      const b = await spawnWorker({ BENCH_TASK_QUEUE: 'bench-cold', BENCH_PROVIDER: 'memory', BENCH_BUNDLE: '' });
      without.push(performance.now() - b.spawnedAt);
      b.child.kill('SIGKILL');
    }
  }
  report('coldstart', 'with prebuilt bundle (median)', median(withBundle), 'ms', { op: '<=', v: 1500 });
  report('coldstart', 'bundling at start (median)', median(without), 'ms');
}

async function main() {
  mkdirSync(STATE, { recursive: true });
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  process.env.METADATA_SERVER_DETECTION ??= 'none'; // the Google clients talk to the fakes: no credentials lookup
  [temporal, moto, cloudRun, monitoring] = await Promise.all([
    startTemporalDevServer({}),
    startMoto(),
    new CloudRunFake().start(),
    new CloudMonitoringFake().start(),
  ]);
  if (process.env.BENCH_CLOUD_RUN_OPERATION_POLLS) cloudRun.knobs.operationPolls = Number(process.env.BENCH_CLOUD_RUN_OPERATION_POLLS);
  console.log(
    `Cloud Run fake (dev/test): ${cloudRun.address}, operations finish after ${cloudRun.knobs.operationPolls} poll(s); provider poll ${CLOUD_RUN_POLL_MS}-${CLOUD_RUN_MAX_POLL_MS} ms`,
  );
  proxy = await new FaultProxy(moto.url).start();
  nativeConnection = await NativeConnection.connect({ address: temporal.address });
  client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../src/workflows'), logger: new DefaultLogger('ERROR') });
  bundlePath = join(STATE, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);
  const all: [string, () => Promise<void>][] = [
    ['overhead', benchOverhead],
    ['breach', benchBreach],
    ['alert', benchAlert],
    ['parked', benchParked],
    ['crash', benchCrash],
    ['coldstart', benchColdStart],
  ];
  // One runner for every benchmark's rollouts (build/test/migration commands); startRollout sends them here.
  process.env.ROLLGATE_RUNNER_TASK_QUEUE = 'bench-runner';
  const runner = await createRunnerWorker({ connection: nativeConnection, taskQueue: 'bench-runner', deps: { stateDir: STATE } });
  const runnerRun = runner.run();
  try {
    for (const [name, fn] of all) if (!ONLY || ONLY.includes(name)) await fn();
  } finally {
    runner.shutdown();
    await runnerRun;
    await proxy.stop();
    await client.connection.close();
    await nativeConnection.close();
    await Promise.all([temporal.stop(), moto.stop(), cloudRun.stop(), monitoring.stop()]);
  }
  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAvgAtStart: LOAD_AT_START,
    loadAvgAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
  };
  const config = {
    cloudRunPollMs: CLOUD_RUN_POLL_MS,
    cloudRunMaxPollMs: CLOUD_RUN_MAX_POLL_MS,
    fakeOperationPolls: cloudRun.knobs.operationPolls,
  };
  writeFileSync(OUT, JSON.stringify({ at: new Date().toISOString(), quick: QUICK, machine, config, rows }, null, 2));
  console.log(`\nwrote ${OUT}`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
