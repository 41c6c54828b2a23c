/**
 * The embedded default: a local Temporal dev server (SQLite under .state/demo), moto on loopback,
 * a rollgate worker, sample Lambda functions in three regions, and two releases: one promoted
 * through a canary and two waves, one whose canary breaches (simulated metrics) and is rolled back.
 *
 *   bash scripts/demo.sh            # runs, then keeps everything up for the Temporal UI until Ctrl-C
 *   bash scripts/demo.sh --exit     # runs and exits (CI smoke)
 *   options: --fast (1 s bakes), --port N (Temporal port, 0 = any free; default 7233)
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { freePort, startMoto, startTemporalDevServer } from '../src/dev/processes';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { TrafficSimulator } from '../src/dev/traffic-simulator';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { createRollgateWorker } from '../src/worker';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import type { LambdaTargetSpec, RolloutSpec } from '../src/spec/schema';
import { abortSignal, rolloutWorkflowId, statusQuery, type RolloutResult, type RolloutStatus } from '../src/workflows/messages';
import { formatStatus } from '../src/cli/format';
import { startWebhookReceiver } from './demo-webhook';
import { writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const EXIT = flag('--exit');
const BAKE = flag('--fast') ? '1 second' : '3 seconds';
const ROOT = resolve(__dirname, '..');
const STATE = join(ROOT, '.state', 'demo');
const SERVICE = 'checkout';
const TASK_QUEUE = 'rollgate';

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

async function main() {
  mkdirSync(STATE, { recursive: true });
  Runtime.install({ logger: new DefaultLogger('ERROR') });

  const wanted = Number(option('--port', '7233'));
  const port = wanted === 0 || !(await portFree(wanted)) ? await freePort() : wanted;
  const uiPort = port === 7233 && (await portFree(8233)) ? 8233 : await freePort();
  say(`starting Temporal dev server on 127.0.0.1:${port} (SQLite: .state/demo/temporal.db)`);
  const temporal = await startTemporalDevServer({ dbFile: join(STATE, 'temporal.db'), ui: true, port, uiPort });
  stoppers.push(temporal.stop);
  say('starting moto (AWS emulator) on loopback');
  const moto = await startMoto();
  stoppers.push(moto.stop);
  const hook = await startWebhookReceiver((body) => say(`ALERT received by the demo webhook:\n    ${body.text}`));
  stoppers.push(hook.close);

  const connection = await NativeConnection.connect({ address: temporal.address });
  const client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  const worker = await createRollgateWorker({
    connection,
    taskQueue: TASK_QUEUE,
    deps: {
      providers: { 'aws-lambda': new LambdaProvider({ endpoint: moto.url, credentials: TEST_CREDENTIALS }) },
      metrics: [new CloudWatchMetrics({ endpoint: moto.url, credentials: TEST_CREDENTIALS })],
      stateDir: STATE,
      hashKey: 'demo',
      client,
    },
  });
  const running = worker.run();
  stoppers.push(async () => {
    worker.shutdown();
    await running;
  });
  say(`worker polling task queue "${TASK_QUEUE}"`);
  say(`Temporal UI: ${temporal.uiUrl}  (filter: RolloutService = "${SERVICE}")`);

  await closeLeftovers(client);

  const targets: LambdaTargetSpec[] = ['us-east-1', 'eu-west-1', 'ap-southeast-2'].map((region) => ({
    name: region,
    provider: 'aws-lambda',
    region,
    function: 'checkout-fn',
    alias: 'live',
  }));
  for (const t of targets) await createSampleFunction(moto.url, t, { DB_PASSWORD: 'demo-secret', LOG_LEVEL: 'info' });
  say(`created sample Lambda function checkout-fn (alias live -> version 1) in ${targets.map((t) => t.region).join(', ')}`);

  // SIMULATED traffic: moto runs no code and emits no Lambda metrics, so the demo pushes them.
  let broken = new Set<string>();
  const traffic = new TrafficSimulator(moto.url, moto.url, targets, {
    requestsPerTick: 200,
    errorRate: (_t, v) => (broken.has(v) ? 0.25 : 0.002),
    durationMs: () => 80,
  }).start(300);
  stoppers.push(async () => traffic.stop());

  // Release r1: canary then two waves, promoted.
  const r1 = demoSpec('r1', targets, hook.url);
  say(`release r1: canary 10 % on us-east-1, wave eu (eu-west-1: 25 → 100 %), wave apac (ap-southeast-2: 50 → 100 %), bakes ${BAKE}`);
  const res1 = await runAndFollow(client, r1);
  say(`release r1 finished: ${res1.state}`);

  // Release r2: its canary errors (simulated) → rollback, paused pipeline, alert.
  broken = new Set(['3']);
  const r2 = demoSpec('r2', targets, hook.url);
  say('release r2: the new version fails 25 % of requests (SIMULATED errors pushed into CloudWatch)');
  const handle = await startRollout(client, r2, { startedBy: 'demo-user', taskQueue: TASK_QUEUE });
  const paused = await follow(client, handle.workflowId, (s) => s.state === 'paused' || !['running'].includes(s.state));
  console.log(formatStatus(paused));
  say(`release r2 rolled back and the pipeline of ${SERVICE} is paused.`);
  say(
    `a new rollout of ${SERVICE} is refused until you run: rollgate resume ${handle.workflowId}  or  rollgate abort ${handle.workflowId}`,
  );
  say(`try: TEMPORAL_ADDRESS=${temporal.address} npx rollgate status ${handle.workflowId}`);

  if (EXIT) {
    await handle.signal(abortSignal, { by: 'demo', reason: 'demo finished' });
    const final = (await handle.result()) as RolloutResult;
    say(`aborted r2: ${final.state}`);
    writeFileSync(join(STATE, 'last-demo.json'), JSON.stringify({ r1: res1.state, r2: paused.state, r2final: final.state }));
    return stopAll(res1.state === 'succeeded' && paused.state === 'paused' && final.state === 'rolled-back' ? 0 : 1);
  }
  say(`everything stays up for the Temporal UI at ${temporal.uiUrl}. Press Ctrl-C to stop.`);
}

function demoSpec(release: string, targets: LambdaTargetSpec[], webhook: string): RolloutSpec {
  const zip = join(STATE, `checkout-${release}.zip`);
  writeFileSync(zip, sampleZip(`checkout ${release}`));
  return validateSpec({
    service: SERVICE,
    release,
    schema_rev: '12',
    index_hash: 'faiss-2026-11-26',
    artifact: { file: zip },
    targets,
    probes: [{ name: 'health', payload: { path: '/healthz' }, expect_contains: 'healthz' }],
    canary: { targets: ['us-east-1'], weight: 10, bake: BAKE },
    waves: [
      { name: 'eu', targets: ['eu-west-1'], steps: [25, 100], bake: BAKE },
      { name: 'apac', targets: ['ap-southeast-2'], steps: [50, 100], bake: BAKE },
    ],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 20 },
    approvers: ['alice', 'bob'],
    notify: { webhook },
  });
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
  try {
    const h = client.workflow.getHandle(rolloutWorkflowId(SERVICE));
    const d = await h.describe();
    if (d.status.name === 'RUNNING') {
      say('terminating the rollout left open by an earlier, interrupted demo run');
      await h.terminate('demo restarted');
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
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
