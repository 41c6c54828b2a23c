/**
 * Worker observability against the real dev server: the JSON logger installed as the Runtime
 * logger (workflow lines from a real rollout carry rolloutId, service, release and stage), rollgate's
 * own /metrics fed from workflow code (sink and activity) and scraped over HTTP, and the SDK's
 * Prometheus exporter configured through Runtime.install.
 */
import { randomBytes } from 'node:crypto';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { freePort } from '../src/dev/processes';
import { setupObservabilityFromEnv, type Observability } from '../src/observability';
import { metricsActivities } from '../src/observability/metrics';
import { startRollout } from '../src/client';
import type { RolloutResult } from '../src/contract';
import { createRollgateWorker } from '../src/worker';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let obs: Observability;
let h: Harness;
const lines: string[] = [];
let sdkPort: number;
/** Workers this file started itself; shut down in afterAll even when an assertion failed mid-test. */
const running = new Set<{ worker: Worker; run: Promise<void> }>();

beforeAll(async () => {
  // Runtime.install before the harness opens any NativeConnection (the harness's own install is then a no-op).
  sdkPort = await freePort();
  obs = await setupObservabilityFromEnv(
    { ROLLGATE_LOG_LEVEL: 'INFO', ROLLGATE_METRICS_ADDRESS: '127.0.0.1:0', ROLLGATE_SDK_METRICS_ADDRESS: `127.0.0.1:${sdkPort}` },
    { write: (l) => void lines.push(l) },
  );
  h = await createHarness('obs');
});
afterAll(async () => {
  for (const w of running) {
    if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
    await w.run.catch(() => undefined);
  }
  await h?.close();
  await obs?.close();
});

