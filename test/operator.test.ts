import { recordHistory } from './support/history';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { RolloutRefusedError, startRollout } from '../src/client';
import {
  abortSignal,
  approveUpdate,
  pauseSignal,
  rejectUpdate,
  resumeSignal,
  rolloutWorkflowId,
  type RolloutResult,
} from '../src/contract';
import { aliasState } from './support/lambda';
import { lambdaOp } from '../src/dev/fault-proxy';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('operator');
  await h.startWorker();
});
afterAll(async () => h?.close());

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    return ((err as Error).cause as Error).message;
  }
  throw new Error('expected a refusal');
}

test('approvals: non-approver and starter refused, reject reverts and pauses, approve after resume proceeds', async () => {
  const base = lambdaSpec(h, 'approvals');
  const spec = { ...base, waves: base.waves.map((w, i) => (i === 0 ? { ...w, approval: true } : w)) };
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'alice', taskQueue: h.taskQueue });
    // An approval before the wave asks for one is refused too.
    const early = await waitForStatus(handle, (s) => s.stage === 'canary', 60_000, 'canary');
    expect(early.awaitingApproval).toBeUndefined();
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] }))).toMatch(/rollout is not waiting for an approval/);
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 60_000, 'approval wait');

    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'mallory' }] }))).toMatch(
      /mallory is not an approver of approvals \(approvers: alice, bob\)/,
    );
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] }))).toMatch(
      /alice started this rollout and cannot approve it \(four-eyes rule\)/,
    );
    expect(await refusal(handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: ' ' }] }))).toMatch(/reject needs a reason/);

    // While waiting, the canary holds its weight.
    expect((await aliasState(h.motoUrl, spec.targets[0])).weights).toEqual({ '2': 0.1 });

    expect(await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'not on a Friday' }] })).toBe('rejected wave wave-1');
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 30_000, 'paused after reject');
    expect(paused.rollbackReason).toBe('wave wave-1 rejected by bob: not on a Friday');
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });

    await handle.signal(resumeSignal, { by: 'alice' });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1' && s.state === 'running', 60_000, 'approval wait again');
    expect(await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'go' }] })).toBe('approved wave wave-1');
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.approvals).toEqual([
      { wave: 'wave-1', by: 'bob', decision: 'rejected', reason: 'not on a Friday' },
      { wave: 'wave-1', by: 'bob', decision: 'approved', reason: 'go' },
    ]);
  } finally {
    traffic.stop();
  }
});

test('pause during a wave holds the weights and stops the bake clock; resume finishes', async () => {
  const BAKE_MS = 3_000;
  const base = lambdaSpec(h, 'pausing');
  const spec = { ...base, waves: base.waves.map((w) => ({ ...w, bake: '3 seconds' })) };
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  const fn = 'pausing-fn';
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.stage === 'wave:wave-1' && /baking/.test(s.detail), 60_000, 'wave-1 bake');
    // wave-1's 50 % step: its alias write is the last one so far; the bake started after it.
    const shiftAtMs = h.proxy.calls.filter(lambdaOp.updateAlias(fn)).pop()!.atMs;
    const pauseSentMs = Date.now();
    await handle.signal(pauseSignal, { by: 'carol', reason: 'lunch' });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 10_000, 'paused');
    const held = await aliasState(h.motoUrl, spec.targets[1]);
    expect(held.weights).toEqual({ '2': 0.5 });
    // Longer than the bake: nothing may advance while paused.
    await new Promise((r) => setTimeout(r, 4500));
    expect(await aliasState(h.motoUrl, spec.targets[1])).toEqual(held);
    const still = await waitForStatus(handle, () => true);
    expect(still).toMatchObject({ state: 'paused', stage: 'wave:wave-1' });
    expect(still.targets.map((t) => t.weight)).toEqual(paused.targets.map((t) => t.weight));
    const writesWhilePaused = h.proxy.count(lambdaOp.updateAlias(fn));

    const resumeSentMs = Date.now();
    await handle.signal(resumeSignal, { by: 'carol' });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    // The clock stood still: at most (pause - shift) of the bake had run before the pause, so the
    // next step (wave-1 to 100 %) comes at least the rest of the bake after the resume.
    const next = h.proxy.calls.filter(lambdaOp.updateAlias(fn))[writesWhilePaused];
    const bakedBeforePauseMs = pauseSentMs - shiftAtMs;
    expect(bakedBeforePauseMs).toBeLessThan(BAKE_MS);
    expect(next.atMs - resumeSentMs).toBeGreaterThanOrEqual(BAKE_MS - bakedBeforePauseMs);
    await recordHistory(handle, 'rollout-v2-pause-resume');
  } finally {
    traffic.stop();
  }
});

test('a second rollout of the same service is refused while one runs and while it is paused', async () => {
  const spec = lambdaSpec(h, 'single', { canary: { targets: ['us-east-1'], weight: 10, bake: '1 minute' } });
  await createFunctions(h, spec);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(handle, (s) => s.stage === 'canary', 60_000, 'canary');
  const second = { ...spec, release: 'r3' };
  await expect(startRollout(h.client, second, { startedBy: 'dave', taskQueue: h.taskQueue })).rejects.toThrow(
    /service single already has rollout rollout-single: release r2 is running \(stage canary\)\. Only one rollout per service runs at a time/,
  );
  // Temporal itself refuses, whatever client starts it.
  await expect(
    h.client.workflow.start('rolloutWorkflow', {
      workflowId: rolloutWorkflowId('single'),
      taskQueue: h.taskQueue,
      args: [{ spec: second, startedBy: 'dave' }],
      workflowIdConflictPolicy: 'FAIL',
    }),
  ).rejects.toBeInstanceOf(WorkflowExecutionAlreadyStartedError);

  await handle.signal(pauseSignal);
  await waitForStatus(handle, (s) => s.state === 'paused', 10_000, 'paused');
  const err = await startRollout(h.client, second, { startedBy: 'dave', taskQueue: h.taskQueue }).catch((e) => e);
  expect(err).toBeInstanceOf(RolloutRefusedError);
  expect(err.message).toMatch(/release r2 is paused .* its pipeline is paused: `rollgate resume rollout-single`/);

  await handle.signal(abortSignal, { by: 'carol', reason: 'test over' });
  const res = (await handle.result()) as RolloutResult;
  expect(res.state).toBe('aborted');
  for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  // Once closed, the service takes a new rollout.
  const next = await startRollout(h.client, second, { startedBy: 'dave', taskQueue: h.taskQueue });
  await next.signal(abortSignal);
  expect(((await next.result()) as RolloutResult).state).toMatch(/aborted/);
});
