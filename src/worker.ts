/**
 * The rollgate worker: rollout and lock workflows plus the activities, wired to real clients. It
 * registers no command activities: builds, tests and migrations run on `rollgate runner`
 * (src/runner.ts); deploys read the artifact from the shared store (ROLLGATE_ARTIFACT_STORE).
 * Endpoints come from the AWS SDK's standard variables (AWS_ENDPOINT_URL_LAMBDA,
 * AWS_ENDPOINT_URL_CLOUDWATCH, AWS_REGION credentials chain) so the same worker talks to AWS or moto.
 * Google Cloud (Cloud Run, Cloud Monitoring) uses Application Default Credentials, unless
 * ROLLGATE_CLOUD_RUN_ENDPOINT / ROLLGATE_CLOUD_MONITORING_ENDPOINT (host:port, plaintext gRPC)
 * point it at the dev/test fakes; ROLLGATE_CLOUD_RUN_PROBE_VIA (http://127.0.0.1:PORT, dev/test only)
 * sends tag-URL probes through the Cloud Run fake's loopback HTTP server, and
 * ROLLGATE_CLOUD_RUN_PROBE_ID_TOKEN=1 sends an ID token with probes (services that require IAM).
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities';
import { LambdaProvider } from './providers/aws-lambda';
import { CloudWatchMetrics } from './analysis/cloudwatch';
import { CloudRunProvider, probeUrlVia } from './providers/cloud-run';
import { CloudMonitoringMetrics } from './analysis/cloud-monitoring';
import { artifactStoreFromUrl } from './artifacts/store';
import { identityVerifierFromEnv, verifierConfigFromEnv } from './identity/verifier';
import { TASK_QUEUE } from './contract';
import { MAX_CACHED_WORKFLOWS_VAR, workflowCacheSize } from './temporal/workflow-cache';
import { workflowThreadOptions, workflowThreads } from './temporal/workflow-threads';
import { connectClient, connectionSettingsFromEnv, ensureSearchAttributes } from './temporal/connection';
import type { Client } from '@temporalio/client';
// --- observability + payload codec (src/observability, src/temporal/codec.ts) ---
import { setupObservabilityFromEnv } from './observability';
import { alertReceiverConfigFromEnv, startAlertReceiver, type AlertReceiver } from './alerts/receiver';
import { redactingActivityInterceptor } from './security/activity-redaction';
import { secrets } from './security/redact';
import { ALLOWED_URLS_VAR, UrlPolicy } from './security/url-policy';

/** The sinks workflow code calls, as no-ops (for replay workers and workers without observability). */
export const noopSinks = { rolloutMetrics: { record: { fn: () => undefined, callDuringReplay: false } } };

/**
 * A crashed worker's sticky queue is abandoned after this long and its rollouts move on to a live
 * worker (the SDK default is 10 s), so crash -> resume is about timer + this + replay. Healthy
 * workers pick sticky tasks up in milliseconds; a task that waits longer on a busy worker is moved
 * to the shared queue and replayed from its whole history. 1 s, measured idle at 2,000 parked
 * (docs/DEVELOPMENT.md "Decisions", the sticky-queue timeout): a pause + resume burst to all 2,000
 * moves nearly every task to the shared queue with 2 s as with 1 s (it is CPU-bound), while 1 s
 * brings crash -> resume from 2.5 s to 1.5 s.
 */
export const STICKY_QUEUE_TIMEOUT_MS = 1_000;

/** Activities one workflow task may hand to its own worker directly (eager), e.g. the reverts of every target. */
export const EAGER_ACTIVITIES_PER_TASK = 100;

export interface RollgateWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  deps: ActivityDeps;
  /** A prebuilt workflow bundle (faster cold start); otherwise workflows are bundled at start. */
  workflowBundlePath?: string;
  /** Extra Worker options (tuning, identity). */
  workerOptions?: Partial<WorkerOptions>;
}

