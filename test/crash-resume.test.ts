/**
 * The worker runs as a separate OS process and is SIGKILLed mid-bake and mid-activity; a new worker
 * process finishes the rollout with exactly one version published per target.
 */
import type { ChildProcess } from 'node:child_process';
import { temporal } from '@temporalio/proto';
import { startRollout } from '../src/client';
import { STICKY_QUEUE_TIMEOUT_MS } from '../src/worker';
import { lambdaOp } from '../src/dev/fault-proxy';
import type { RolloutResult } from '../src/contract';
import { startChildWorker, sigkill } from './support/child-worker';
import { aliasState, publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

const TaskQueueKind = temporal.api.enums.v1.TaskQueueKind;

let h: Harness;
let child: ChildProcess | undefined;
beforeAll(async () => {
  h = await createHarness('crash');
});
afterEach(async () => {
  if (child) await sigkill(child);
  child = undefined;
});
afterAll(async () => h?.close());

const workerEnv = () => ({
  ROLLGATE_TEST_TEMPORAL: process.env.ROLLGATE_TEST_TEMPORAL!,
  ROLLGATE_TASK_QUEUE: h.taskQueue,
  ROLLGATE_LAMBDA_ENDPOINT: h.proxy.url,
  ROLLGATE_STATE_DIR: h.workDir,
});

async function expectOneVersionPerTarget(spec: { targets: any[] }) {
  for (const t of spec.targets) {
    expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
  }
}

test('SIGKILL mid-bake: a new worker process resumes the bake and finishes', async () => {
  const spec = lambdaSpec(h, 'crash-bake', { canary: { targets: ['us-east-1'], weight: 10, bake: '4 seconds' } });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    child = await startChildWorker(workerEnv());
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.stage === 'canary' && /baking/.test(s.detail), 60_000, 'canary bake');
    await sigkill(child);
    child = await startChildWorker(workerEnv());
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    await expectOneVersionPerTarget(spec);
    expect(h.proxy.count(lambdaOp.publishVersion('crash-bake-fn'))).toBe(3);
    // The first task after the kill went to the dead worker's sticky queue and was moved on to the
    // shared queue after rollgate's sticky timeout (server times; the SDK default would be 10 s).
    const events = (await handle.fetchHistory()).events ?? [];
    const ms = (e: (typeof events)[number]) => Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6);
    const timedOut = events.filter((e) => e.workflowTaskTimedOutEventAttributes);
    expect(timedOut.length).toBeGreaterThanOrEqual(1);
    const scheduled = events.find((e) => Number(e.eventId) === Number(timedOut[0].workflowTaskTimedOutEventAttributes!.scheduledEventId))!;
    expect(scheduled.workflowTaskScheduledEventAttributes!.taskQueue!.kind).toBe(TaskQueueKind.TASK_QUEUE_KIND_STICKY);
    const waited = ms(timedOut[0]) - ms(scheduled);
    expect(waited).toBeGreaterThanOrEqual(STICKY_QUEUE_TIMEOUT_MS);
    expect(waited).toBeLessThan(STICKY_QUEUE_TIMEOUT_MS + 900);
  } finally {
    traffic.stop();
  }
});

test('SIGKILL mid-activity (PublishVersion in flight): the retry finds the version instead of publishing another', async () => {
  const spec = lambdaSpec(h, 'crash-act');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  // The proxy holds the first PublishVersion (of whichever target comes first: the three share the
  // function name) for 3 s, then forwards it: moto publishes after the worker died.
  h.proxy.inject({ match: lambdaOp.publishVersion('crash-act-fn'), times: 1, action: { delayMs: 3000 } });
  try {
    child = await startChildWorker(workerEnv());
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const deadline = Date.now() + 60_000;
    while (h.proxy.count(lambdaOp.publishVersion('crash-act-fn')) === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await sigkill(child);
    child = await startChildWorker(workerEnv());
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    await expectOneVersionPerTarget(spec);
    expect(res.status.history.some((e) => /found already published version 2/.test(e.text))).toBe(true);
  } finally {
    traffic.stop();
  }
});
