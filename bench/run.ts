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
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
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
import { createRollgateWorker } from '../src/worker';
import { workflowCacheSize } from '../src/temporal/workflow-cache';
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
// The dev server's SQLite file: in memory-backed /dev/shm where there is one (a disk-backed file
// made every server call wait on fsync under 2,000 starts on the shared machine), else the temp dir.
const DB_DIR = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'rollgate-bench-'));

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
  load1?: number;
}
const rows: Row[] = [];
function report(bench: string, metric: string, value: number, unit: string, target?: { op: '<=' | '>='; v: number }) {
  const ok = target ? (target.op === '<=' ? value <= target.v : value >= target.v) : undefined;
  // The machine is shared: each figure carries the 1-minute load average it was measured under.
  const load1 = Math.round(loadavg()[0] * 100) / 100;
  rows.push({
    bench,
    metric,
    value: Math.round(value * 100) / 100,
    unit,
    target: target ? `${target.op} ${target.v}` : undefined,
    ok,
    load1,
  });
  console.log(
    `  ${bench.padEnd(13)} ${metric.padEnd(58)} ${String(Math.round(value * 100) / 100).padStart(10)} ${unit.padEnd(6)} ${target ? `${target.op} ${target.v} ${ok ? 'ok' : 'MISSED'}` : ''.padEnd(12)} load ${load1}`,
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
async function inProcessWorker(taskQueue: string, endpoint: string) {
  const run = cloudRunProvider();
  const mon = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  const worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundlePath: bundlePath,
    deps: {
      providers: { 'aws-lambda': new LambdaProvider({ endpoint, credentials: TEST_CREDENTIALS }), 'cloud-run': run },
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

const eventMs = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);

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

async function benchBreach() {
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

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

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

function spawnWorker(env: Record<string, string>): Promise<{ child: ChildProcess; readyMs: number; spawnedAt: number }> {
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
      const m = /worker ready (\d+)/.exec(b.toString());
      if (m) res({ child, readyMs: Number(m[1]), spawnedAt });
    });
    child.once('exit', (c) => rej(new Error(`bench worker exited ${c}: ${err}`)));
  });
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Starts rollouts `from`..`to`-1 of a spec family with `concurrency` starters; returns starts per second. */
async function startMany(from: number, to: number, make: (i: number) => RolloutSpec, ids: string[], concurrency = 100): Promise<number> {
  const t0 = performance.now();
  let next = from;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) {
        const i = next++;
        const h = await startRollout(client, make(i), { startedBy: 'bench', taskQueue: 'bench-parked' });
        ids.push(h.workflowId);
      }
    }),
  );
  return (to - from) / ((performance.now() - t0) / 1000);
}

/** Why the first closed parked rollout closed (its status and result or failure), for the error. */
async function closedReason(): Promise<string> {
  for await (const w of client.workflow.list({
    query: `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus != 'Running'`,
  })) {
    const outcome = await client.workflow
      .getHandle(w.workflowId, w.runId)
      .result()
      .then(
        (r) => `${(r as RolloutResult).state}: ${(r as RolloutResult).reason ?? ''}`,
        (err: Error) => `${err.message}: ${(err.cause as Error | undefined)?.message ?? ''}`,
      );
    return `${w.workflowId} ${w.status.name}, ${outcome}`;
  }
  return 'not listed yet';
}

async function waitForCount(query: string, n: number, what: string, timeoutMs: number, refuseClosed = true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { count } = await client.workflow.count(query);
    if (count >= n) return;
    if (refuseClosed) {
      const closed = await client.workflow.count(
        `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus != 'Running'`,
      );
      if (closed.count > 0) throw new Error(`${closed.count} parked rollout(s) closed instead of parking: ${await closedReason()}`);
    }
    if (Date.now() > deadline) throw new Error(`only ${count} of ${n} rollouts ${what} in time`);
    await sleep(500);
  }
}

type HistoryEvents = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>;

/** The first activity scheduled after `from` (an event index) and its time. */
function nextActivityMs(events: HistoryEvents, from: number): number | undefined {
  for (let i = from; i < events.length; i++) if (events[i].activityTaskScheduledEventAttributes) return eventMs(events[i]);
  return undefined;
}

/** The end of the first bake as planned (its task's start + the timer) and the first activity scheduled after it fired. */
function bakeWake(events: HistoryEvents): { plannedMs: number; nextMs: number } | undefined {
  let taskStartedMs = 0;
  let timerId: string | undefined;
  let plannedMs = 0;
  for (const [i, e] of events.entries()) {
    if (e.workflowTaskStartedEventAttributes) taskStartedMs = eventMs(e);
    const started = e.timerStartedEventAttributes;
    const summary = e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary as Payload) : '';
    if (started && timerId === undefined && summary.startsWith('bake ')) {
      timerId = started.timerId!;
      const d = started.startToFireTimeout!;
      plannedMs = taskStartedMs + Number(d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6;
    }
    if (timerId !== undefined && e.timerFiredEventAttributes?.timerId === timerId) {
      const nextMs = nextActivityMs(events, i);
      return nextMs === undefined ? undefined : { plannedMs, nextMs };
    }
  }
  return undefined;
}