const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return res.text();
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}; last: ${String(last).slice(0, 3000)}`);
}

test('structured logs: workflow lines of a real rollout reach the JSON logger with rolloutId, service, release and stage', async () => {
  await h.startWorker();
  const service = `obslog-${randomBytes(2).toString('hex')}`;
  const spec = lambdaSpec(h, service, { waves: [] }, 1);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'obs-test', taskQueue: h.taskQueue });
    expect(((await handle.result()) as RolloutResult).state).toBe('succeeded');
  } finally {
    traffic.stop();
    await h.stopWorker();
  }
  const mine = parsed().filter((l) => l.rolloutId === `rollout-${service}`);
  const canary = mine.find((l) => String(l.msg).startsWith('stage canary:'));
  expect(canary).toMatchObject({
    level: 'info',
    rolloutId: `rollout-${service}`,
    service,
    release: 'r2',
    stage: 'canary',
    sdkComponent: 'workflow',
    workflowId: `rollout-${service}`,
    taskQueue: h.taskQueue,
    component: 'rollgate-worker',
  });
  expect(new Date(String(canary!.ts)).getTime()).toBeGreaterThan(Date.now() - 120_000);
  const verdict = mine.find((l) => String(l.msg).startsWith('pass:'));
  expect(verdict).toMatchObject({ service, release: 'r2', stage: 'canary' });
  expect(mine.find((l) => String(l.msg).startsWith('stage done:'))).toMatchObject({ stage: 'done', release: 'r2' });
  // Every line of this rollout has the four fields as keys; none is missing its rollout id or service.
  for (const l of mine) {
    for (const k of ['rolloutId', 'service', 'release', 'stage']) expect(l).toHaveProperty(k);
    expect(l.service).toBe(service);
  }
  expect(mine.length).toBeGreaterThanOrEqual(8);
  // Each line is one JSON object: nothing else was written.
  expect(lines.every((l) => !l.includes('\n'))).toBe(true);
});

test('rollgate metrics: events from workflow code (sink and activity) are served on /metrics; replay does not count twice', async () => {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('./support/observability-workflows'),
    logger: {
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: console.error,
      log: () => undefined,
    },
  });
  const taskQueue = `${h.taskQueue}-metrics`;
  const startWorker = async () => {
    const worker = await Worker.create({
      connection: h.nativeConnection,
      taskQueue,
      workflowBundle: { code },
      activities: metricsActivities(obs.metrics),
      sinks: obs.sinks,
      maxCachedWorkflows: 0, // every activation replays from history: sinks must not repeat
    });
    const w = { worker, run: worker.run() };
    running.add(w);
    return w;
  };
  const url = `${obs.server!.url}/metrics`;
  expect((await fetch(`${obs.server!.url}/healthz`)).status).toBe(503);
  obs.setReady(true);
  expect((await fetch(`${obs.server!.url}/healthz`)).status).toBe(200);

  const service = `obsmet-${randomBytes(2).toString('hex')}`;
  const s = `service="${service}"`;
  let w = await startWorker();
  const handle = await h.client.workflow.start('observedRolloutWorkflow', {
    taskQueue,
    workflowId: `rollout-${service}`,
    args: [{ service, release: 'r7' }],
  });
  const paused = await eventually(
    () => scrape(url),
    (t) => t.includes(`rollgate_pipeline_paused{${s}} 1`),
    'paused gauge',
  );
  expect(paused).toContain(`rollgate_rollouts_started_total{${s}} 1`);
  expect(paused).toContain(`rollgate_stage_duration_seconds_bucket{le="5",${s},stage="deploy",outcome="ok"} 1`);
  expect(paused).toContain(`rollgate_stage_duration_seconds_bucket{le="30",${s},stage="canary",outcome="failed"} 0`);
  expect(paused).toContain(`rollgate_stage_duration_seconds_bucket{le="60",${s},stage="canary",outcome="failed"} 1`);
  expect(paused).toContain(`rollgate_stage_duration_seconds_sum{${s},stage="canary",outcome="failed"} 45`);
  expect(paused).toContain(`rollgate_breaches_total{${s},metric="error_rate"} 1`);
  expect(paused).toContain(`rollgate_error_rate{${s},target="eu-west-1",revision="7",role="canary"} 0.3`);
  expect(paused).toContain(`rollgate_error_rate{${s},target="eu-west-1",revision="6",role="baseline"} 0.001`);
  expect(paused).toContain(`rollgate_compensation_failures_total{${s},step="revert eu-west-1"} 1`);
  expect(paused).toMatch(/# TYPE rollgate_stage_duration_seconds histogram/);
  expect(paused).toMatch(/^rollgate_process_resident_memory_bytes \d+/m);

  // Restart the worker mid-run: the new one replays the whole history, and nothing is counted twice.
  w.worker.shutdown();
  await w.run;
  w = await startWorker();
  await handle.signal('finish');
  expect(await handle.result()).toBe('done');
  w.worker.shutdown();
  await w.run;
  const done = await eventually(
    () => scrape(url),
    (t) => t.includes(`rollgate_rollouts_rolled_back_total{${s}} 1`),
    'finished',
  );
  expect(done).toContain(`rollgate_rollouts_started_total{${s}} 1`);
  expect(done).toContain(`rollgate_breaches_total{${s},metric="error_rate"} 1`);
  expect(done).toContain(`rollgate_compensation_failures_total{${s},step="revert eu-west-1"} 1`);
  expect(done).toContain(`rollgate_pipeline_paused{${s}} 0`);
  // The finished rollout's per-revision error-rate series are dropped (revisions are unbounded).
  expect(done).not.toContain(`rollgate_error_rate{${s}`);
  expect(done).not.toContain(`rollgate_rollouts_succeeded_total{${s}}`);
});

test('rollgate metrics from a real breaching rollout: breach, error rate by revision, paused pipeline, then rolled back', async () => {
  // The real worker wiring (as `rollgate worker` does it): the rollout workflow feeds the sink.
  const worker = await createRollgateWorker({
    connection: h.nativeConnection,
    taskQueue: h.taskQueue,
    deps: h.deps,
    workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
    workerOptions: { sinks: obs.sinks },
  });
  const w = { worker, run: worker.run() };
  running.add(w);
  const url = `${obs.server!.url}/metrics`;
  const service = `obsbreach-${randomBytes(2).toString('hex')}`;
  const s = `service="${service}"`;
  const spec = lambdaSpec(h, service, { waves: [] }, 1);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2'); // the canary fails 30 % of its requests
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'obs-test', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (st) => st.state === 'paused', 60_000, 'paused after the breach');
    const verdict = paused.targets[0].lastAnalysis!;
    expect(verdict).toMatchObject({ verdict: 'fail', metric: 'error_rate' });
    const text = await eventually(
      () => scrape(url),
      (t) => t.includes(`rollgate_pipeline_paused{${s}} 1`),
      'paused gauge of the real rollout',
    );
    expect(text).toContain(`rollgate_rollouts_started_total{${s}} 1`);
    expect(text).toContain(`rollgate_breaches_total{${s},metric="error_rate"} 1`);
    // The error rates the analysis measured, by revision, as the verdict reported them.
    expect(text).toContain(`rollgate_error_rate{${s},target="us-east-1",revision="2",role="canary"} ${verdict.canaryErrorRate}`);
    expect(text).toContain(`rollgate_error_rate{${s},target="us-east-1",revision="1",role="baseline"} ${verdict.baselineErrorRate}`);
    expect(verdict.canaryErrorRate!).toBeGreaterThan(verdict.baselineErrorRate! + 0.02);
    expect(text).toMatch(new RegExp(`rollgate_stage_duration_seconds_count\\{${s},stage="canary",outcome="failed"\\} 1`));

    await handle.signal('abort');
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    const done = await eventually(
      () => scrape(url),
      (t) => t.includes(`rollgate_rollouts_rolled_back_total{${s}} 1`),
      'rolled back counter',
    );
    expect(done).toContain(`rollgate_pipeline_paused{${s}} 0`);
    expect(done).toContain(`rollgate_breaches_total{${s},metric="error_rate"} 1`);
  } finally {
    traffic.stop();
    worker.shutdown();
    await w.run;
    running.delete(w);
  }
});

test('SDK runtime metrics: the Prometheus exporter from Runtime.install serves the worker metrics', async () => {
  const text = await eventually(
    () => scrape(`http://127.0.0.1:${sdkPort}/metrics`),
    (t) => t.includes('temporal_workflow_completed_total'),
    'SDK metrics',
  );
  expect(text).toMatch(new RegExp(`^temporal_workflow_completed_total\\{[^}]*task_queue="${h.taskQueue}"[^}]*\\} [1-9]`, 'm'));
  expect(text).toMatch(/^temporal_worker_task_slots_available\{/m);
  // Durations in seconds, with the unit in the name.
  expect(text).toMatch(/^temporal_workflow_task_schedule_to_start_latency_seconds_bucket\{/m);
  expect(text).toMatch(/^temporal_activity_execution_latency_seconds_bucket\{/m);
});
