/**
 * One schedule's world: a fault proxy in front of the shared moto, its own Cloud Run and Cloud
 * Monitoring fakes, a webhook receiver, traffic simulators, and a rollgate worker on its own task
 * queue (in this process, or in a child process that can be SIGKILLed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { NativeConnection, Worker, WorkerOptions } from '@temporalio/worker';
import { GetAliasCommand, LambdaClient, ListVersionsByFunctionCommand } from '@aws-sdk/client-lambda';
import { createRollgateWorker } from '../../src/worker';
import { createRunnerWorker } from '../../src/runner';
import { FileArtifactStore } from '../../src/artifacts/store';
import type { ActivityDeps } from '../../src/activities';
import { LambdaProvider } from '../../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../../src/analysis/cloudwatch';
import { CloudRunProvider } from '../../src/providers/cloud-run';
import { CloudMonitoringMetrics } from '../../src/analysis/cloud-monitoring';
import { FaultProxy, type RecordedCall } from '../../src/dev/fault-proxy';
import { CloudRunFake } from '../../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../../src/dev/cloud-monitoring-fake';
import { CloudRunFaults } from '../../src/dev/cloud-run-faults';
import { createSampleFunction, TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import { TrafficSimulator } from '../../src/dev/traffic-simulator';
import { CloudRunTrafficSimulator } from '../../src/dev/cloud-run-traffic';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec } from '../../src/spec/schema';
import { imageFor } from './spec-gen';

/** The variable the generated specs name as notify.webhook_env (each env's worker resolves it to its receiver). */
export const FAULTS_WEBHOOK_ENV = 'ROLLGATE_WEBHOOK_FAULTS';

/** Servers and connections shared by every schedule of a run. */
export interface Shared {
  temporalAddress: string;
  motoUrl: string;
  bundlePath: string;
  stateDir: string;
  connection: NativeConnection;
  client: Client;
  /** The Temporal client's calls in flight (method, age, caller): none once the checker has finished. */
  inFlightCalls?: () => string[];
  /** Stop the dev server, wait `downMs`, start it again on the same SQLite file and port (only when this process started it). */
  restartServer?: (downMs: number) => Promise<void>;
}

/** Provider deadlines for the schedules' workers (short, so that a stuck wait is retried within a schedule). */
export const CLOUD_RUN_OPERATION_TIMEOUT_MS = 8_000;

export interface WebhookReceiver {
  url: string;
  received: { body: any; atMs: number }[];
  refused: number;
  failNext(n: number, status: number): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  let fail = { n: 0, status: 500 };
  const r: WebhookReceiver = {
    url: '',
    received: [],
    refused: 0,
    failNext: (n, status) => (fail = { n, status }),
    close: () => new Promise((res) => server.close(() => res())),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (fail.n > 0) {
        fail.n--;
        r.refused++;
        res.writeHead(fail.status);
        return res.end('try later');
      }
      try {
        r.received.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'), atMs: Date.now() });
      } catch {
        r.received.push({ body: null, atMs: Date.now() });
      }
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  return r;
}

const lambdas = (spec: RolloutSpec) => spec.targets.filter((t): t is LambdaTargetSpec => t.provider === 'aws-lambda');
const runs = (spec: RolloutSpec) => spec.targets.filter((t): t is CloudRunTargetSpec => t.provider === 'cloud-run');

export class ScheduleEnv {
  proxy!: FaultProxy;
  cloudRun!: CloudRunFake;
  cloudRunFaults!: CloudRunFaults;
  monitoring!: CloudMonitoringFake;
  webhook!: WebhookReceiver;
  readonly workDir: string;
  /** Targets whose new version fails 30 % of requests (a metric breach). */
  readonly breaching = new Set<string>();
  /** Stable revision per Cloud Run target (Lambda: version 1). */
  readonly stable: Record<string, string> = {};
  private worker?: { worker: Worker; run: Promise<void> };
  private child?: ChildProcess;
  private runner?: { worker: Worker; run: Promise<void> };
  /** The runner's task queue: pass it to startRollout (several schedules share this process's environment). */
  get runnerTaskQueue(): string {
    return `${this.taskQueue}-runner`;
  }
  private providers: { close(): Promise<void> }[] = [];
  private sims: { stop(): void }[] = [];
  private lambdaClients = new Map<string, LambdaClient>();
  kills = 0;

