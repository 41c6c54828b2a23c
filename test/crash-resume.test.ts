/**
 * The worker runs as a separate OS process and is SIGKILLed mid-bake and mid-activity; a new worker
 * process finishes the rollout with exactly one version published per target.
 */
import type { ChildProcess } from 'node:child_process';
import { startRollout } from '../src/client';
import { lambdaOp } from '../src/dev/fault-proxy';
import type { RolloutResult } from '../src/contract';
import { startChildWorker, sigkill } from './support/child-worker';
import { aliasState, publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

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
