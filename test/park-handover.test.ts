/**
 * Parking on a short history (issue 12, item 3; opt-in with the start's `parkHandoverAfterMs`):
 * before a wait of that length or more, a rollout hands over to a new run, so that the run which sits in the bake has a few dozen events and a
 * query, signal or timer that wakes it after an eviction replays those, not the whole pipeline
 * so far. Checked in the chain of runs (where the bake timer was started, how long each history
 * is) and in moto (a breach of the parked run reverts every target; one new version each).
 */
import { startRollout } from '../src/client';
import type { RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import { abortSignal, approveUpdate, messageNonceQuery, pauseSignal, resumeSignal, type RolloutResult } from '../src/contract';
import { deliverAlertVerdict } from '../src/alerts/deliver';
import { servicesWithLambda } from '../src/alerts/resolve';
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
  h = await createHarness('park');
  await h.startWorker();
});
afterAll(async () => h?.close());

function spec(service: string, over: Partial<RolloutSpecInput> = {}): RolloutSpec {
  const targets = lambdaPair(service);
  return lambdaSpec(h, service, {
    targets,
    canary: { targets: ['a'], weight: 10, bake: '20 minutes' },
    waves: [{ name: 'wave-1', targets: ['b'], steps: [100], bake: '1 second' }],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5 },
    ...over,
  });
}

/** Timers a run started for a bake (their summary says so). */
const bakeTimers = (events: any[]) =>
  events.filter((e) => e.timerStartedEventAttributes && Buffer.from(e.userMetadata?.summary?.data ?? '', 'base64').includes('bake '));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FIVE_MINUTES = 5 * 60_000;

test('without parkHandoverAfterMs (the default) a 20-minute bake parks in the run that started it', async () => {
  const s = spec('park-off');
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (x) => x.bakeEndsAtMs !== undefined, 60_000, 'baking');
    const runs = await runChain(h.client, handle.workflowId, handle.firstExecutionRunId);
    expect(runs).toHaveLength(1);
    expect(bakeTimers(runs[0].events)).toHaveLength(1);
    await handle.signal(abortSignal, { by: 'carol', reason: 'done' });
    expect(((await handle.result()) as RolloutResult).state).toBe('aborted');
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  } finally {
    sim.stop();
  }
}, 120_000);

test('with parkHandoverAfterMs 5 minutes, a 20-minute canary bake parks in a new run of a few dozen events; a breach of the parked run reverts every target', async () => {
  const s = spec('park-bake');
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue, parkHandoverAfterMs: FIVE_MINUTES });
    const parked = await waitForStatus(
      handle,
      (x) => x.bakeEndsAtMs !== undefined && x.history.some((e) => /continued as new run 1/.test(e.text)),
      60_000,
      'parked in the continued run',
    );
    const shiftedAt = parked.history.find((e) => e.text.includes('a at 10 %'))!.atMs;
    // The whole bake is still ahead: the handover came before its timer, not after.
    expect(parked.bakeEndsAtMs! - shiftedAt).toBeGreaterThan(20 * 60_000 - 5_000);
    expect(parked.targets.find((t) => t.name === 'a')!.weight).toBe(10);

    const runs = await runChain(h.client, handle.workflowId, handle.firstExecutionRunId);
    expect(runs).toHaveLength(2);
    const [first, second] = runs;
    expect(first.events[first.events.length - 1].workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();
    expect(bakeTimers(first.events)).toHaveLength(0);
    expect(bakeTimers(second.events)).toHaveLength(1);
    // What a woken evicted run replays: the parked run's history, a fraction of the first run's.
    expect(first.events.length).toBeGreaterThanOrEqual(60);
    expect(second.events.length).toBeLessThan(40);
    // Deployed once, in the first run.
    const deploys = runs.map(
      (r) => r.events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'deployRevision').length,
    );
    expect(deploys).toEqual([2, 0]);

    // The parked run answers messages: a pause, a resume, then a breach with its own nonce.
    await handle.signal(pauseSignal, { by: 'carol' });
    await waitForStatus(handle, (x) => x.state === 'paused', 20_000, 'paused');
    await handle.signal(resumeSignal, { by: 'carol' });
    await waitForStatus(handle, (x) => x.state === 'running' && x.bakeEndsAtMs !== undefined, 20_000, 'baking again');
    // The next run keeps the rollout's message nonce (a verdict read before a handover stays authentic).
    const nonce = await handle.query(messageNonceQuery);
    expect(nonce).toBeTruthy();
    expect(await h.client.workflow.getHandle(handle.workflowId, first.runId).query(messageNonceQuery)).toBe(nonce);
    // A CloudWatch alarm about target a finds the rollout (its runs listed by visibility)...
    expect(await servicesWithLambda(h.client, { function: 'park-bake-a' })).toEqual(['park-bake']);
    // ...and a verdict judged against the first run reaches the run it handed over to, not dropped.
    await deliverAlertVerdict(
      h.client,
      { service: s.service, runId: first.runId },
      { verdict: 'fail', reason: 'test: the parked canary breached', release: s.release },
    );
    const back = await waitForStatus(handle, (x) => x.pausedAfterRollback === true, 60_000, 'paused after the rollback');
    expect(back.rollbackReason).toMatch(/parked canary breached/);
    // Ground truth: both targets on version 1 alone, and they stay there.
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await sleep(1_500);
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await handle.signal(abortSignal, { by: 'carol', reason: 'done' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    for (const t of s.targets) {
      expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
      expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    }
    await recordHistory(h.client.workflow.getHandle(handle.workflowId, first.runId), 'rollout-v2-park-handover-first-run');
    await recordHistory(h.client.workflow.getHandle(handle.workflowId, second.runId), 'rollout-v2-park-handover-parked-breach');
  } finally {
    sim.stop();
  }
}, 180_000);

