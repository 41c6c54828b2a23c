/**
 * The embedded default, a CROSS-CLOUD rollout on loopback only: a local Temporal dev server (SQLite
 * under .state/demo), moto (AWS emulator), rollgate's dev/test fakes of the Cloud Run Admin API and
 * of Cloud Monitoring (src/dev/: no Cloud Run emulator exists), a rollgate worker and a runner, a sample Lambda
 * function in three AWS regions, a sample Cloud Run service in two GCP regions, and two releases:
 * - r1: canary on Lambda us-east-1, wave eu (Lambda eu-west-1 + Cloud Run europe-west1), wave
 *   apac-us (Lambda ap-southeast-2 + Cloud Run us-central1): promoted;
 * - r2: its new Lambda version and Cloud Run revision fail in Europe (SIMULATED metrics pushed into
 *   moto's CloudWatch and the Cloud Monitoring fake): the canary passes, wave eu breaches, every
 *   touched target in both clouds goes back to its previous version/revision, the pipeline pauses
 *   and the alert is printed;
 * - release train demo-train-t1 of two other services: `orders` (Lambda) first, then `payments`
 *   (Cloud Run), which depends on it; each member is promoted and held until the whole train is,
 *   then the train releases them.
 *
 *   bash scripts/demo.sh            # runs, then keeps everything up for the Temporal UI until Ctrl-C
 *   bash scripts/demo.sh --exit     # runs and exits (CI smoke)
 *   options: --fast (1 s bakes), --port N (Temporal port, 0 = any free; default 7233),
 *            --state DIR (its SQLite file, zips and artifacts; default .state/demo; the test gives
 *            each run its own: two test legs run at once in CI)
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { GetAliasCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { freePort, startMoto, startTemporalDevServer } from '../src/dev/processes';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { TrafficSimulator } from '../src/dev/traffic-simulator';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { CloudMonitoringFake } from '../src/dev/cloud-monitoring-fake';
import { CloudRunTrafficSimulator } from '../src/dev/cloud-run-traffic';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudRunProvider, cloudRunRevisionName } from '../src/providers/cloud-run';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { CloudMonitoringMetrics } from '../src/analysis/cloud-monitoring';
import { createRollgateWorker } from '../src/worker';
import { createRunnerWorker } from '../src/runner';
import { FileArtifactStore } from '../src/artifacts/store';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import { validateTrain } from '../src/spec/train';
import { startTrain, waitForTrain } from '../src/train-client';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, TargetSpec } from '../src/spec/schema';
import { abortSignal, RUNNER_TASK_QUEUE, rolloutWorkflowId, statusQuery, type RolloutResult, type RolloutStatus } from '../src/contract';
import { formatStatus } from '../src/cli/format';
import { startWebhookReceiver } from './demo-webhook';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const EXIT = flag('--exit');
const BAKE = flag('--fast') ? '1 second' : '3 seconds';
const ROOT = resolve(__dirname, '..');
const STATE = resolve(ROOT, option('--state', join('.state', 'demo')));
const SERVICE = 'checkout';
const PROJECT = 'demo-project';
const TASK_QUEUE = 'rollgate';
/** Where r2 is broken (SIMULATED): its new version/revision fails this share of requests there. */
const BROKEN_IN = new Set(['eu-west-1', 'europe-west1']);
const BROKEN_ERROR_RATE = 0.25;

// The Google clients talk plaintext gRPC to the fakes: never look for Google credentials.
process.env.METADATA_SERVER_DETECTION ??= 'none';

const stoppers: (() => Promise<void>)[] = [];
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
  }
  process.exit(code);
}
process.on('SIGINT', () => {
  console.log('\nstopping everything the demo started...');
  void stopAll(0);
});
process.on('SIGTERM', () => void stopAll(0));

const say = (s: string) => console.log(`\x1b[1m==>\x1b[0m ${s}`);

/** A deterministic, digest-pinned image reference per release (the fake runs no containers). */
const imageFor = (release: string, service = SERVICE) =>
  `europe-docker.pkg.dev/${PROJECT}/apps/${service}@sha256:${createHash('sha256').update(`${service}:${release}`).digest('hex')}`;

