/**
 * rollgate benchmarks on the local dev server and emulators. Prints a table and writes JSON.
 * One file per benchmark (overhead.ts, breach.ts, alert.ts, parked.ts, crash.ts, coldstart.ts, fleet.ts,
 * sticky.ts); common.ts holds what they share (revert-timeline.ts, history-events.ts and sticky-burst.ts
 * the breakdowns); this file starts the servers and runs them in order.
 *
 *   npm run bench                  # everything, full sizes (several minutes)
 *   npm run bench -- --quick       # tiny sizes (the smoke run in the test suite)
 *   npm run bench -- --only overhead,breach --out /tmp/b.json
 *   npm run bench -- --only alert    # alert to revert (Alertmanager webhook POST -> 10 targets on stable)
 *   npm run bench -- --only fleet    # fleet failover (200 rollouts on 2 workers, one SIGKILLed)
 *   npm run bench -- --only sticky   # sticky-queue waits of one worker under a signal burst at 2,000 parked
 *   npm run bench -- --only breach,crash --quick   # the revert and crash -> resume breakdowns, 1 run each
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
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { startAllOrNone, startMoto, startTemporalDevServer } from '../src/dev/processes';
import { FaultProxy } from '../src/dev/fault-proxy';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import { createRunnerWorker } from '../src/runner';
import { bundleWorkflows } from '../scripts/bundle-workflows';
import { CLOUD_RUN_MAX_POLL_MS, CLOUD_RUN_POLL_MS, DB_DIR, LOAD_AT_START, ONLY, OUT, QUICK, STATE, rows, setServers } from './common';
import { benchOverhead } from './overhead';
import { benchBreach } from './breach';
import { benchAlert } from './alert';
import { benchParked } from './parked';
import { benchCrash } from './crash';
import { benchColdStart } from './coldstart';
import { benchFleet } from './fleet';
import { benchSticky } from './sticky';

async function main() {
  mkdirSync(STATE, { recursive: true });
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  process.env.METADATA_SERVER_DETECTION ??= 'none'; // the Google clients talk to the fakes: no credentials lookup
  const [temporal, moto, cloudRun, monitoring] = await startAllOrNone([
    // A file-backed store (10,000 rollouts outgrow memory), in a temp dir removed at the end.
    startTemporalDevServer({ dbFile: join(DB_DIR, 'temporal.db') }),
    startMoto(),
    new CloudRunFake().start(),
    new CloudMonitoringFake().start(),
  ] as const);
  if (process.env.BENCH_CLOUD_RUN_OPERATION_POLLS) cloudRun.knobs.operationPolls = Number(process.env.BENCH_CLOUD_RUN_OPERATION_POLLS);
  console.log(
    `Cloud Run fake (dev/test): ${cloudRun.address}, operations finish after ${cloudRun.knobs.operationPolls} poll(s); provider poll ${CLOUD_RUN_POLL_MS}-${CLOUD_RUN_MAX_POLL_MS} ms`,
  );
  const proxy = await new FaultProxy(moto.url).start();
  const nativeConnection = await NativeConnection.connect({ address: temporal.address });
  const client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  // The bundle the image ships (scripts/bundle-workflows.ts, run by the Dockerfile), as production loads it.
  const { path: bundlePath } = await bundleWorkflows(join(STATE, 'workflow-bundle.js'));
  setServers({ temporal, moto, proxy, cloudRun, monitoring, client, nativeConnection, bundlePath });
  const all: [string, () => Promise<void>][] = [
    ['overhead', benchOverhead],
    ['breach', benchBreach],
    ['alert', benchAlert],
    ['parked', benchParked],
    ['crash', benchCrash],
    ['coldstart', benchColdStart],
    ['fleet', benchFleet],
    ['sticky', benchSticky],
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