  constructor(
    readonly shared: Shared,
    readonly taskQueue: string,
    readonly childWorker: boolean,
  ) {
    this.workDir = join(shared.stateDir, taskQueue);
    mkdirSync(this.workDir, { recursive: true });
  }

  async start(): Promise<this> {
    process.env.METADATA_SERVER_DETECTION = 'none';
    [this.proxy, this.cloudRun, this.monitoring, this.webhook] = await Promise.all([
      new FaultProxy(this.shared.motoUrl).start(),
      new CloudRunFake().start(),
      new CloudMonitoringFake().start(),
      startWebhookReceiver(),
    ]);
    this.cloudRunFaults = new CloudRunFaults(this.cloudRun);
    // The runner (build/test/migration commands) lives as long as the schedule; kills hit the worker only.
    const runner = await createRunnerWorker({
      connection: this.shared.connection,
      taskQueue: this.runnerTaskQueue,
      deps: { stateDir: join(this.workDir, 'runner'), artifactStore: new FileArtifactStore(join(this.workDir, 'artifacts')) },
    });
    this.runner = { worker: runner, run: runner.run() };
    return this;
  }

  /** Lambda functions at version 1 behind alias `live`, Cloud Run services 100 % on one ready revision. */
  async seed(spec: RolloutSpec): Promise<void> {
    for (const t of lambdas(spec)) {
      await createSampleFunction(this.shared.motoUrl, t, { DB_PASSWORD: 's3cret-value', LOG_LEVEL: 'info' });
      this.stable[t.name] = '1';
    }
    for (const t of runs(spec)) {
      const svc = this.cloudRun.seedService({
        project: t.project,
        region: t.region,
        service: t.service,
        image: imageFor(t.service, 'r1'),
        env: { RELEASE_ID: 'initial', SCHEMA_REV: '0', LOG_LEVEL: 'info' },
        secretEnv: { DB_PASSWORD: ['db-password', '3'] },
      });
      this.stable[t.name] = String(svc.latestReadyRevision).split('/').pop()!;
    }
  }

  /** Healthy traffic (0.1 % errors) on every version, 30 % errors on the new version of breaching targets. */
  startTraffic(spec: RolloutSpec): void {
    const bad = (name: string, version: string) => this.breaching.has(name) && version !== this.stable[name];
    this.sims.push(
      new TrafficSimulator(this.shared.motoUrl, this.shared.motoUrl, lambdas(spec), {
        requestsPerTick: 200,
        errorRate: (t, v) => (bad(t.name, v) ? 0.3 : 0.001),
      }).start(500),
      new CloudRunTrafficSimulator(this.cloudRun.address, this.monitoring, runs(spec), {
        requestsPerTick: 200,
        errorRate: (t, rev) => (bad(t.name, rev) ? 0.3 : 0.001),
      }).start(500),
    );
  }

