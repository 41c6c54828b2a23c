/**
 * The shared-dependency lock never deadlocks: a holder that closed without releasing (terminated,
 * failed) is dropped and the next rollout gets the lock; holders are runs (workflow id + run id), so
 * the same service's next run is not mistaken for its dead predecessor; an abort while queued leaves
 * the queue; a lockGranted the lock workflow did not send does not let a rollout skip the queue.
 */
import { Worker } from '@temporalio/worker';
import { startRollout } from '../src/client';
import { noopSinks } from '../src/worker';
import { dependencyLockWorkflowId, lockGrantedSignal, lockStateQuery, type RolloutResult, type RolloutStatus } from '../src/contract';
import type { RolloutSpec } from '../src/spec/schema';
import { saveHistoryFile } from './support/history';
import { aliasState } from './support/lambda';
import { holdingFreeze, uniqueDep } from './support/locks';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
const stops: (() => void)[] = [];
beforeAll(async () => {
  h = await createHarness('deplock');
  await h.startWorker();
});
afterAll(async () => {
  for (const s of stops) s();
  await h?.close();
});

async function prepare(service: string, dep: string, frozen: boolean): Promise<RolloutSpec> {
  const spec = lambdaSpec(h, service, { shared_dependencies: [dep], ...(frozen ? { freeze_windows: holdingFreeze() } : {}) }, 1);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  stops.push(() => traffic.stop());
  return spec;
}

const lockState = (dep: string) => h.client.workflow.getHandle(dependencyLockWorkflowId(dep)).query(lockStateQuery);
const holds = (dep: string) => (s: RolloutStatus) => s.history.some((e) => e.text === `holding shared dependency ${dep}`);
const waitsFor = (dep: string) => (s: RolloutStatus) => s.detail.startsWith(`waiting for shared dependency ${dep}`);
const frozenHolding = (dep: string) => (s: RolloutStatus) => holds(dep)(s) && /frozen until/.test(s.detail);

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a holder terminated while holding: the next waiting rollout gets the lock within seconds and proceeds', async () => {
  const dep = uniqueDep('db');
  const a = await prepare('lk-a', dep, true);
  const b = await prepare('lk-b', dep, false);
  const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(ha, frozenHolding(dep), 60_000, 'a holding, frozen');
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(hb, waitsFor(dep), 60_000, 'b waiting');

  await ha.terminate('test: the holder dies without releasing');
  const t0 = Date.now();
  await waitForStatus(hb, holds(dep), 30_000, 'b granted after the holder was terminated');
  expect(Date.now() - t0).toBeLessThan(30_000);
  expect(((await within(hb.result(), 60_000, 'b finishes')) as RolloutResult).state).toBe('succeeded');
  expect((await aliasState(h.motoUrl, b.targets[0])).weights).toEqual({});
  expect((await lockState(dep)).holder).toBeUndefined();
  await recordLockHistory(dep, 'dependency-lock-v2-terminated-holder');
});