/** The first traffic step (setTraffic) scheduled: what a rollout frozen until `untilMs` does when it wakes. */
function freezeWake(untilMs: number) {
  return (events: HistoryEvents): { plannedMs: number; nextMs: number } | undefined => {
    const e = events.find((x) => x.activityTaskScheduledEventAttributes?.activityType?.name === 'setTraffic');
    return e ? { plannedMs: untilMs, nextMs: eventMs(e) } : undefined;
  };
}

/** For each rollout, from the planned end of a wait to its next step, read from its history. */
async function wakeLags(ids: string[], find: (events: HistoryEvents) => { plannedMs: number; nextMs: number } | undefined) {
  const lags: number[] = [];
  const plannedEnds: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < ids.length) {
        const found = find((await client.workflow.getHandle(ids[next++]).fetchHistory()).events ?? []);
        if (!found) continue;
        lags.push(found.nextMs - found.plannedMs);
        plannedEnds.push(found.plannedMs);
      }
    }),
  );
  return { lags, plannedEnds };
}

function utcLocal(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19);
}

/**
 * 3: parked rollouts on one worker with its default (bounded) workflow cache: memory, start rate,
 * query and signal latency at every size, mostly on evicted rollouts; then a wake storm: 1,000
 * rollouts held by a freeze window that ends at one instant take their canary step, then their
 * bakes (which therefore end within about a second of each other) take the next one.
 */
async function benchParked() {
  // BENCH_PARKED=N: another final size (a storm of N/10), e.g. on a loaded machine; rows are then "parked".
  const final = QUICK ? 20 : Number(process.env.BENCH_PARKED || 10_000);
  const storm = QUICK ? 10 : Math.round(final / 10);
  const sizes = QUICK || final <= 2_000 ? [final - storm] : [2_000, final - storm];
  const name = (n: number) => (n === 10_000 && !QUICK ? 'parked 10,000' : 'parked');
  const at10k = <T>(t: T) => (final === 10_000 && !QUICK ? t : undefined);
  console.log(
    `3. ${final} parked rollouts on one worker (in-memory provider: measures the worker, not an emulator), then a wake storm of ${storm}`,
  );
  const { child } = await spawnWorker({ BENCH_TASK_QUEUE: 'bench-parked', BENCH_PROVIDER: 'memory', BENCH_BUNDLE: bundlePath });
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(child.pid!))), 250);
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
  const parked = (i: number): RolloutSpec => ({ ...base, service: `parked-${i}`, targets: [{ ...t[0], function: `parked-${i}` }] });
  const ids: string[] = [];
  try {
    let started = 0;
    for (const n of sizes) {
      const rate = await startMany(started, n, parked, ids);
      started = n;
      await waitForCount(
        `WorkflowType = 'rolloutWorkflow' AND RolloutStage = 'canary' AND TaskQueue = 'bench-parked'`,
        n,
        'reached their bake',
        QUICK ? 60_000 : 900_000,
      );
      await sleep(1000);
      report('parked', `start rate while starting ${n - (sizes[sizes.indexOf(n) - 1] ?? 0)} (to ${n})`, rate, '/s');
      report('parked', `worker RSS at ${n} parked`, rssMiB(child.pid!), 'MiB');
    }

    // The storm rollouts: frozen before their canary step until one instant, then a bake of the same length.
    const bakeS = QUICK ? 5 : 30;
    const stormAt = Math.ceil((Date.now() + (QUICK ? 30_000 : 150_000)) / 1000) * 1000;
    const stormSpec = (i: number): RolloutSpec => ({
      ...base,
      service: `storm-${i}`,
      targets: [{ ...t[0], function: `storm-${i}` }],
      canary: { targets: ['mem'], weight: 10, bake: `${bakeS} seconds` },
      freeze_windows: [{ name: 'storm', timezone: 'UTC', from: utcLocal(Date.now() - 60_000), to: utcLocal(stormAt) }],
    });
    const stormIds: string[] = [];
    const stormRate = await startMany(0, storm, stormSpec, stormIds);
    report(name(final), `start rate while starting ${storm} (to ${final})`, stormRate, '/s', at10k({ op: '>=', v: 200 }));
    await waitForCount(
      `WorkflowType = 'rolloutWorkflow' AND RolloutStage = 'canary' AND TaskQueue = 'bench-parked'`,
      final,
      'reached their bake or freeze',
      Math.max(5_000, stormAt - Date.now() - 5_000),
    );
    await sleep(1000);
    report(name(final), `worker RSS at ${final} parked`, rssMiB(child.pid!), 'MiB', at10k({ op: '<=', v: 1024 }));

    // Latency on rollouts across the whole set: most of them are not in the cache (a query replays).
    const q: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < 40; i++) {
      const h = client.workflow.getHandle(ids[Math.floor((i * ids.length) / 40)]);
      const t0 = performance.now();
      await h.query(statusQuery);
      q.push(performance.now() - t0);
      const t1 = performance.now();
      await h.signal(pauseSignal, { by: 'bench' });
      s.push(performance.now() - t1);
    }
    report(name(final), `status query latency p50 at ${final}`, median(q), 'ms', at10k({ op: '<=', v: 25 }));
    report(name(final), `pause signal latency p50 at ${final}`, median(s), 'ms', at10k({ op: '<=', v: 25 }));
    const sample = await client.workflow.getHandle(ids[0]).fetchHistory();
    report(name(final), 'history events per parked rollout', sample.events?.length ?? NaN, 'events');
    report(name(final), 'history size per parked rollout', Buffer.byteLength(JSON.stringify(sample)) / 1024, 'KiB');
    report(name(final), 'workflow cache (maxCachedWorkflows)', workflowCacheSize(), 'runs');

    // Query twice the cache's worth of other parked rollouts: the storm rollouts (the last ones
    // touched) are pushed out of the cache, so the storm wakes evicted rollouts.
    const sweep = ids.slice(0, Math.min(ids.length, 2 * workflowCacheSize()));
    const sweepLatency: number[] = [];
    const t0 = performance.now();
    let k = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (k < sweep.length) {
          const h = client.workflow.getHandle(sweep[k++]);
          const t1 = performance.now();
          await h.query(statusQuery);
          sweepLatency.push(performance.now() - t1);
        }
      }),
    );
    report(
      name(final),
      `status queries of ${sweep.length} rollouts (cache ${workflowCacheSize()}), 20 at a time`,
      sweep.length / ((performance.now() - t0) / 1000),
      '/s',
    );
    report(name(final), `  their latency p50 (20 in flight)`, median(sweepLatency), 'ms');

    // The storm: every freeze ends at stormAt; then every bake ends bakeS seconds after its canary step.
    if (Date.now() > stormAt) throw new Error('the storm rollouts were not all frozen before the storm: raise the lead time');
    await waitForCount(
      `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus = 'Completed'`,
      storm,
      'promoted after the storm',
      (QUICK ? 60 : 300) * 1000 + bakeS * 1000,
      false,
    );
    const freeze = await wakeLags(stormIds, freezeWake(stormAt));
    const bake = await wakeLags(stormIds, bakeWake);
    if (freeze.lags.length !== storm || bake.lags.length !== storm)
      throw new Error(`wake lags found for ${freeze.lags.length} freeze ends and ${bake.lags.length} bake ends of ${storm}`);
    const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / 1000;
    report(name(final), `freeze ends (${storm} at one instant) -> next step p50`, median(freeze.lags), 'ms');
    report(
      name(final),
      `freeze ends (${storm} at one instant) -> next step p99`,
      pct(freeze.lags, 99),
      'ms',
      at10k({ op: '<=', v: 10_000 }),
    );
    report(name(final), `bake ends (${storm} within ${spread(bake.plannedEnds).toFixed(1)} s) -> next step p50`, median(bake.lags), 'ms');
    report(
      name(final),
      `bake ends (${storm} within ${spread(bake.plannedEnds).toFixed(1)} s) -> next step p99`,
      pct(bake.lags, 99),
      'ms',
      at10k({ op: '<=', v: 10_000 }),
    );
    report(name(final), `worker peak RSS (storm included)`, peakRss, 'MiB', at10k({ op: '<=', v: 1024 }));
  } finally {
    clearInterval(sampler);
    child.kill('SIGKILL');
  }
}

