/**
 * Continue-as-new (issue 9, item 6): a long bake or wait hands over to a new run before the history
 * grows without bound, and the next run goes on exactly there. Checked in moto: one new version per
 * target, traffic where it should be; and in the chain of runs itself (the history of each run).
 * `continueAsNewAfterEvents` is lowered so that a few seconds of interval analyses hand over.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { startRollout } from '../src/client';
import type { RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import {
  abortSignal,
  approveUpdate,
  dependencyLockWorkflowId,
  lockStateQuery,
  pauseSignal,
  resumeSignal,
  type RolloutResult,
  type RolloutStatus,
} from '../src/contract';
import { aliasState, publishedVersions } from './support/lambda';
import { recordHistory } from './support/history';
import {
  createFunctions,
  createHarness,
  lambdaPair,
  lambdaSpec,
  nextRun,
  runChain,
  simulateTraffic,
  waitForStatus,
  type Harness,
} from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('can');
  await h.startWorker();
});
afterAll(async () => h?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HANDOVER_AFTER = 60;

function spec(service: string, over: Partial<RolloutSpecInput> = {}): RolloutSpec {
  const targets = lambdaPair(service);
  return lambdaSpec(h, service, {
    targets,
    canary: { targets: ['a'], weight: 10, bake: '8 seconds' },
    waves: [{ name: 'wave-1', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' },
    ...over,
  });
}

/** Start as carol, handing over to a new run past `after` history events. */
function start(s: RolloutSpec, after: number) {
  return startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue, continueAsNewAfterEvents: after });
}

function entryAt(s: RolloutStatus, text: string): number {
  const e = s.history.find((x) => x.text.includes(text));
  if (!e) throw new Error(`no history entry "${text}" in ${s.history.map((x) => x.text).join(' | ')}`);
  return e.atMs;
}

test('a long bake and an approval wait continue as new; the rollout promotes once, with its approval and its whole bake', async () => {
  const s = spec('can-happy');
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    const handle = await start(s, HANDOVER_AFTER);
    const seen = new Set([handle.firstExecutionRunId]);
    // Handed over during the canary bake, then again while waiting for the approval.
    await waitForStatus(handle, (st) => st.awaitingApproval === 'wave-1', 90_000, 'awaiting approval');
    const waitingRun = (await handle.describe()).runId;
    seen.add(waitingRun);
    await nextRun(handle, seen);
    const st = await waitForStatus(handle, (x) => x.awaitingApproval === 'wave-1', 30_000, 'approval announced again');
    expect(st.targets.find((t) => t.name === 'a')!.weight).toBe(10);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', wave: 'wave-1' }] });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('succeeded');

    // Ground truth: each target serves its one new version, alone.
    for (const t of s.targets) {
      expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
      expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    }
    const runs = await runChain(h.client, handle.workflowId, handle.firstExecutionRunId);
    expect(runs.length).toBeGreaterThanOrEqual(3);
    // Every run but the last handed over; each one ran analyses (an activity each) before it did.
    for (const r of runs.slice(0, -1)) {
      expect(r.events[r.events.length - 1].workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();
      expect(r.events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'analyzeCanary').length).toBeGreaterThan(
        0,
      );
    }
    // Deployed once, in the first run only.
    const deploys = runs.map(
      (r) => r.events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'deployRevision').length,
    );
    expect(deploys).toEqual([2, ...runs.slice(1).map(() => 0)]);

    const final = result.status;
    expect(final.approvals).toEqual([expect.objectContaining({ wave: 'wave-1', by: 'alice', decision: 'approved' })]);
    // The rollout's start, not the last run's (the runs took more than ten seconds).
    const firstStart = (await client(handle, runs[0].runId).describe()).startTime.getTime();
    expect(Math.abs(final.startedAtMs - firstStart)).toBeLessThan(1_000);
    // The canary bake lasted its 8 seconds of workflow time across the handovers (not restarted, not cut short).
    const baked = entryAt(final, 'stage wave:wave-1') - entryAt(final, 'a at 10 %');
    expect(baked).toBeGreaterThanOrEqual(8_000);
    expect(final.history.some((e) => e.text.includes('continued as new run 1 at the canary'))).toBe(true);
    expect(final.history.some((e) => /continued as new run \d+ at wave wave-1/.test(e.text))).toBe(true);
    await recordHistory(client(handle, runs[0].runId), 'rollout-v2-continue-as-new-first-run');
    await recordHistory(client(handle, runs[runs.length - 1].runId), 'rollout-v2-continue-as-new-last-run');
  } finally {
    sim.stop();
  }
}, 180_000);