export async function createRollgateWorker(o: RollgateWorkerOptions): Promise<Worker> {
  const workflowSource = o.workflowBundlePath
    ? { workflowBundle: { codePath: o.workflowBundlePath } }
    : { workflowsPath: require.resolve('./workflows') };
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    ...workflowSource,
    activities: createActivities(o.deps),
    shutdownGraceTime: '30 seconds',
    // Workflows emit metric events through this sink; a no-op unless observability is set up
    // (runWorkerFromEnv passes the real one in workerOptions).
    sinks: noopSinks,
    stickyQueueScheduleToStartTimeout: STICKY_QUEUE_TIMEOUT_MS,
    // A breach schedules one revert per target in one workflow task. Every revert the worker takes
    // from that task's own response (eager) skips the task queue's dispatch; the SDK takes 3 and
    // leaves the others to the activity pollers (test/revert-dispatch.test.ts: under load those 7
    // started 64-387 ms after being scheduled, the eager ones within 1 ms). Bounded by the free
    // activity slots (100 by default) in any case.
    maxEagerActivityReservationsPerWorkflowTask: EAGER_ACTIVITIES_PER_TASK,
    // Heartbeats reach the server within a second (SDK default: 80 % of the heartbeat timeout, 8 s),
    // so an attempt the server timed out learns it is cancelled (NOT_FOUND) before its next write,
    // and a cancelled traffic step stops that much sooner. Cost: one heartbeat call a second per
    // running traffic activity.
    maxHeartbeatThrottleInterval: '1 second',
    // Bounded cache, one V8 context for every workflow (src/temporal/workflow-cache.ts): past the
    // cache, parked rollouts are evicted and replayed when they wake, so memory stays flat.
    maxCachedWorkflows: workflowCacheSize(),
    reuseV8Context: true,
    // One thread unless ROLLGATE_WORKFLOW_THREADS says more (src/temporal/workflow-threads.ts).
    ...workflowThreadOptions(workflowThreads()),
    ...o.workerOptions,
    // Every activity result and failure passes the redactor before it reaches history (src/security).
    interceptors: {
      ...o.workerOptions?.interceptors,
      activity: [redactingActivityInterceptor, ...(o.workerOptions?.interceptors?.activity ?? [])],
    },
  });
}

/**
 * Activity dependencies from the environment (real AWS, or moto via AWS_ENDPOINT_URL_*; real Google
 * Cloud, or the fakes via ROLLGATE_CLOUD_*). Google clients are created, and their libraries
 * loaded, on first use, so a worker that never sees a cloud-run target never talks to Google and
 * starts without loading them (test/worker-start.unit.test.ts).
 */
export function depsFromEnv(env: NodeJS.ProcessEnv = process.env, client?: Client): ActivityDeps {
  const stateDir = resolve(env.ROLLGATE_STATE_DIR || '.state');
  return {
    providers: {
      'aws-lambda': new LambdaProvider({ endpoint: env.AWS_ENDPOINT_URL_LAMBDA || undefined }),
      'cloud-run': new CloudRunProvider({
        endpoint: env.ROLLGATE_CLOUD_RUN_ENDPOINT || undefined,
        probeUrlRewrite: env.ROLLGATE_CLOUD_RUN_PROBE_VIA ? probeUrlVia(env.ROLLGATE_CLOUD_RUN_PROBE_VIA) : undefined,
        probeIdToken: ['1', 'true'].includes(env.ROLLGATE_CLOUD_RUN_PROBE_ID_TOKEN ?? ''),
      }),
    },
    metrics: [
      new CloudWatchMetrics({ endpoint: env.AWS_ENDPOINT_URL_CLOUDWATCH || undefined }),
      new CloudMonitoringMetrics({ endpoint: env.ROLLGATE_CLOUD_MONITORING_ENDPOINT || undefined }),
    ],
    stateDir,
    artifactStore: artifactStoreFromUrl(env.ROLLGATE_ARTIFACT_STORE || undefined, stateDir),
    hashKey: env.ROLLGATE_HASH_KEY || randomBytes(32).toString('hex'),
    client,
    // Spec URLs: ROLLGATE_ALLOWED_URLS, nothing when unset (src/security/url-policy.ts).
    urlPolicy: UrlPolicy.fromEnv(env),
    secretEnv: env,
    identityVerifier: identityVerifierFromEnv(env),
  };
}

