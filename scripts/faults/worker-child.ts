/**
 * A fault-schedule worker in its own OS process, so that the checker can SIGKILL it. Same wiring
 * as ScheduleEnv.deps(), configured by the environment ScheduleEnv.startWorker() sets. Prints
 * "worker ready" when it polls.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { createRollgateWorker } from '../../src/worker';
import { LambdaProvider } from '../../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../../src/analysis/cloudwatch';
import { CloudRunProvider, probeUrlVia } from '../../src/providers/cloud-run';
import { CloudMonitoringMetrics } from '../../src/analysis/cloud-monitoring';
import { TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';

async function main() {
  const env = process.env;
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  process.env.METADATA_SERVER_DETECTION = 'none';
  const address = env.ROLLGATE_TEST_TEMPORAL!;
  const connection = await untilConnected(() => NativeConnection.connect({ address }));
  const client = new Client({ connection: await untilConnected(() => Connection.connect({ address })) });
  const worker = await createRollgateWorker({
    connection,
    taskQueue: env.ROLLGATE_TASK_QUEUE!,
    workflowBundlePath: env.ROLLGATE_TEST_BUNDLE,
    deps: {
      providers: {
        'aws-lambda': new LambdaProvider({ endpoint: env.ROLLGATE_LAMBDA_ENDPOINT, credentials: TEST_CREDENTIALS, maxAttempts: 4 }),
        'cloud-run': new CloudRunProvider({
          endpoint: env.ROLLGATE_CLOUD_RUN_ENDPOINT,
          probeUrlRewrite: probeUrlVia(env.ROLLGATE_CLOUD_RUN_PROBE_VIA!),
          pollIntervalMs: 100,
          maxPollIntervalMs: 500,
          operationTimeoutMs: Number(env.ROLLGATE_CLOUD_RUN_OPERATION_TIMEOUT_MS ?? 8000),
        }),
      },
      metrics: [
        new CloudWatchMetrics({ endpoint: env.ROLLGATE_CLOUDWATCH_ENDPOINT, credentials: TEST_CREDENTIALS }),
        new CloudMonitoringMetrics({ endpoint: env.ROLLGATE_CLOUD_MONITORING_ENDPOINT }),
      ],
      stateDir: env.ROLLGATE_STATE_DIR!,
      hashKey: 'fault-hash-key',
      client,
      webhookTimeoutMs: 5_000,
    },
    // Tuning from the checker's load mode (JSON), else the factory's defaults.
    ...(env.ROLLGATE_FAULTS_WORKER_OPTIONS ? { workerOptions: JSON.parse(env.ROLLGATE_FAULTS_WORKER_OPTIONS) } : {}),
  });
  console.log('worker ready');
  await worker.run();
  await connection.close();
  await client.connection.close();
}

/**
 * The dev server may be down for a restart (--restarts) when this worker starts (a schedule's start,
 * or the restart after a kill): keep trying, as a supervised worker would be restarted until it connects.
 */
async function untilConnected<T>(connect: () => Promise<T>, withinMs = 60_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await connect();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