// ---- 5 + 6: crash to resume, cold start --------------------------------------------------------

async function benchCrash() {
  console.log('5. crash to resume (SIGKILL just before a bake ends; new worker start -> next activity starts)');
  const targets = lambdaTargets('crs', 1, 1);
  for (const tt of targets) await createSampleFunction(moto.url, tt);
  const runs = QUICK ? 1 : 3;
  const gaps: number[] = [];
  for (let i = 0; i < runs; i++) {
    let w = await spawnWorker({
      BENCH_TASK_QUEUE: 'bench-crash',
      BENCH_PROVIDER: 'emulators',
      BENCH_LAMBDA_ENDPOINT: proxy.url,
      BENCH_BUNDLE: bundlePath,
    });
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
    w = await spawnWorker({
      BENCH_TASK_QUEUE: 'bench-crash',
      BENCH_PROVIDER: 'emulators',
      BENCH_LAMBDA_ENDPOINT: proxy.url,
      BENCH_BUNDLE: bundlePath,
    });
    const startWall = killedAt;
    for (;;) {
      if (proxy.calls.length > callsBefore) break;
      await sleep(10);
    }
    const gap = proxy.calls[callsBefore].atMs - startWall;
    gaps.push(gap);
    await h.result();
    w.child.kill('SIGKILL');
  }
  report('crash', 'new worker start -> next activity (median)', median(gaps), 'ms', { op: '<=', v: 2000 });
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
    // A file-backed store (10,000 rollouts outgrow memory), in a temp dir removed at the end.
    startTemporalDevServer({ dbFile: join(DB_DIR, 'temporal.db') }),
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
    rmSync(DB_DIR, { recursive: true, force: true });
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
