/**
 * A history the current code records replays on the current code. The committed histories
 * (replay.test.ts) were each recorded on one branch of the code; these histories come from the
 * merged code, also mid-run and with a local activity that outlasts its workflow task under status
 * queries (one CI run failed queries with "patch marker encountered for change verified-identities,
 * but there is no corresponding change command"; not reproduced here, see docs/DEVELOPMENT.md).
 */
import { Worker } from '@temporalio/worker';
import { createActivities } from '../src/activities';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import { noopSinks } from '../src/worker';
import { statusQuery, type RolloutResult } from '../src/contract';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('replay-fresh');
  await h.startWorker();
});
afterAll(async () => h?.close());

const replay = (history: Awaited<ReturnType<import('@temporalio/client').WorkflowHandle['fetchHistory']>>, name: string) =>
  Worker.runReplayHistory({ workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks }, history, name);

test('no data with on_no_data pass, a wave, histories taken mid-run and at the end: each replays', async () => {
  const spec = lambdaSpec(
    h,
    'fresh-nodata',
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
      waves: [{ name: 'wave-1', targets: ['eu-west-1'], steps: [100], bake: '1 second' }],
      rollback: { min_requests: 5, on_no_data: 'pass' },
    },
    2,
  );
  await createFunctions(h, spec);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const result = handle.result();
  let n = 0;
  for (let i = 0; i < 40; i++) {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') break;
    await replay(await handle.fetchHistory(), `fresh-nodata-mid-${n++}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(((await result) as RolloutResult).state).toBe('succeeded');
  await replay(await handle.fetchHistory(), 'fresh-nodata-end');
  expect(n).toBeGreaterThan(0);
});

test('a rollout the current code runs from start to promote replays without non-determinism', async () => {
  const spec = validateSpec({ ...JSON.parse(JSON.stringify(lambdaSpec(h, 'fresh-replay', {}, 1))), waves: [] });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    expect(((await handle.result()) as RolloutResult).state).toBe('succeeded');
    const history = await handle.fetchHistory();
    expect(history.events!.length).toBeGreaterThan(20);
    await replay(history, 'fresh');
  } finally {
    traffic.stop();
  }
});

test('a local activity that outlasts its workflow task (its marker lands in the next one) still replays', async () => {
  // The message-nonce local activity takes 9 s, past 80 % of the 10 s workflow task timeout: the
  // SDK completes that task early and records the activity's marker in the next task.
  const base = createActivities(h.deps);
  await h.stopWorker();
  await h.startWorker({}, undefined, {
    workerOptions: {
      activities: {
        ...base,
        newMessageNonce: async () => {
          await new Promise((r) => setTimeout(r, 9000));
          return base.newMessageNonce();
        },
      },
    },
  });
  const spec = validateSpec({ ...JSON.parse(JSON.stringify(lambdaSpec(h, 'fresh-slow-la', {}, 1))), waves: [] });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    // Status queries all along (as `watch` and the tests send them), the slow local activity included.
    let done = false;
    const result = handle.result().finally(() => (done = true));
    while (!done) {
      await handle.query(statusQuery).catch((e: Error) => {
        if (!done) throw e;
      });
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(((await result) as RolloutResult).state).toBe('succeeded');
    const history = await handle.fetchHistory();
    const tasks = history.events!.filter((e) => e.workflowTaskCompletedEventAttributes).length;
    expect(tasks).toBeGreaterThan(2);
    await replay(history, 'fresh-slow-la');
  } finally {
    traffic.stop();
  }
});