  deps(): ActivityDeps {
    const lambda = new LambdaProvider({ endpoint: this.proxy.url, credentials: TEST_CREDENTIALS, maxAttempts: 4 });
    const cloudRun = new CloudRunProvider({
      endpoint: this.cloudRun.address,
      probeUrlRewrite: (u) => this.cloudRun.loopbackUrl(u),
      pollIntervalMs: 100,
      maxPollIntervalMs: 500,
      operationTimeoutMs: CLOUD_RUN_OPERATION_TIMEOUT_MS,
    });
    const monitoring = new CloudMonitoringMetrics({ endpoint: this.monitoring.address });
    this.providers.push(cloudRun, monitoring);
    return {
      providers: { 'aws-lambda': lambda, 'cloud-run': cloudRun },
      metrics: [new CloudWatchMetrics({ endpoint: this.shared.motoUrl, credentials: TEST_CREDENTIALS }), monitoring],
      stateDir: this.workDir,
      hashKey: 'fault-hash-key',
      client: this.shared.client,
      webhookTimeoutMs: 5_000,
      // Specs name the webhook by variable (notify.webhook_env); this env's receiver is its value.
      secretEnv: { [FAULTS_WEBHOOK_ENV]: this.webhook.url },
    };
  }

  /**
   * `workerOptions`: Worker tuning (load mode), passed to createRollgateWorker; a child worker gets
   * it as JSON in ROLLGATE_FAULTS_WORKER_OPTIONS, so only plain values (numbers, duration strings).
   */
  async startWorker(workerOptions?: Partial<WorkerOptions>): Promise<void> {
    if (this.childWorker) {
      this.child = await spawnChildWorker(this.childEnv(workerOptions));
      return;
    }
    const worker = await createRollgateWorker({
      connection: this.shared.connection,
      taskQueue: this.taskQueue,
      deps: this.deps(),
      workflowBundlePath: this.shared.bundlePath,
      ...(workerOptions ? { workerOptions } : {}),
    });
    this.worker = { worker, run: worker.run() };
  }

  private childEnv(workerOptions?: Partial<WorkerOptions>): Record<string, string> {
    return {
      ROLLGATE_TEST_TEMPORAL: this.shared.temporalAddress,
      ROLLGATE_TASK_QUEUE: this.taskQueue,
      ROLLGATE_LAMBDA_ENDPOINT: this.proxy.url,
      ROLLGATE_CLOUDWATCH_ENDPOINT: this.shared.motoUrl,
      ROLLGATE_TEST_BUNDLE: this.shared.bundlePath,
      ROLLGATE_STATE_DIR: this.workDir,
      ROLLGATE_CLOUD_RUN_ENDPOINT: this.cloudRun.address,
      ROLLGATE_CLOUD_MONITORING_ENDPOINT: this.monitoring.address,
      ROLLGATE_CLOUD_RUN_PROBE_VIA: this.cloudRun.httpUrl,
      ROLLGATE_CLOUD_RUN_OPERATION_TIMEOUT_MS: String(CLOUD_RUN_OPERATION_TIMEOUT_MS),
      [FAULTS_WEBHOOK_ENV]: this.webhook.url,
      ...(workerOptions ? { ROLLGATE_FAULTS_WORKER_OPTIONS: JSON.stringify(workerOptions) } : {}),
    };
  }

  /**
   * One more deploy worker on the same task queue, in its own process (a fleet: fleet failover).
   * It lives until stopWorker(); killWorker() still kills the first one.
   */
  async addFleetWorker(workerOptions?: Partial<WorkerOptions>): Promise<number> {
    const c = await spawnChildWorker(this.childEnv(workerOptions));
    this.fleet.push(c);
    return c.pid!;
  }
  private fleet: ChildProcess[] = [];

  /** The child worker's process id (undefined for an in-process worker). */
  workerPid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGKILL the worker process (child workers only; an in-process worker cannot be killed). */
  async killWorker(): Promise<boolean> {
    const c = this.child;
    if (!c) return false;
    this.child = undefined;
    this.kills++;
    await new Promise<void>((res) => {
      if (c.exitCode !== null || c.signalCode !== null) return res();
      c.once('exit', () => res());
      c.kill('SIGKILL');
    });
    return true;
  }

  hasWorker(): boolean {
    return !!(this.child || this.worker);
  }

