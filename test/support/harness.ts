/** Per-test-file wiring: a client, a fault proxy in front of the shared moto, a webhook receiver, workers. */
import { createServer, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker, type WorkerOptions } from '@temporalio/worker';
import { createRollgateWorker } from '../../src/worker';
import { createRunnerWorker } from '../../src/runner';
import { createActivities, createRunnerActivities, type ActivityDeps, type RunnerDeps } from '../../src/activities';
import { FileArtifactStore } from '../../src/artifacts/store';
import type { DataConverter } from '@temporalio/common';
import { LambdaProvider } from '../../src/providers/aws-lambda';
import { LambdaZipCatalog } from '../../src/dev/lambda-code';
import { CloudWatchMetrics } from '../../src/analysis/cloudwatch';
import { FaultProxy } from '../../src/dev/fault-proxy';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import { TrafficSimulator } from '../../src/dev/traffic-simulator';
import { validateSpec } from '../../src/spec/validate';
import type { LambdaTargetSpec, RolloutSpec, RolloutSpecInput } from '../../src/spec/schema';
import { statusQuery, type RolloutResult, type RolloutStatus } from '../../src/contract';
import { CloudRunFake } from '../../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../../src/dev/cloud-monitoring-fake';
import { CloudRunProvider } from '../../src/providers/cloud-run';
import { CloudMonitoringMetrics } from '../../src/analysis/cloud-monitoring';

let runtimeInstalled = false;
function installRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // already installed by another file in this process
  }
}

/** The variable test specs name as notify.webhook_env; each harness's workers resolve it to its receiver. */
export const TEST_WEBHOOK_ENV = 'ROLLGATE_WEBHOOK_TEST';