async function main() {
  mkdirSync(STATE, { recursive: true });
  Runtime.install({ logger: new DefaultLogger('ERROR') });

  const wanted = Number(option('--port', '7233'));
  const port = wanted === 0 || !(await portFree(wanted)) ? await freePort() : wanted;
  const uiPort = port === 7233 && (await portFree(8233)) ? 8233 : await freePort();
  say(`starting Temporal dev server on 127.0.0.1:${port} (SQLite: ${relative(ROOT, join(STATE, 'temporal.db'))})`);
  const temporal = await startTemporalDevServer({ dbFile: join(STATE, 'temporal.db'), ui: true, port, uiPort });
  stoppers.push(temporal.stop);
  const moto = await startMoto();
  stoppers.push(moto.stop);
  say(`moto (AWS emulator: Lambda, CloudWatch) listening on ${moto.url}`);
  const [cloudRun, monitoring] = await Promise.all([new CloudRunFake().start(), new CloudMonitoringFake().start()]);
  stoppers.push(
    () => cloudRun.stop(),
    () => monitoring.stop(),
  );
  say(
    `Cloud Run Admin API v2 fake listening on ${cloudRun.address} (gRPC; tag-URL probes via ${cloudRun.httpUrl})\n` +
      `    Cloud Monitoring fake listening on ${monitoring.address} (gRPC)\n` +
      `    both are rollgate's DEV/TEST FAKES (src/dev/), not Google: no Cloud Run emulator exists; they run no containers`,
  );
  const hook = await startWebhookReceiver((body) => say(`ALERT received by the demo webhook:\n    ${body.text}`));
  stoppers.push(hook.close);

  const connection = await NativeConnection.connect({ address: temporal.address });
  const client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  const cloudRunProvider = new CloudRunProvider({
    endpoint: cloudRun.address,
    probeUrlRewrite: (u) => cloudRun.loopbackUrl(u),
    pollIntervalMs: 100,
    maxPollIntervalMs: 500,
    operationTimeoutMs: 60_000,
  });
  const monitoringMetrics = new CloudMonitoringMetrics({ endpoint: monitoring.address });
  const cloudWatchMetrics = new CloudWatchMetrics({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const worker = await createRollgateWorker({
    connection,
    taskQueue: TASK_QUEUE,
    deps: {
      providers: {
        'aws-lambda': new LambdaProvider({ endpoint: moto.url, credentials: TEST_CREDENTIALS }),
        'cloud-run': cloudRunProvider,
      },
      metrics: [cloudWatchMetrics, monitoringMetrics],
      stateDir: STATE,
      hashKey: 'demo',
      client,
      // The webhook URL is the worker's secret: specs name the variable (notify.webhook_env).
      // Spec URLs: loopback only (the embedded default), which is where the demo's receiver listens.
      secretEnv: { [DEMO_WEBHOOK_ENV]: hook.url },
    },
  });
  const running = worker.run();
  stoppers.push(async () => {
    worker.shutdown();
    await running;
    await cloudRunProvider.close();
    await monitoringMetrics.close();
  });
  say(`worker polling task queue "${TASK_QUEUE}"`);
  // The runner: build/test/migration commands on their own queue, no cloud credentials, its own state
  // folder; artifacts in the single-machine file:// store the worker deploys from.
  const runner = await createRunnerWorker({
    connection,
    taskQueue: RUNNER_TASK_QUEUE,
    deps: { stateDir: join(STATE, 'runner'), artifactStore: new FileArtifactStore(join(STATE, 'artifacts')) },
  });
  const runnerRun = runner.run();
  stoppers.push(async () => {
    runner.shutdown();
    await runnerRun;
  });
  say(`runner polling task queue "${RUNNER_TASK_QUEUE}" (artifacts in .state/demo/artifacts)`);
  say(`Temporal UI: ${temporal.uiUrl}  (filter: RolloutService = "${SERVICE}")`);

  await closeLeftovers(client);

  const lambdas: LambdaTargetSpec[] = ['us-east-1', 'eu-west-1', 'ap-southeast-2'].map((region) => ({
    name: region,
    provider: 'aws-lambda',
    region,
    function: 'checkout-fn',
    alias: 'live',
  }));
  const runs: CloudRunTargetSpec[] = ['europe-west1', 'us-central1'].map((region) => ({
    name: `run-${region}`,
    provider: 'cloud-run',
    project: PROJECT,
    region,
    service: SERVICE,
  }));
  const targets: TargetSpec[] = [...lambdas, ...runs];
  for (const t of lambdas) await createSampleFunction(moto.url, t, { DB_PASSWORD: 'demo-secret', LOG_LEVEL: 'info' });
  say(`created sample Lambda function checkout-fn (alias live -> version 1) in ${lambdas.map((t) => t.region).join(', ')}`);
  const seeded = runs.map((t) => {
    const svc = cloudRun.seedService({
      project: t.project,
      region: t.region,
      service: t.service,
      image: imageFor('r0'),
      env: { RELEASE_ID: 'r0', SCHEMA_REV: '12', LOG_LEVEL: 'info' },
      secretEnv: { DB_PASSWORD: ['db-password', '3'] },
    });
    return `${t.region} (100 % on ${(svc.latestReadyRevision as string).split('/').pop()})`;
  });
  say(`seeded Cloud Run service ${PROJECT}/${SERVICE} in the fake: ${seeded.join(', ')}`);

  // SIMULATED traffic: moto runs no code and emits no Lambda metrics, and the Cloud Run fake runs no
  // containers, so the demo pushes per-version / per-revision metrics into CloudWatch and the
  // Cloud Monitoring fake, following the weights each cloud actually routes.
  let broken = { lambdaVersion: '', revision: '' };
  const traffic = new TrafficSimulator(moto.url, moto.url, lambdas, {
    requestsPerTick: 200,
    errorRate: (t, v) => (v === broken.lambdaVersion && BROKEN_IN.has(t.region) ? BROKEN_ERROR_RATE : 0.002),
    durationMs: () => 80,
  }).start(300);
  const runTraffic = new CloudRunTrafficSimulator(cloudRun.address, monitoring, runs, {
    requestsPerTick: 200,
    errorRate: (t, rev) => (rev === broken.revision && BROKEN_IN.has(t.region) ? BROKEN_ERROR_RATE : 0.002),
    latencyMs: () => 80,
  }).start(300);
  stoppers.push(async () => {
    traffic.stop();
    runTraffic.stop();
  });

  // Release r1: canary on Lambda, then two waves that each mix Lambda and Cloud Run: promoted.
  const r1 = demoSpec('r1', targets);
  say(
    `release r1 (Lambda version 2, Cloud Run revision ${cloudRunRevisionName(SERVICE, 'r1')}), bakes ${BAKE}:\n` +
      '    canary   10 % on Lambda us-east-1\n' +
      '    wave eu       Lambda eu-west-1 + Cloud Run europe-west1: 25 → 100 %\n' +
      '    wave apac-us  Lambda ap-southeast-2 + Cloud Run us-central1: 50 → 100 %',
  );
  const res1 = await runAndFollow(client, r1);
  say(`release r1 finished: ${res1.state}`);
  await printClouds(moto.url, cloudRun, lambdas, runs, 'after r1, as seen by moto and the Cloud Run fake');

  // Release r2: broken in Europe (simulated) → the mixed wave eu breaches → both clouds reverted.
  broken = { lambdaVersion: '3', revision: cloudRunRevisionName(SERVICE, 'r2') };
  const r2 = demoSpec('r2', targets);
  say(
    `release r2: its new Lambda version 3 and Cloud Run revision ${broken.revision} fail ${BROKEN_ERROR_RATE * 100} % of requests in Europe\n` +
      `    (SIMULATED errors pushed into moto's CloudWatch and the Cloud Monitoring fake; us-east-1 stays healthy, so the canary passes)`,
  );
  const r2StartedMs = Date.now();
  const handle = await startRollout(client, r2, { startedBy: 'demo-user', taskQueue: TASK_QUEUE });
  const paused = await follow(client, handle.workflowId, (s) => s.state === 'paused' || !['running'].includes(s.state));
  console.log(formatStatus(paused));
  await printEuropeMetrics(
    [
      [lambdas[1], '3', '2', cloudWatchMetrics, "moto's CloudWatch"],
      [runs[0], broken.revision, cloudRunRevisionName(SERVICE, 'r1'), monitoringMetrics, 'the Cloud Monitoring fake'],
    ],
    r2StartedMs,
  );
  const back = await printClouds(moto.url, cloudRun, lambdas, runs, 'after r2, as seen by moto and the Cloud Run fake');
  const allBack = back.every((b) => b.previous);
  say(
    allBack
      ? 'every touched target in both clouds is back on its previous version/revision (r1), canary tags dropped'
      : 'NOT every target is back on its previous version/revision: see above',
  );
  say(`release r2 rolled back and the pipeline of ${SERVICE} is paused.`);
  say(
    `a new rollout of ${SERVICE} is refused until you run: rollgate resume ${handle.workflowId}  or  rollgate abort ${handle.workflowId}`,
  );
  say(`try: TEMPORAL_ADDRESS=${temporal.address} npx rollgate status ${handle.workflowId}`);

  const trainOk = await demoTrain(client, moto.url, cloudRun, monitoring);

  if (EXIT) {
    await handle.signal(abortSignal, { by: 'demo', reason: 'demo finished' });
    const final = (await handle.result()) as RolloutResult;
    say(`aborted r2: ${final.state}`);
    writeFileSync(
      join(STATE, 'last-demo.json'),
      JSON.stringify({ r1: res1.state, r2: paused.state, r2final: final.state, allBack, train: trainOk }),
    );
    return stopAll(res1.state === 'succeeded' && paused.state === 'paused' && final.state === 'rolled-back' && allBack && trainOk ? 0 : 1);
  }
  say(`everything stays up for the Temporal UI at ${temporal.uiUrl}. Press Ctrl-C to stop.`);
}

/** The worker variable that holds the demo receiver's URL. */
const DEMO_WEBHOOK_ENV = 'ROLLGATE_WEBHOOK_DEMO';

function demoSpec(release: string, targets: TargetSpec[]): RolloutSpec {
  return validateSpec({
    ...artifactOf(SERVICE, release),
    targets,
    // Lambda: Invoke with this payload (moto echoes it); Cloud Run: GET path on the revision's tag URL.
    probes: [{ name: 'health', payload: { path: '/healthz' }, path: '/healthz', expect_contains: 'healthz' }],
    canary: { targets: ['us-east-1'], weight: 10, bake: BAKE },
    waves: [
      { name: 'eu', targets: ['eu-west-1', 'run-europe-west1'], steps: [25, 100], bake: BAKE },
      { name: 'apac-us', targets: ['ap-southeast-2', 'run-us-central1'], steps: [50, 100], bake: BAKE },
    ],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 20 },
    approvers: ['alice', 'bob'],
    notify: { webhook_env: DEMO_WEBHOOK_ENV },
  });
}

/** Service, release, contract keys and a fresh artifact (a zip for Lambda, a pinned image for Cloud Run). */
function artifactOf(service: string, release: string) {
  const zip = join(STATE, `${service}-${release}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${release}`));
  return { service, release, schema_rev: '12', index_hash: 'faiss-2026-11-26', artifact: { file: zip, image: imageFor(release, service) } };
}