  /** Graceful stop: in-flight activities finish first (their late writes land before the last check). */
  async stopWorker(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) {
      w.worker.shutdown();
      await w.run.catch(() => undefined);
    }
    const children = [this.child, ...this.fleet.splice(0)];
    this.child = undefined;
    await Promise.all(
      children.map((c) =>
        c && c.exitCode === null && c.signalCode === null
          ? new Promise<void>((res) => {
              const timer = setTimeout(() => c.kill('SIGKILL'), 40_000);
              c.once('exit', () => {
                clearTimeout(timer);
                res();
              });
              c.kill('SIGTERM');
            })
          : undefined,
      ),
    );
  }

  /** Provider fix: every injected fault and slow knob removed. */
  clearFaults(): void {
    this.proxy.clearFaults();
    this.cloudRunFaults.clear();
    this.cloudRun.knobs.operationPolls = 1;
  }

  /** Time of the last traffic write either emulator saw (alias updates, Cloud Run updates). */
  lastWriteMs(): number {
    const isWrite = (c: RecordedCall) => c.method === 'PUT' || c.method === 'POST';
    let last = 0;
    for (let i = this.proxy.calls.length - 1; i >= 0; i--)
      if (isWrite(this.proxy.calls[i]) && !/\/invocations/.test(this.proxy.calls[i].path)) {
        last = this.proxy.calls[i].atMs;
        break;
      }
    return Math.max(last, this.cloudRunWriteMs);
  }
  private cloudRunWriteMs = 0;
  private lastUpdateCount = -1;
  /** Call often: notices new Cloud Run UpdateService calls. */
  sampleWrites(): void {
    const n = this.cloudRun.callCount('UpdateService');
    if (n !== this.lastUpdateCount) {
      this.lastUpdateCount = n;
      this.cloudRunWriteMs = Date.now();
    }
  }

  lambdaClient(region: string): LambdaClient {
    let c = this.lambdaClients.get(region);
    if (!c)
      this.lambdaClients.set(region, (c = new LambdaClient({ endpoint: this.shared.motoUrl, region, credentials: TEST_CREDENTIALS })));
    return c;
  }

  /** Ground truth from moto itself (not through the proxy). */
  async aliasState(t: LambdaTargetSpec): Promise<{ version: string; weights: Record<string, number> }> {
    const a = await this.lambdaClient(t.region).send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
    return { version: a.FunctionVersion!, weights: a.RoutingConfig?.AdditionalVersionWeights ?? {} };
  }

  /** Published versions whose environment carries RELEASE_ID = release. */
  async releaseVersions(t: LambdaTargetSpec, release: string): Promise<string[]> {
    const out: string[] = [];
    let marker: string | undefined;
    do {
      const page = await this.lambdaClient(t.region).send(new ListVersionsByFunctionCommand({ FunctionName: t.function, Marker: marker }));
      for (const v of page.Versions ?? [])
        if (v.Version !== '$LATEST' && v.Environment?.Variables?.RELEASE_ID === release) out.push(v.Version!);
      marker = page.NextMarker;
    } while (marker);
    return out;
  }

  async close(): Promise<void> {
    for (const s of this.sims) s.stop();
    await this.stopWorker();
    if (this.runner) {
      this.runner.worker.shutdown();
      await this.runner.run.catch(() => undefined);
      this.runner = undefined;
    }
    for (const p of this.providers) await p.close().catch(() => undefined);
    for (const c of this.lambdaClients.values()) c.destroy();
    await Promise.all([this.proxy?.stop(), this.webhook?.close(), this.cloudRun?.stop(), this.monitoring?.stop()]);
  }
}

/** A rollgate worker in its own OS process (scripts/faults/worker-child.ts); resolves when it polls. */
async function spawnChildWorker(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'worker-child.ts')], {
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (b) => (out = (out + b).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child worker did not start: ${out}`)), 90_000);
    child.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('worker ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child worker exited ${code}: ${out}`));
    });
  });
  return child;
}