/** `rollgate worker`: run until SIGINT/SIGTERM, then drain in-flight activities and exit. */
export async function runWorkerFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // Bad alert receiver settings fail before anything connects.
  const alertConfig = env.ROLLGATE_ALERT_RECEIVER_PORT ? alertReceiverConfigFromEnv(env) : undefined;
  // A half-configured identity verifier is refused before anything connects (the error names the variable).
  const oidc = verifierConfigFromEnv(env);
  // So is a bad ROLLGATE_MAX_CACHED_WORKFLOWS or ROLLGATE_WORKFLOW_THREADS.
  const cacheSize = workflowCacheSize(env);
  const threads = workflowThreads(env);
  // Runtime.install (JSON logger, SDK Prometheus exporter) must precede NativeConnection.connect.
  const obs = await setupObservabilityFromEnv(env);
  // The worker's own credentials and webhook URLs never appear in what it logs or records.
  secrets.registerSecretEnv(env);
  const settings = connectionSettingsFromEnv(env);
  const client = await connectClient(settings);
  const note = await ensureSearchAttributes(client);
  if (note) console.error(`rollgate worker: ${note}`);
  const connection = await NativeConnection.connect({ address: settings.address, apiKey: settings.apiKey, tls: settings.tls });
  const deps = depsFromEnv(env, client);
  const worker = await createRollgateWorker({
    connection,
    namespace: settings.namespace,
    taskQueue: env.ROLLGATE_TASK_QUEUE || TASK_QUEUE,
    deps,
    workflowBundlePath: env.ROLLGATE_WORKFLOW_BUNDLE || undefined,
    // observability sinks + payload codec (undefined when ROLLGATE_CODEC_KEY is unset)
    workerOptions: {
      sinks: obs.sinks,
      dataConverter: settings.dataConverter,
      maxCachedWorkflows: cacheSize,
      ...workflowThreadOptions(threads),
    },
  });
  // Alerts from Alertmanager / CloudWatch (src/alerts): in this process when a port is set.
  let alerts: AlertReceiver | undefined;
  if (alertConfig) {
    const logger = Runtime.instance().logger;
    alerts = await startAlertReceiver(client, alertConfig, (level, message, meta) => logger.log(level, message, meta));
    console.error(`rollgate worker: alert receiver on ${alerts.url} (POST /alertmanager, /sns)`);
  }
  obs.setReady(true);
  console.error(
    `rollgate worker: polling task queue ${env.ROLLGATE_TASK_QUEUE || TASK_QUEUE} on ${settings.address}/${settings.namespace}; ` +
      `spec URLs allowed: ${deps.urlPolicy!.describe()} (${ALLOWED_URLS_VAR}); ` +
      `identities ${oidc ? `verified (issuer ${oidc.issuer}, audience ${oidc.audience})` : 'unverified (no ROLLGATE_OIDC_ISSUER)'}; ` +
      `workflow cache ${cacheSize} (${MAX_CACHED_WORKFLOWS_VAR})`,
  );
  // Worker.run() installs SIGINT/SIGTERM handlers that start a graceful shutdown.
  await worker.run();
  await alerts?.close();
  await obs.close();
  await connection.close();
  await client.connection.close();
}

if (require.main === module) {
  runWorkerFromEnv().catch((err) => {
    console.error(`rollgate worker: ${(err as Error).message}`);
    process.exit(1);
  });
}