test('with parkHandoverAfterMs 5 minutes, waits and bakes shorter than that stay in one run: an approval with the canary analysed every minute, bakes of seconds', async () => {
  const s = spec('park-short', {
    canary: { targets: ['a'], weight: 10, bake: '2 seconds' },
    waves: [{ name: 'wave-1', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
  });
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue, parkHandoverAfterMs: FIVE_MINUTES });
    await waitForStatus(handle, (x) => x.awaitingApproval === 'wave-1', 60_000, 'awaiting approval');
    await sleep(1_000);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', wave: 'wave-1' }] });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('succeeded');
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
    expect(await runChain(h.client, handle.workflowId, handle.firstExecutionRunId)).toHaveLength(1);
  } finally {
    sim.stop();
  }
}, 120_000);

test('a pause carried into a continued run that hands over again keeps the bake it was in (the clock stops, it does not restart)', async () => {
  const s = spec('park-pause', {
    canary: { targets: ['a'], weight: 10, bake: '10 minutes' },
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' },
    waves: [],
  });
  await createFunctions(h, s);
  const sim = simulateTraffic(h, s);
  try {
    // Slices of 1 s count as parking: the rollout hands over every few analyses, paused or not.
    const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue, parkHandoverAfterMs: 500 });
    const baking = await waitForStatus(handle, (x) => x.bakeEndsAtMs !== undefined, 60_000, 'baking');
    await sleep(8_000); // bake a while before the pause
    await handle.signal(pauseSignal, { by: 'carol' });
    await waitForStatus(handle, (x) => x.state === 'paused', 20_000, 'paused');
    // While paused the runs keep analysing the canary and handing over: at least two handovers
    // start in a run that was already paused (the bake not yet entered again).
    const seen = new Set([(await handle.describe()).runId]);
    await nextRun(handle, seen, 60_000);
    await nextRun(handle, seen, 60_000);
    expect((await waitForStatus(handle, () => true)).state).toBe('paused');
    const resumedAt = Date.now();
    await handle.signal(resumeSignal, { by: 'carol' });
    const st = await waitForStatus(handle, (x) => x.state === 'running' && x.bakeEndsAtMs !== undefined, 20_000, 'baking again');
    // What was baked before the pause (8 s or more) still counts: a restarted bake would end 10 minutes after the resume.
    expect(st.bakeEndsAtMs! - resumedAt).toBeLessThan(10 * 60_000 - 5_000);
    expect(st.bakeEndsAtMs! - resumedAt).toBeGreaterThan(10 * 60_000 - 60_000);
    expect(baking.stage).toBe('canary');
    await handle.signal(abortSignal, { by: 'carol', reason: 'done' });
    expect(((await handle.result()) as RolloutResult).state).toBe('aborted');
    for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await recordHistory(handle, 'rollout-v2-park-handover-paused-handover-abort');
  } finally {
    sim.stop();
  }
}, 180_000);