/**
 * A release train of two more services, on healthy (SIMULATED) traffic: `orders` on Lambda first;
 * `payments` on Cloud Run depends on it, so it deploys only once orders is promoted and held. The
 * train then releases both. Returns whether both clouds end on the new version, read from moto and
 * the fake.
 */
async function demoTrain(client: Client, motoUrl: string, fake: CloudRunFake, monitoring: CloudMonitoringFake): Promise<boolean> {
  const orders: LambdaTargetSpec = {
    name: 'orders-use1',
    provider: 'aws-lambda',
    region: 'us-east-1',
    function: 'orders-fn',
    alias: 'live',
  };
  const payments: CloudRunTargetSpec = {
    name: 'payments-euw1',
    provider: 'cloud-run',
    project: PROJECT,
    region: 'europe-west1',
    service: 'payments',
  };
  await createSampleFunction(motoUrl, orders, { LOG_LEVEL: 'info' });
  fake.seedService({
    project: PROJECT,
    region: payments.region,
    service: payments.service,
    image: imageFor('p0', 'payments'),
    env: { RELEASE_ID: 'p0', SCHEMA_REV: '12', LOG_LEVEL: 'info' },
  });
  const healthy = { requestsPerTick: 200, errorRate: () => 0.002 };
  const sims = [
    new TrafficSimulator(motoUrl, motoUrl, [orders], { ...healthy, durationMs: () => 80 }).start(300),
    new CloudRunTrafficSimulator(fake.address, monitoring, [payments], { ...healthy, latencyMs: () => 80 }).start(300),
  ];
  const member = (service: string, target: TargetSpec) => ({
    ...artifactOf(service, 't1'),
    targets: [target],
    probes: [{ name: 'health', payload: { path: '/healthz' }, path: '/healthz', expect_contains: 'healthz' }],
    canary: { targets: [target.name], weight: 20, bake: BAKE },
    waves: [],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 20 },
    notify: { webhook_env: DEMO_WEBHOOK_ENV },
  });
  const train = validateTrain(
    {
      train: 'demo-train-t1',
      services: [{ spec: member('orders', orders) }, { spec: member('payments', payments), depends_on: ['orders'] }],
    },
    STATE,
  );
  say(
    'release train demo-train-t1: orders (Lambda us-east-1) first, then payments (Cloud Run europe-west1), which depends on it;\n' +
      '    each member is promoted and held until every member is, then the train releases them all',
  );
  try {
    const handle = await startTrain(client, train, { startedBy: 'demo-user', taskQueue: TASK_QUEUE });
    let printed = '';
    const done = await waitForTrain(client, handle.workflowId, {
      intervalMs: 300,
      onView: (v) => {
        const line = v.status.members.map((m) => `${m.service}: ${m.state}`).join(', ');
        if (line !== printed) console.log(`    ${line}`);
        printed = line;
      },
    });
    say(`release train demo-train-t1 finished: ${done.outcome}`);
    say('after the train, as seen by moto and the Cloud Run fake');
    const c = new LambdaClient({ endpoint: motoUrl, region: orders.region, credentials: TEST_CREDENTIALS });
    const alias = await c.send(new GetAliasCommand({ FunctionName: orders.function, Name: orders.alias }));
    c.destroy();
    const ordersWeights = Object.keys(alias.RoutingConfig?.AdditionalVersionWeights ?? {});
    console.log(
      `    ${orders.name.padEnd(18)} lambda    ${orders.region}/${orders.function}:${orders.alias} -> version ${alias.FunctionVersion}`,
    );
    const split = fake.servedSplit(PROJECT, payments.region, payments.service);
    console.log(
      `    ${payments.name.padEnd(18)} cloud-run ${PROJECT}/${payments.region}/${payments.service} -> ${Object.entries(split)
        .map(([rev, p]) => `${rev} ${p} %`)
        .join(' + ')}`,
    );
    const newRevision = cloudRunRevisionName('payments', 't1');
    return done.outcome === 'succeeded' && alias.FunctionVersion === '2' && ordersWeights.length === 0 && split[newRevision] === 100;
  } finally {
    for (const s of sims) s.stop();
  }
}

