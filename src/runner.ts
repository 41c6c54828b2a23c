/**
 * The rollgate runner: a worker with only the command activities (build, test, migration,
 * schema-rev) on its own task queue, ROLLGATE_RUNNER_TASK_QUEUE (default `rollgate-runner`).
 *
 * It needs a Temporal connection that may poll that queue (no admin rights: it registers no search
 * attributes), the payload codec key when payloads are encrypted, and write access to the artifact
 * store (ROLLGATE_ARTIFACT_STORE; for s3:// the standard AWS credential chain and
 * AWS_ENDPOINT_URL_S3). No Lambda, Cloud Run or CloudWatch credentials: it never talks to a target.
 * Commands get none of its environment beyond PATH, HOME and ROLLGATE_RUNNER_ENV_ALLOW.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createRunnerActivities, type RunnerDeps } from './activities';
import { parseEnvAllow } from './activities/commands';
import { artifactStoreFromUrl } from './artifacts/store';
import { RUNNER_TASK_QUEUE } from './contract';
import { connectionSettingsFromEnv } from './temporal/connection';
import { JsonLogger } from './observability';
import { parseLogLevel } from './observability/logger';
import { redactingActivityInterceptor } from './security/activity-redaction';
import { secrets } from './security/redact';

export interface RunnerWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  deps: RunnerDeps;
  /** Commands run at the same time (default `defaultRunnerConcurrency()`); the rest wait on the task queue. */
  concurrency?: number;
  workerOptions?: Partial<WorkerOptions>;
}

/**
 * Two commands per core. Builds and tests are processes that want a core each: a burst of releases
 * (500 rollouts started in 10 s) would otherwise fork 100 of them at once on a 2-core runner, and
 * each one's heartbeat then starves past its 30 s timeout and fails a healthy build. Commands
 * beyond the bound wait on the task queue (schedule-to-start: 10 minutes), which costs nothing.
 */
export function defaultRunnerConcurrency(): number {
  return Math.max(2, availableParallelism() * 2);
}

/** `ROLLGATE_RUNNER_CONCURRENCY`: a positive integer, or unset for the default. */
export function parseRunnerConcurrency(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return defaultRunnerConcurrency();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`ROLLGATE_RUNNER_CONCURRENCY must be a positive integer (got "${raw}")`);
  return n;
}

/** An activity-only worker: no workflows, only the command activities. */
export async function createRunnerWorker(o: RunnerWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? RUNNER_TASK_QUEUE,
    activities: createRunnerActivities(o.deps),
    maxConcurrentActivityTaskExecutions: o.concurrency ?? defaultRunnerConcurrency(),
    // A build is cut off (SIGTERM to its process group) if it has not finished by then.
    shutdownGraceTime: '30 seconds',
    maxHeartbeatThrottleInterval: '1 second',
    ...o.workerOptions,
    // Command output tails and failures pass the redactor before they reach history (src/security).
    interceptors: {
      ...o.workerOptions?.interceptors,
      activity: [redactingActivityInterceptor, ...(o.workerOptions?.interceptors?.activity ?? [])],
    },
  });
}

/** Runner dependencies from the environment (state dir, artifact store, env allow-list). */
export function runnerDepsFromEnv(env: NodeJS.ProcessEnv = process.env): RunnerDeps {
  const stateDir = resolve(env.ROLLGATE_STATE_DIR || '.state');
  return {
    stateDir,
    artifactStore: artifactStoreFromUrl(env.ROLLGATE_ARTIFACT_STORE || undefined, stateDir),
    envAllow: parseEnvAllow(env.ROLLGATE_RUNNER_ENV_ALLOW),
    env,
  };
}

/** `rollgate runner`: run until SIGINT/SIGTERM, then let running commands finish (30 s) and exit. */
export async function runRunnerFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  Runtime.install({ logger: new JsonLogger({ level: parseLogLevel(env.ROLLGATE_LOG_LEVEL), base: { component: 'rollgate-runner' } }) });
  const settings = connectionSettingsFromEnv(env);
  const taskQueue = env.ROLLGATE_RUNNER_TASK_QUEUE || RUNNER_TASK_QUEUE;
  const deps = runnerDepsFromEnv(env);
  const concurrency = parseRunnerConcurrency(env.ROLLGATE_RUNNER_CONCURRENCY);
  // Its own credentials never appear in what it logs or records (allow-listed values: commandActivities).
  secrets.registerSecretEnv(env);
  const connection = await NativeConnection.connect({ address: settings.address, apiKey: settings.apiKey, tls: settings.tls });
  const worker = await createRunnerWorker({
    connection,
    namespace: settings.namespace,
    taskQueue,
    deps,
    concurrency,
    workerOptions: { dataConverter: settings.dataConverter },
  });
  console.error(
    `rollgate runner: polling task queue ${taskQueue} on ${settings.address}/${settings.namespace}; artifacts to ${deps.artifactStore!.url}; ${concurrency} commands at a time; ` +
      `commands get PATH, HOME${deps.envAllow!.length ? `, ${deps.envAllow!.join(', ')}` : ''} and what the spec declares`,
  );
  await worker.run();
  await connection.close();
}

if (require.main === module) {
  runRunnerFromEnv().catch((err) => {
    console.error(`rollgate runner: ${(err as Error).message}`);
    process.exit(1);
  });
}