test("the same service's next run gets the lock after its previous run was terminated while holding", async () => {
  const dep = uniqueDep('db');
  const first = await prepare('lk-c', dep, true);
  const h1 = await startRollout(h.client, first, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(h1, frozenHolding(dep), 60_000, 'first run holding, frozen');
  await h1.terminate('test: the holder dies without releasing');

  const next = lambdaSpec(h, 'lk-c', { shared_dependencies: [dep], release: 'r3' }, 1);
  const h2 = await startRollout(h.client, next, { startedBy: 'carol', taskQueue: h.taskQueue });
  expect(h2.workflowId).toBe(h1.workflowId);
  await waitForStatus(h2, holds(dep), 30_000, 'next run granted');
  expect(((await within(h2.result(), 60_000, 'next run finishes')) as RolloutResult).state).toBe('succeeded');
});

test("the same service's next run gets the lock after its previous run handed over (parking) and was then terminated while holding", async () => {
  // Before: the lock followed a holder that continued as new to the latest run of its workflow id,
  // which is the next rollout of the same service: the terminated holder's lock stayed held.
  const dep = uniqueDep('db');
  const first = await prepare('lk-cp', dep, true);
  const h1 = await startRollout(h.client, first, { startedBy: 'carol', taskQueue: h.taskQueue, parkHandoverAfterMs: 5 * 60_000 });
  await waitForStatus(h1, frozenHolding(dep), 60_000, 'first run holding, frozen');
  await eventually(async () => (await h1.describe()).runId !== h1.firstExecutionRunId, 20_000, 'handed over before parking in the freeze');
  await h1.terminate('test: the holder dies without releasing');

  const next = lambdaSpec(h, 'lk-cp', { shared_dependencies: [dep], release: 'r3' }, 1);
  const h2 = await startRollout(h.client, next, { startedBy: 'carol', taskQueue: h.taskQueue });
  expect(h2.workflowId).toBe(h1.workflowId);
  await waitForStatus(h2, holds(dep), 30_000, 'next run granted');
  expect(((await within(h2.result(), 60_000, 'next run finishes')) as RolloutResult).state).toBe('succeeded');
});

test('an abort while queued for a lock removes the waiter from the queue and closes the rollout as aborted', async () => {
  const dep = uniqueDep('db');
  const a = await prepare('lk-d', dep, true);
  const b = await prepare('lk-e', dep, false);
  const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(ha, frozenHolding(dep), 60_000, 'a holding, frozen');
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(hb, waitsFor(dep), 60_000, 'b waiting');
  await eventually(async () => (await lockState(dep)).waiting.includes(hb.workflowId), 10_000, 'b queued');

  await hb.signal('abort', { by: 'carol', reason: 'not today' });
  expect(((await within(hb.result(), 30_000, 'b closes')) as RolloutResult).state).toBe('aborted');
  await eventually(async () => !(await lockState(dep)).waiting.includes(hb.workflowId), 10_000, 'b gone from the queue');
  const state = await lockState(dep);
  expect(state.holder).toBe(ha.workflowId);
  expect(state.waiting).toEqual([]);
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });

  await ha.signal('abort', { by: 'carol' });
  expect(((await within(ha.result(), 30_000, 'a closes')) as RolloutResult).state).toBe('aborted');
  await eventually(async () => (await lockState(dep)).holder === undefined, 10_000, 'lock free');
  await recordLockHistory(dep, 'dependency-lock-v2-abort-queued');
});

test('a forged lockGranted does not let a queued rollout skip the queue', async () => {
  const dep = uniqueDep('db');
  const a = await prepare('lk-f', dep, true);
  const b = await prepare('lk-g', dep, false);
  const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(ha, frozenHolding(dep), 60_000, 'a holding, frozen');
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(hb, waitsFor(dep), 60_000, 'b waiting');

  // Forged: not sent by the lock workflow (once without, once with b's own run id).
  await hb.signal(lockGrantedSignal, { dependency: dep });
  const runId = (await hb.describe()).runId;
  await hb.signal(lockGrantedSignal, { dependency: dep, runId } as { dependency: string });
  await new Promise((r) => setTimeout(r, 5000));
  const s = await waitForStatus(hb, () => true);
  expect(holds(dep)(s)).toBe(false);
  expect(waitsFor(dep)(s)).toBe(true);
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });
  expect((await lockState(dep)).holder).toBe(ha.workflowId);

  // The real grant still arrives once the holder is done.
  await ha.signal('abort', { by: 'carol' });
  expect(((await within(ha.result(), 30_000, 'a closes')) as RolloutResult).state).toBe('aborted');
  expect(((await within(hb.result(), 60_000, 'b finishes')) as RolloutResult).state).toBe('succeeded');
});

test('a queue carried over from the first lock version (workflow ids only) with a holder that is gone is cleared', async () => {
  const dep = uniqueDep('db');
  await h.client.workflow.start('dependencyLockWorkflow', {
    workflowId: dependencyLockWorkflowId(dep),
    taskQueue: h.taskQueue,
    args: [{ dependency: dep, queue: [`rollout-lk-gone-${dep}`], headGranted: true }],
  });
  const b = await prepare('lk-h', dep, false);
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(hb, holds(dep), 30_000, 'b granted after the stale holder was dropped');
  expect(((await within(hb.result(), 60_000, 'b finishes')) as RolloutResult).state).toBe('succeeded');
});

/** The lock workflow's live history replays; ROLLGATE_RECORD_LOCK_HISTORY=1 saves it as a fixture. */
async function recordLockHistory(dep: string, name: string): Promise<void> {
  const history = await h.client.workflow.getHandle(dependencyLockWorkflowId(dep)).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks }, history, dep);
  if (process.env.ROLLGATE_RECORD_LOCK_HISTORY === '1') saveHistoryFile(name, history);
}