/** The SIMULATED samples both clouds' metric sources hold for the broken European targets since `sinceMs`. */
async function printEuropeMetrics(
  rows: [TargetSpec, string, string, CloudWatchMetrics | CloudMonitoringMetrics, string][],
  sinceMs: number,
): Promise<void> {
  say(
    "what the metric sources hold for Europe over the last minute (SIMULATED by the demo, read back through rollgate's metric providers)",
  );
  for (const [target, canaryVersion, baselineVersion, metrics, where] of rows) {
    const s = await metrics.collect({ target, canaryVersion, baselineVersion, startMs: sinceMs - 60_000, endMs: Date.now() + 60_000 });
    const rate = (r: { requests: number; errors: number }) =>
      `${r.requests ? ((100 * r.errors) / r.requests).toFixed(1) : '-'} % errors of ${r.requests} req`;
    console.log(
      `    ${target.name.padEnd(18)} ${where.padEnd(26)} new ${canaryVersion}: ${rate(s.canary)}; stable ${baselineVersion}: ${rate(s.baseline)}`,
    );
  }
}

/** Each target's routing read straight from moto and the Cloud Run fake (not from rollgate). */
async function printClouds(
  motoUrl: string,
  fake: CloudRunFake,
  lambdas: LambdaTargetSpec[],
  runs: CloudRunTargetSpec[],
  title: string,
): Promise<{ name: string; previous: boolean }[]> {
  say(title);
  const out: { name: string; previous: boolean }[] = [];
  for (const t of lambdas) {
    const c = new LambdaClient({ endpoint: motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
    const a = await c.send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
    c.destroy();
    const weights = Object.entries(a.RoutingConfig?.AdditionalVersionWeights ?? {});
    const extra = weights.map(([v, w]) => ` + version ${v} at ${Math.round(w * 1000) / 10} %`).join('');
    console.log(`    ${t.name.padEnd(18)} lambda    ${t.region}/${t.function}:${t.alias} -> version ${a.FunctionVersion}${extra}`);
    out.push({ name: t.name, previous: a.FunctionVersion === '2' && weights.length === 0 });
  }
  for (const t of runs) {
    const split = Object.entries(fake.servedSplit(t.project, t.region, t.service));
    const svc = fake.getServiceState(t.project, t.region, t.service)!;
    const tags = (svc.trafficStatuses as { tag?: string; revision?: string }[]).filter((s) => s.tag).map((s) => `${s.tag}:${s.revision}`);
    const served = split.map(([rev, p]) => `${rev} ${p} %`).join(' + ');
    console.log(
      `    ${t.name.padEnd(18)} cloud-run ${t.project}/${t.region}/${t.service} -> ${served}${tags.length ? `  (tags: ${tags.join(', ')})` : ''}`,
    );
    const r1 = cloudRunRevisionName(SERVICE, 'r1');
    out.push({ name: t.name, previous: split.length === 1 && split[0][0] === r1 && tags.length === 0 });
  }
  return out;
}

async function runAndFollow(client: Client, spec: RolloutSpec): Promise<RolloutStatus> {
  const handle = await startRollout(client, spec, { startedBy: 'demo-user', taskQueue: TASK_QUEUE });
  return follow(client, handle.workflowId, (s) => s.state !== 'running' && s.state !== 'paused');
}

/** Print each new history line until `done`. */
async function follow(client: Client, id: string, done: (s: RolloutStatus) => boolean): Promise<RolloutStatus> {
  const handle = client.workflow.getHandle(id);
  let printed = 0;
  for (;;) {
    let s: RolloutStatus;
    try {
      s = await handle.query(statusQuery);
    } catch {
      s = ((await handle.result()) as RolloutResult).status;
    }
    for (const e of s.history.slice(printed)) console.log(`    ${e.kind.padEnd(12)} ${e.text}`);
    printed = s.history.length;
    if (done(s)) return s;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** A previous demo interrupted mid-rollout leaves its workflow open in the SQLite file: close it. */
async function closeLeftovers(client: Client) {
  for (const id of ['train-demo-train-t1', rolloutWorkflowId(SERVICE), rolloutWorkflowId('orders'), rolloutWorkflowId('payments')]) {
    try {
      const h = client.workflow.getHandle(id);
      const d = await h.describe();
      if (d.status.name === 'RUNNING') {
        say(`terminating ${id}, left open by an earlier, interrupted demo run`);
        await h.terminate('demo restarted');
      }
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
}

async function portFree(port: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

main().catch(async (err) => {
  console.error(`demo failed: ${(err as Error).stack ?? err}`);
  await stopAll(1);
});