function client(handle: WorkflowHandle, runId: string): WorkflowHandle {
  return h.client.workflow.getHandle(handle.workflowId, runId);
}

test('a breach after a continue-as-new reverts every target, and the dependency lock held across runs is released', async () => {
  const s = spec('can-breach', {
    canary: { targets: ['a', 'b'], weight: 20, bake: '2 minutes' },
    waves: [],
    shared_dependencies: ['can-db'],
  });
  await createFunctions(h, s);
  let bad = false;
  const sim = simulateTraffic(h, s, (_t, v) => bad && v === '2');
  try {
    const handle = await start(s, HANDOVER_AFTER);
    const seen = new Set([handle.firstExecutionRunId]);
    await nextRun(handle, seen, 90_000);
    await nextRun(handle, seen, 60_000);
    const lock = h.client.workflow.getHandle(dependencyLockWorkflowId('can-db'));
    expect((await lock.query(lockStateQuery)).holderRunId).toBe(handle.firstExecutionRunId);
    bad = true;
    const paused = await waitForStatus(handle, (x) => x.pausedAfterRollback === true, 60_000, 'paused after the rollback');
    expect(paused.rollbackReason).toMatch(/error/i);
    // Ground truth: both targets back on version 1 alone, and they stay there.
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await waitUntil(async () => (await lock.query(lockStateQuery)).holder === undefined, 20_000, 'lock released');
    await sleep(2_000);
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await handle.signal(abortSignal, { by: 'carol', reason: 'done' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    for (const t of s.targets) expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
  } finally {
    sim.stop();
  }
}, 240_000);

test('a pause survives a continue-as-new: the new run stays paused, and resume finishes the bake that was left', async () => {
  const s = spec('can-pause', { canary: { targets: ['a'], weight: 10, bake: '6 seconds' }, waves: [] });
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    const handle = await start(s, HANDOVER_AFTER * 3);
    await waitForStatus(handle, (x) => x.targets[0].weight === 10, 60_000, 'canary shifted');
    await handle.signal(pauseSignal, { by: 'carol' });
    const seen = new Set([(await handle.describe()).runId, handle.firstExecutionRunId]);
    await nextRun(handle, seen, 90_000);
    const st = await waitForStatus(handle, (x) => x.state === 'paused', 10_000, 'paused in the new run');
    expect(st.detail).toMatch(/paused by operator/);
    await sleep(1_000);
    expect((await waitForStatus(handle, () => true)).stage).toBe('canary'); // nothing moved on while paused
    await handle.signal(resumeSignal, { by: 'carol' });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('succeeded');
    expect(await aliasState(h.motoUrl, s.targets[0])).toEqual({ version: '2', weights: {} });
    const paused = entryAt(result.status, 'paused by carol');
    const resumed = entryAt(result.status, 'resumed by carol');
    const shifted = entryAt(result.status, 'a at 10 %');
    const promoted = entryAt(result.status, 'stage promote');
    // The bake clock stopped while paused: 6 s of baking besides the pause.
    expect(promoted - shifted - (resumed - paused)).toBeGreaterThanOrEqual(6_000);
  } finally {
    sim.stop();
  }
}, 240_000);

async function waitUntil(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}
