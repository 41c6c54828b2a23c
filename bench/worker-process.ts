/**
 * A worker in its own process for the benchmarks (RSS, crash-to-resume, cold start), run from
 * compiled JavaScript as production runs it (bench/compiled.ts); with BENCH_PROVIDER=emulators its
 * activities get the production worker's dependencies (depsFromEnv) pointed at the emulators.
 * BENCH_TEMPORAL, BENCH_TASK_QUEUE, BENCH_BUNDLE (optional prebuilt bundle), BENCH_PROVIDER
 * (memory | emulators), BENCH_LAMBDA_ENDPOINT, BENCH_STATE_DIR, BENCH_STICKY_TIMEOUT_MS (another
 * sticky-queue timeout than rollgate's, to measure a candidate). Prints "worker ready <ms> <phases>":
 * <ms> is the time since the process started, <phases> JSON (modules loaded, connected to Temporal,
 * Worker.create done; each since the process started; its workflow cache size and V8 heap limit).
 */
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createRollgateWorker, depsFromEnv } from '../src/worker';
import { workflowCacheSize } from '../src/temporal/workflow-cache';
import { MemoryMetrics, MemoryProvider } from '../src/dev/memory-provider';
import type { ActivityDeps } from '../src/activities';

async function main() {
  // performance.now() counts from the process start: this is the time spent loading modules.
  const importedMs = performance.now();
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const env = process.env;
  const connection = await NativeConnection.connect({ address: env.BENCH_TEMPORAL! });
  const connectedMs = performance.now();
  const memory = env.BENCH_PROVIDER === 'memory';
  const deps: ActivityDeps = memory
    ? {
        providers: { 'aws-lambda': new MemoryProvider() },
        metrics: [new MemoryMetrics()],
        stateDir: env.BENCH_STATE_DIR!,
        hashKey: 'bench',
      }
    : emulatorDeps(env);
  const worker = await createRollgateWorker({
    connection,
    taskQueue: env.BENCH_TASK_QUEUE!,
    deps,
    workflowBundlePath: env.BENCH_BUNDLE || undefined,
    // The workflow cache is the worker's default (ROLLGATE_MAX_CACHED_WORKFLOWS, else derived from memory).
    workerOptions: env.BENCH_STICKY_TIMEOUT_MS ? { stickyQueueScheduleToStartTimeout: Number(env.BENCH_STICKY_TIMEOUT_MS) } : {},
  });
  const createdMs = performance.now();
  const run = worker.run();
  const phases = {
    importedMs: Math.round(importedMs),
    connectedMs: Math.round(connectedMs),
    createdMs: Math.round(createdMs),
    // createRollgateWorker's cache, computed in this process (its heap limit may differ from the bench's).
    cachedWorkflows: workflowCacheSize(),
    heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
  };
  console.log(`worker ready ${performance.now().toFixed(0)} ${JSON.stringify(phases)}`);
  await run;
}

/**
 * The production worker's own providers and metric sources (depsFromEnv, as `rollgate worker`
 * builds them), pointed at the emulators; the AWS SDK finds moto's test credentials in the
 * process environment, as it finds real ones in production.
 */
function emulatorDeps(env: NodeJS.ProcessEnv): ActivityDeps {
  Object.assign(env, {
    AWS_ENDPOINT_URL_LAMBDA: env.BENCH_LAMBDA_ENDPOINT,
    AWS_ENDPOINT_URL_CLOUDWATCH: env.BENCH_LAMBDA_ENDPOINT,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    ROLLGATE_STATE_DIR: env.BENCH_STATE_DIR,
    ROLLGATE_HASH_KEY: 'bench',
  });
  return depsFromEnv(env);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
