/** What every benchmark shares: flags, statistics, the result rows, the servers, targets, specs and workers. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { type DevServer, type MotoServer } from '../src/dev/processes';
import { sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { FaultProxy } from '../src/dev/fault-proxy';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudRunProvider } from '../src/providers/cloud-run';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import { createRollgateWorker } from '../src/worker';
import { validateSpec } from '../src/spec/validate';
import type { CloudRunTargetSpec, RolloutSpec, TargetSpec } from '../src/spec/schema';
import { timedProviders, type ProviderCall, type WorkerClock } from './revert-timeline';
import { compileForNode } from './compiled';

export const argv = process.argv.slice(2);
export const QUICK = argv.includes('--quick');
export const ONLY = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : undefined;
export const OUT = argv.includes('--out')
  ? argv[argv.indexOf('--out') + 1]
  : join(__dirname, 'results', QUICK ? 'quick.json' : 'latest.json');
export const ROOT = resolve(__dirname, '..');
export const STATE = join(ROOT, '.state', 'bench');
/** Cloud Run provider: first pause between operation / status polls, and the largest (ms). Same as the test harness. */
export const CLOUD_RUN_POLL_MS = Number(process.env.BENCH_CLOUD_RUN_POLL_MS || 100);
export const CLOUD_RUN_MAX_POLL_MS = 500;
export const GCP_PROJECT = 'bench-project';
export const LOAD_AT_START = loadavg().map((x) => Math.round(x * 100) / 100);
// The dev server's SQLite file: in memory-backed /dev/shm where there is one (a disk-backed file
// made every server call wait on fsync under 2,000 starts on the shared machine), else the temp dir.
export const DB_DIR = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'rollgate-bench-'));

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Row {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
  load1?: number;
}
export const rows: Row[] = [];
export function report(bench: string, metric: string, value: number, unit: string, target?: { op: '<=' | '>='; v: number }) {
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
    `  ${bench.padEnd(13)} ${metric.padEnd(80)} ${String(Math.round(value * 100) / 100).padStart(10)} ${unit.padEnd(6)} ${target ? `${target.op} ${target.v} ${ok ? 'ok' : 'MISSED'}` : ''.padEnd(12)} load ${load1}`,
  );
}

export let temporal: DevServer;
export let moto: MotoServer;
export let proxy: FaultProxy;
export let cloudRun: CloudRunFake;
export let monitoring: CloudMonitoringFake;
export let client: Client;
export let nativeConnection: NativeConnection;
export let bundlePath: string;
/** The servers every benchmark uses, started once by run.ts. */
export function setServers(s: {
  temporal: DevServer;
  moto: MotoServer;
  proxy: FaultProxy;
  cloudRun: CloudRunFake;
  monitoring: CloudMonitoringFake;
  client: Client;
  nativeConnection: NativeConnection;
  bundlePath: string;
}): void {
  ({ temporal, moto, proxy, cloudRun, monitoring, client, nativeConnection, bundlePath } = s);
}

export const RUN_REGIONS = ['europe-west1', 'us-central1', 'asia-northeast1', 'europe-north1', 'us-east4', 'australia-southeast1'];

/** One Cloud Run service per region, seeded in the fake at one ready revision serving 100 %. */
export function cloudRunTargets(prefix: string, regions: number): CloudRunTargetSpec[] {
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

export function imageFor(service: string, release: string): string {
  return `europe-docker.pkg.dev/${GCP_PROJECT}/apps/${service}@sha256:${createHash('sha256').update(`${service}:${release}`).digest('hex')}`;
}

export function cloudRunProvider(): CloudRunProvider {
  return new CloudRunProvider({
    endpoint: cloudRun.address,
    probeUrlRewrite: (u) => cloudRun.loopbackUrl(u),
    pollIntervalMs: CLOUD_RUN_POLL_MS,
    maxPollIntervalMs: CLOUD_RUN_MAX_POLL_MS,
    operationTimeoutMs: 60_000,
  });
}

let releaseCounter = 0;
export function spec(
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
export async function inProcessWorker(taskQueue: string, endpoint: string, calls?: ProviderCall[], clock?: WorkerClock) {
  const run = cloudRunProvider();
  const mon = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  const providers = { 'aws-lambda': new LambdaProvider({ endpoint, credentials: TEST_CREDENTIALS }), 'cloud-run': run };
  const worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundlePath: bundlePath,
    deps: {
      // With `calls`: every routeAll timed in the worker (the breach breakdown).
      providers: calls ? timedProviders(providers, calls) : providers,
      metrics: [new CloudWatchMetrics({ endpoint, credentials: TEST_CREDENTIALS }), mon],
      stateDir: STATE,
      hashKey: 'bench',
      client,
    },
  });
  // The breach breakdown's worker-side rows (bench/revert-timeline.ts); the rows are left out if it cannot attach.
  if (clock && !clock.attach(worker))
    console.log('                (worker clock: the SDK worker has changed shape; its rows are left out)');
  const running = worker.run();
  return async () => {
    worker.shutdown();
    await running;
    await run.close();
    await mon.close();
  };
}

export function createDigest(path: string) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A spawned worker's start, each phase since its process started (ms): modules loaded, connected, Worker.create done. */
export interface WorkerPhases {
  importedMs: number;
  connectedMs: number;
  createdMs: number;
  /** The worker's workflow cache (maxCachedWorkflows) and V8 heap limit, as the worker process sees them. */
  cachedWorkflows: number;
  heapLimitMiB: number;
}

let workerProcessJs: string | undefined;

/**
 * bench/worker-process.ts in its own process, from compiled JavaScript as production runs it
 * (bench/compiled.ts; compiled at the first spawn of a run, before any timing starts).
 */
export function spawnWorker(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; readyMs: number; spawnedAt: number; phases: WorkerPhases }> {
  // The workflows too: a worker without a prebuilt bundle bundles them from its own directory.
  workerProcessJs ??= compileForNode(ROOT, 'bench/worker-process.ts', join(STATE, 'js'), ['src/workflows/index.ts']);
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [workerProcessJs], {
    cwd: ROOT,
    // BENCH_WORKER_NODE_OPTIONS: Node flags for the worker process only, e.g. `--max-old-space-size=384`,
    // the heap a container's memory limit would give it (the bench process keeps its own).
    env: {
      ...process.env,
      ...(process.env.BENCH_WORKER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS } : {}),
      BENCH_TEMPORAL: temporal.address,
      BENCH_STATE_DIR: STATE,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  return new Promise((res, rej) => {
    child.stdout!.on('data', (b: Buffer) => {
      const m = /worker ready (\d+) (\{.*\})/.exec(b.toString());
      if (m) res({ child, readyMs: Number(m[1]), spawnedAt, phases: JSON.parse(m[2]) as WorkerPhases });
    });
    child.once('exit', (c) => rej(new Error(`bench worker exited ${c}: ${err}`)));
  });
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