export interface WebhookReceiver {
  url: string;
  received: { body: any; atMs: number }[];
  /** Answer the next N posts with this status (to test retries). */
  failNext(n: number, status: number): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: WebhookReceiver['received'] = [];
  let fail = { n: 0, status: 500 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (fail.n > 0) {
        fail.n--;
        res.writeHead(fail.status);
        return res.end('try later');
      }
      received.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'), atMs: Date.now() });
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    received,
    failNext: (n, status) => (fail = { n, status }),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export interface Harness {
  client: Client;
  nativeConnection: NativeConnection;
  proxy: FaultProxy;
  webhook: WebhookReceiver;
  taskQueue: string;
  /** The runner's task queue (also ROLLGATE_RUNNER_TASK_QUEUE in this file's environment, so startRollout uses it). */
  runnerTaskQueue: string;
  motoUrl: string;
  workDir: string;
  deps: ActivityDeps;
  /** The zips Lambda was given (through the proxy, or by createFunctions): what restoreLatest downloads. */
  lambdaCode: LambdaZipCatalog;
  /** The runner's: its own state dir (workDir/runner), the file's shared file:// artifact store (workDir/artifacts). */
  runnerDeps: RunnerDeps;
  /** With `{ cloudRun: true }`: the Cloud Run Admin API fake and the Cloud Monitoring fake, wired into deps. */
  cloudRun?: CloudRunFake;
  monitoring?: CloudMonitoringFake;
  /**
   * `bundlePath`: another workflow bundle (default: the suite's bundle of src/workflows).
   * `withCommands`: also register the command activities on the worker's own queue, as workers did
   * before the runner split (for runs of older workflow code that schedule them there).
   */
  startWorker(
    overrides?: Partial<ActivityDeps>,
    bundlePath?: string,
    o?: { withCommands?: boolean; workerOptions?: Partial<WorkerOptions> },
  ): Promise<Worker>;
  stopWorker(): Promise<void>;
  /** The runner (started by createHarness unless `runner: false`); another one with overrides. */
  startRunner(overrides?: Partial<RunnerDeps>, workerOptions?: Partial<WorkerOptions>): Promise<Worker>;
  stopRunner(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Start the Cloud Run and Cloud Monitoring fakes for this file and add their providers to deps. */
  cloudRun?: boolean;
  /** Start no runner at createHarness (the file starts its own with startRunner). */
  runner?: boolean;
  /** Data converter of the runner (payload codec), when the file's workers use one. */
  dataConverter?: DataConverter;
}

export async function createHarness(name: string, opts: HarnessOptions = {}): Promise<Harness> {
  installRuntime();
  const address = process.env.ROLLGATE_TEST_TEMPORAL!;
  const motoUrl = process.env.ROLLGATE_TEST_MOTO!;
  if (!address || !motoUrl) throw new Error('test servers are not running: run the suite through jest (globalSetup starts them)');
  const nativeConnection = await NativeConnection.connect({ address });
  const client = new Client({ connection: await Connection.connect({ address }) });
  const proxy = await new FaultProxy(motoUrl).start();
  const webhook = await startWebhookReceiver();
  const taskQueue = `${name}-${randomBytes(3).toString('hex')}`;
  const workDir = join(process.env.ROLLGATE_TEST_STATE!, taskQueue);
  mkdirSync(workDir, { recursive: true });
  const artifactStore = new FileArtifactStore(join(workDir, 'artifacts'));
  // moto's Code.Location cannot be downloaded: $LATEST restores get zips by CodeSha256 from here.
  const lambdaCode = new LambdaZipCatalog();
  proxy.observers.push(lambdaCode.observer);
  const deps: ActivityDeps = {
    providers: {
      'aws-lambda': new LambdaProvider({
        endpoint: proxy.url,
        credentials: TEST_CREDENTIALS,
        maxAttempts: 4,
        fetchCode: lambdaCode.fetchCode,
      }),
    },
    metrics: [new CloudWatchMetrics({ endpoint: proxy.url, credentials: TEST_CREDENTIALS })],
    stateDir: workDir,
    artifactStore,
    hashKey: 'test-hash-key',
    client,
    // Specs name the webhook by variable (notify.webhook_env): this file's receiver is its value.
    secretEnv: { [TEST_WEBHOOK_ENV]: webhook.url },
  };
  // For workers this file starts in child processes (they resolve it in their own environment).
  process.env[TEST_WEBHOOK_ENV] = webhook.url;
  // The runner: commands only, its own state dir, the same single-machine artifact store.
  const runnerTaskQueue = `${taskQueue}-runner`;
  process.env.ROLLGATE_RUNNER_TASK_QUEUE = runnerTaskQueue;
  const runnerDeps: RunnerDeps = { stateDir: join(workDir, 'runner'), artifactStore };
  let cloudRun: CloudRunFake | undefined;
  let monitoring: CloudMonitoringFake | undefined;
  let cloudRunProvider: CloudRunProvider | undefined;
  let monitoringMetrics: CloudMonitoringMetrics | undefined;
  if (opts.cloudRun) {
    process.env.METADATA_SERVER_DETECTION = 'none';
    [cloudRun, monitoring] = await Promise.all([new CloudRunFake().start(), new CloudMonitoringFake().start()]);
    const fake = cloudRun;
    cloudRunProvider = new CloudRunProvider({
      endpoint: fake.address,
      probeUrlRewrite: (u) => fake.loopbackUrl(u),
      pollIntervalMs: 100,
      maxPollIntervalMs: 500,
      operationTimeoutMs: 60_000,
    });
    monitoringMetrics = new CloudMonitoringMetrics({ endpoint: monitoring.address });
    deps.providers['cloud-run'] = cloudRunProvider;
    deps.metrics.push(monitoringMetrics);
  }
  const workers: { worker: Worker; run: Promise<void> }[] = [];
  const runners: { worker: Worker; run: Promise<void> }[] = [];
  const h: Harness = {
    client,
    nativeConnection,
    proxy,
    webhook,
    taskQueue,
    runnerTaskQueue,
    motoUrl,
    workDir,
    deps,
    lambdaCode,
    runnerDeps,
    cloudRun,
    monitoring,
    async startWorker(overrides = {}, bundlePath?: string, o = {}) {
      const workerDeps = { ...deps, ...overrides };
      const worker = await createRollgateWorker({
        connection: nativeConnection,
        taskQueue,
        deps: workerDeps,
        workflowBundlePath: bundlePath ?? process.env.ROLLGATE_TEST_BUNDLE,
        workerOptions: {
          ...o.workerOptions,
          ...(o.withCommands
            ? { activities: { ...createActivities(workerDeps), ...createRunnerActivities({ stateDir: workerDeps.stateDir }) } }
            : {}),
        },
      });
      workers.push({ worker, run: worker.run() });
      return worker;
    },
    async stopWorker() {
      const w = workers.pop();
      if (!w) return;
      w.worker.shutdown();
      await w.run;
    },
    async startRunner(overrides = {}, workerOptions = {}) {
      const worker = await createRunnerWorker({
        connection: nativeConnection,
        taskQueue: runnerTaskQueue,
        deps: { ...runnerDeps, ...overrides },
        workerOptions: { ...(opts.dataConverter ? { dataConverter: opts.dataConverter } : {}), ...workerOptions },
      });
      runners.push({ worker, run: worker.run() });
      return worker;
    },
    async stopRunner() {
      const w = runners.pop();
      if (!w) return;
      w.worker.shutdown();
      await w.run;
    },
    async close() {
      // A test that failed half-way leaves its rollout open: on the shared dev server it would stay
      // Running with no worker, and tests in other files that list open rollouts would meet it.
      await terminateOpen(client, taskQueue);
      while (workers.length) await h.stopWorker();
      while (runners.length) await h.stopRunner();
      await proxy.stop();
      await webhook.close();
      await cloudRunProvider?.close();
      await monitoringMetrics?.close();
      await cloudRun?.stop();
      await monitoring?.stop();
      await client.connection.close();
      await nativeConnection.close();
    },
  };
  if (opts.runner !== false) await h.startRunner();
  return h;
}

async function terminateOpen(client: Client, taskQueue: string): Promise<void> {
  const query = `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`;
  try {
    for await (const wf of client.workflow.list({ query }))
      await client.workflow
        .getHandle(wf.workflowId, wf.runId)
        .terminate('test harness closed: left open by its test')
        .catch(() => undefined); // closed meanwhile
  } catch (err) {
    console.warn(`harness: could not list the open workflows of ${taskQueue}: ${(err as Error).message}`);
  }
}

const REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-2', 'us-west-2'];

export function lambdaTargets(service: string, n = 3): LambdaTargetSpec[] {
  return REGIONS.slice(0, n).map((region) => ({
    name: region,
    provider: 'aws-lambda' as const,
    region,
    function: `${service}-fn`,
    alias: 'live',
  }));
}

/** A spec over `n` Lambda targets: canary on the first, then waves; short bakes. */
export function lambdaSpec(h: Harness, service: string, over: Partial<RolloutSpecInput> = {}, n = 3): RolloutSpec {
  const zip = join(h.workDir, `${service}-${randomBytes(3).toString('hex')}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${zip}`));
  const targets = lambdaTargets(service, n);
  return validateSpec({
    service,
    release: 'r2',
    schema_rev: '7',
    index_hash: 'idx-abc',
    artifact: { file: zip },
    targets,
    probes: [{ name: 'health', payload: { ping: true }, expect_contains: 'ping' }],
    canary: { targets: [targets[0].name], weight: 10, bake: '1 second' },
    waves: [
      ...(n > 1 ? [{ name: 'wave-1', targets: [targets[1].name], steps: [50, 100], bake: '1 second' }] : []),
      ...(n > 2 ? [{ name: 'wave-2', targets: targets.slice(2).map((t) => t.name), steps: [25, 100], bake: '1 second' }] : []),
    ],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5 },
    approvers: ['alice', 'bob'],
    notify: { webhook_env: TEST_WEBHOOK_ENV },
    ...over,
  });
}

export async function createFunctions(
  h: Harness,
  spec: RolloutSpec,
  env: Record<string, string> = { DB_PASSWORD: 's3cret-value', LOG_LEVEL: 'info' },
) {
  for (const t of spec.targets) {
    if (t.provider !== 'aws-lambda') continue;
    await createSampleFunction(h.motoUrl, t, env);
    h.lambdaCode?.add(sampleZip(`${t.function} v1`)); // version 1's code, for $LATEST restores (a harness's own workers)
  }
}

/** Healthy traffic everywhere, unless `bad` says a version is broken. */
/** Waits until the workflow's latest run is not one of `seen` (it continued as new), adds and returns the new run id. */
export async function nextRun(handle: { describe(): Promise<{ runId: string }> }, seen: Set<string>, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { runId } = await handle.describe();
    if (!seen.has(runId)) {
      seen.add(runId);
      return runId;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no continue-as-new within ${timeoutMs} ms`);
}

/**
 * After a test changes what the simulated traffic looks like (e.g. `broken = false`): wait until
 * the tick that was in flight has put its metrics and one whole tick ran after the change. A tick
 * reads the alias, picks each version's error rate and then puts the datapoints, timestamped at the
 * put; one that picked a breaching rate just before the change could otherwise land its datapoints
 * inside the next pass's analysis window (CI saw a resumed canary judged at 6 % on such a tick).
 */
export async function trafficSettled(sim: { ticks: number }, timeoutMs = 30_000): Promise<void> {
  const want = sim.ticks + 2;
  const deadline = Date.now() + timeoutMs;
  // Also into the next wall-clock second: moto keeps metric timestamps to the second, so a window
  // starting later in the same second as the last breaching datapoint still counts it (CI: a resume
  // less than a second after the revert judged 6 % and rolled back again).
  const nextSecond = Math.ceil((Date.now() + 1) / 1000) * 1000 + 50;
  while (sim.ticks < want || Date.now() < nextSecond) {
    if (Date.now() > deadline) throw new Error(`simulated traffic did not tick twice within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function simulateTraffic(h: Harness, spec: RolloutSpec, bad: (t: LambdaTargetSpec, version: string) => boolean = () => false) {
  const lambda = spec.targets.filter((t): t is LambdaTargetSpec => t.provider === 'aws-lambda');
  return new TrafficSimulator(h.motoUrl, h.motoUrl, lambda, {
    requestsPerTick: 100,
    errorRate: (t, v) => (bad(t, v) ? 0.3 : 0.001),
  }).start(250);
}

export async function waitForStatus(
  handle: WorkflowHandle,
  pred: (s: RolloutStatus) => boolean,
  timeoutMs = 60_000,
  what = 'status condition',
): Promise<RolloutStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: RolloutStatus | undefined;
  while (Date.now() < deadline) {
    try {
      last = await handle.query(statusQuery);
      if (pred(last)) return last;
    } catch {
      // not started yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(
    `timed out waiting for ${what}; last status: ${JSON.stringify(last && { state: last.state, stage: last.stage, detail: last.detail, targets: last.targets })}`,
  );
}

/** The first alert the webhook received for a service (alerts are sent right after the state changes). */
export async function waitForAlert(h: Harness, service: string, timeoutMs = 20_000): Promise<{ body: any; atMs: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = h.webhook.received.find((r) => r.body?.rollgate?.service === service);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no alert for ${service} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The rollout's result, or an error if it has not closed within `ms`. */
export async function resultWithin(handle: WorkflowHandle, ms: number): Promise<RolloutResult> {
  const result = handle.result() as Promise<RolloutResult>;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Close the run, so the result's long poll ends before the test closes its connection: a poll
      // still retrying then throws "Channel has been shut down" from a timer, and jest (one process
      // in CI) fails whichever test file runs next.
      result.catch(() => undefined);
      void handle
        .terminate(`test: did not close within ${ms} ms`)
        .catch(() => undefined)
        .finally(() => reject(new Error(`rollout did not close within ${ms} ms`)));
    }, ms);
    timer.unref();
  });
  try {
    return await Promise.race([result, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** The runs of one workflow id from its first run, in order, each with its history (the chain of continue-as-new). */
export async function runChain(client: Client, workflowId: string, firstRunId: string) {
  const runs: { runId: string; events: any[] }[] = [];
  for (let runId: string | undefined = firstRunId; runId;) {
    const events: any[] = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    runs.push({ runId, events });
    runId = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

/** Two Lambda targets of one service: `a` in us-east-1 (the canary) and `b` in eu-west-1. */
export function lambdaPair(service: string): LambdaTargetSpec[] {
  return [
    { name: 'a', provider: 'aws-lambda', region: 'us-east-1', function: `${service}-a`, alias: 'live' },
    { name: 'b', provider: 'aws-lambda', region: 'eu-west-1', function: `${service}-b`, alias: 'live' },
  ];
}
