/**
 * A rollgate worker as a separate OS process (for crash tests: the parent SIGKILLs it).
 * Configured by env: ROLLGATE_TEST_TEMPORAL, ROLLGATE_TASK_QUEUE, ROLLGATE_LAMBDA_ENDPOINT,
 * ROLLGATE_TEST_BUNDLE, ROLLGATE_STATE_DIR; for Cloud Run targets also ROLLGATE_CLOUD_RUN_ENDPOINT,
 * ROLLGATE_CLOUD_MONITORING_ENDPOINT (host:port of the fakes) and ROLLGATE_CLOUD_RUN_PROBE_VIA (the
 * Cloud Run fake's loopback HTTP URL). Prints "worker ready" when polling. It registers no command
 * activities: the test file's harness runs the runner in its own process.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { createRollgateWorker } from '../../src/worker';
import { artifactStoreFromUrl } from '../../src/artifacts/store';
import { LambdaProvider } from '../../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../../src/analysis/cloudwatch';
import { TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import type { ActivityDeps } from '../../src/activities';
import { CloudRunProvider, probeUrlVia } from '../../src/providers/cloud-run';
import { CloudMonitoringMetrics } from '../../src/analysis/cloud-monitoring';

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const address = process.env.ROLLGATE_TEST_TEMPORAL!;
  const lambdaEndpoint = process.env.ROLLGATE_LAMBDA_ENDPOINT!;
  const connection = await NativeConnection.connect({ address });
  const client = new Client({ connection: await Connection.connect({ address }) });
  const deps: ActivityDeps = {
    providers: { 'aws-lambda': new LambdaProvider({ endpoint: lambdaEndpoint, credentials: TEST_CREDENTIALS, maxAttempts: 4 }) },
    metrics: [
      new CloudWatchMetrics({ endpoint: process.env.ROLLGATE_CLOUDWATCH_ENDPOINT || lambdaEndpoint, credentials: TEST_CREDENTIALS }),
    ],
    stateDir: process.env.ROLLGATE_STATE_DIR!,
    // The file's shared store (default file://$ROLLGATE_STATE_DIR/artifacts, where the harness's runner puts them).
    artifactStore: artifactStoreFromUrl(process.env.ROLLGATE_ARTIFACT_STORE || undefined, process.env.ROLLGATE_STATE_DIR!),
    hashKey: 'test-hash-key',
    client,
  };
  if (process.env.ROLLGATE_CLOUD_RUN_ENDPOINT) {
    process.env.METADATA_SERVER_DETECTION = 'none';
    const via = process.env.ROLLGATE_CLOUD_RUN_PROBE_VIA;
    deps.providers['cloud-run'] = new CloudRunProvider({
      endpoint: process.env.ROLLGATE_CLOUD_RUN_ENDPOINT,
      probeUrlRewrite: via ? probeUrlVia(via) : undefined,
      pollIntervalMs: 100,
      maxPollIntervalMs: 500,
      operationTimeoutMs: 60_000,
    });
    deps.metrics.push(new CloudMonitoringMetrics({ endpoint: process.env.ROLLGATE_CLOUD_MONITORING_ENDPOINT }));
  }
  const worker = await createRollgateWorker({
    connection,
    taskQueue: process.env.ROLLGATE_TASK_QUEUE!,
    deps,
    workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
  });
  console.log('worker ready');
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
