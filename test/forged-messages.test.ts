/**
 * Internal messages cannot be forged by someone who can send signals but cannot read histories:
 * lock grants, lock releases and scheduled verdicts sent with the SDK are refused and recorded, the
 * mutex holds, no traffic moves, a healthy rollout is not rolled back and a failing one is. The
 * forger even learns run ids the way a signaller can (a signal-with-start answers with the run id):
 * the run id is no secret, the nonce is.
 */
import { randomBytes } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { startRollout } from '../src/client';
import { createAnalysisSchedule, scheduleAction } from '../src/schedules';
import { noopSinks } from '../src/worker';
import {
  analysisScheduleId,
  dependencyLockWorkflowId,
  externalVerdictSignal,
  lockAcquireSignal,
  lockGrantedSignal,
  lockReleaseSignal,
  lockStateQuery,
  messageNonceQuery,
  type RolloutResult,
  type RolloutStatus,
  type ScheduledAnalysisResult,
} from '../src/contract';
import type { RolloutSpec } from '../src/spec/schema';
import { recordHistory, saveHistoryFile } from './support/history';
import { aliasState } from './support/lambda';
import { holdingFreeze, uniqueDep } from './support/locks';
import { createFunctions, createHarness, lambdaSpec, resultWithin, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
const stops: (() => void)[] = [];
beforeAll(async () => {
  h = await createHarness('forged');
  await h.startWorker();
});
afterAll(async () => {
  for (const s of stops) s();
  await h?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function prepare(spec: RolloutSpec, bad: (version: string) => boolean = () => false): Promise<RolloutSpec> {
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => bad(v));
  stops.push(() => traffic.stop());
  return spec;
}
const lockSpec = (service: string, dep: string, frozen: boolean) =>
  prepare(lambdaSpec(h, service, { shared_dependencies: [dep], ...(frozen ? { freeze_windows: holdingFreeze() } : {}) }, 1));

const lockState = (dep: string) => h.client.workflow.getHandle(dependencyLockWorkflowId(dep)).query(lockStateQuery);
const holds = (dep: string) => (s: RolloutStatus) => s.history.some((e) => e.text === `holding shared dependency ${dep}`);
const waitsFor = (dep: string) => (s: RolloutStatus) => s.detail.startsWith(`waiting for shared dependency ${dep}`);
const frozenHolding = (dep: string) => (s: RolloutStatus) => holds(dep)(s) && /frozen until/.test(s.detail);
const entries = (s: RolloutStatus, re: RegExp) => s.history.filter((e) => re.test(e.text));

/** What a signaller learns without any read access: signal-with-start answers with the open run's id. */
async function runIdBySignalWithStart(handle: WorkflowHandle): Promise<string> {
  const probe = await h.client.workflow.signalWithStart('rolloutWorkflow', {
    workflowId: handle.workflowId,
    taskQueue: h.taskQueue,
    args: [],
    signal: lockGrantedSignal,
    signalArgs: [{ dependency: 'probe' }],
  });
  return probe.signaledRunId;
}

async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(200);
  }
}

/** Holder a frozen with the lock, b waiting for it. */
async function holderAndWaiter(dep: string, prefix: string) {
  const a = await lockSpec(`${prefix}-a`, dep, true);
  const b = await lockSpec(`${prefix}-b`, dep, false);
  const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(ha, frozenHolding(dep), 60_000, 'a holding, frozen');
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(hb, waitsFor(dep), 60_000, 'b waiting');
  await eventually(async () => (await lockState(dep)).waiting.includes(hb.workflowId), 10_000, 'b queued');
  return { a, b, ha, hb };
}

test('forged lockGranted signals are refused and recorded: the waiting rollout keeps waiting and moves no traffic', async () => {
  const dep = uniqueDep('db');
  const { ha, hb, b } = await holderAndWaiter(dep, 'fg');
  const runId = await runIdBySignalWithStart(hb);
  expect(runId).toBe((await hb.describe()).runId);

  await hb.signal(lockGrantedSignal, { dependency: dep });
  await hb.signal(lockGrantedSignal, { dependency: dep, runId });
  await hb.signal(lockGrantedSignal, { dependency: dep, runId, nonce: randomBytes(16).toString('base64url') });
  await hb.signal('lockGranted'); // no argument at all: refused, and the workflow task does not fail
  const s = await waitForStatus(
    hb,
    (st) =>
      entries(st, /^refused a lockGranted for .* without a nonce .*: asking its lock workflow whether this run holds it$/).length === 2,
    20_000,
    'two forged grants without a nonce refused',
  );
  expect(entries(s, /^refused a lockGranted for .*: it does not carry the nonce of this run's request/)).toHaveLength(1);
  expect(entries(s, /^refused a lockGranted for probe: this run has not requested that lock/)).toHaveLength(1);
  expect(entries(s, /^refused a malformed lockGranted$/)).toHaveLength(1);
  // The grants were never taken: the lock's answer about the nonce-less ones (not the holder) left b waiting.
  expect(entries(s, /ignored a lockGranted/)).toHaveLength(0);
  await sleep(2000);
  const after = await waitForStatus(hb, () => true);
  expect(after.state).toBe('running');
  expect(holds(dep)(after)).toBe(false);
  expect(waitsFor(dep)(after)).toBe(true);
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });
  expect((await lockState(dep)).holder).toBe(ha.workflowId);

  // The nonce is known to the run (and readers of its history), never shown by status or lockState.
  const nonce = await hb.query(messageNonceQuery);
  expect(nonce).toMatch(/^[\w-]{22}$/);
  expect(JSON.stringify(after)).not.toContain(nonce!);
  expect(JSON.stringify(await lockState(dep))).not.toContain(nonce!);

  // The real grant still arrives once the holder is done.
  await ha.signal('abort', { by: 'carol' });
  expect((await resultWithin(ha, 30_000)).state).toBe('aborted');
  const res = await resultWithin(hb, 60_000);
  expect(res.state).toBe('succeeded');
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '2', weights: {} });
  await recordHistory(hb, 'rollout-v2-forged-lock-grants');
});

test("a forged lockRelease does not free another rollout's lock, even with its workflow id and run id", async () => {
  const dep = uniqueDep('db');
  const { ha, hb, b } = await holderAndWaiter(dep, 'fr');
  const holderRunId = await runIdBySignalWithStart(ha);
  const lock = h.client.workflow.getHandle(dependencyLockWorkflowId(dep));

  await lock.signal(lockReleaseSignal, { holder: ha.workflowId });
  await lock.signal(lockReleaseSignal, { holder: ha.workflowId, runId: holderRunId });
  await lock.signal(lockReleaseSignal, { holder: ha.workflowId, runId: holderRunId, nonce: 'guessed' });
  await lock.signal('lockRelease'); // malformed: refused, the lock workflow's task does not fail
  await eventually(async () => ((await lockState(dep)).refused ?? []).length >= 4, 20_000, 'four releases refused');
  const state = await lockState(dep);
  expect(state.refused!.map((r) => [r.message, r.holder, r.reason])).toEqual([
    ['lockRelease', ha.workflowId, 'no run id and nonce: that holder was queued with a nonce'],
    ['lockRelease', ha.workflowId, 'no nonce: that run was queued with a nonce only it knows'],
    ['lockRelease', ha.workflowId, 'a wrong nonce: that run was queued with a nonce only it knows'],
    ['lockRelease', undefined, 'malformed message'],
  ]);
  expect(state.refused![1].runId).toBe(holderRunId);
  expect(state.holder).toBe(ha.workflowId);
  expect(state.holderRunId).toBe(holderRunId);
  expect(state.waiting).toEqual([hb.workflowId]);
  await sleep(2000);
  const waiting = await waitForStatus(hb, () => true);
  expect(holds(dep)(waiting)).toBe(false);
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });

  // The holder's own release (with its nonce) frees it: b gets the lock and finishes.
  await ha.signal('abort', { by: 'carol' });
  expect((await resultWithin(ha, 30_000)).state).toBe('aborted');
  expect((await resultWithin(hb, 60_000)).state).toBe('succeeded');
  await eventually(async () => (await lockState(dep)).holder === undefined, 10_000, 'lock free');
  await replayLockHistory(dep, 'dependency-lock-v3-forged-release');
});

test('forged lockAcquire entries (the lock itself, a run that never asked, a guessed nonce) are dropped before any grant', async () => {
  const dep = uniqueDep('db');
  const a = await lockSpec('fa-a', dep, true);
  const b = await lockSpec('fa-b', dep, false);
  const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(ha, frozenHolding(dep), 60_000, 'a holding, frozen');
  // b is held before its first stage, so the forged entries naming it are queued before its own.
  const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
  await hb.signal('pause', { by: 'carol', reason: 'test: hold before the lock' });
  await waitForStatus(hb, (s) => s.state === 'paused', 30_000, 'b paused');
  const bRunId = await runIdBySignalWithStart(hb);
  const lockId = dependencyLockWorkflowId(dep);
  const probe = await h.client.workflow.signalWithStart('dependencyLockWorkflow', {
    workflowId: lockId,
    taskQueue: h.taskQueue,
    args: [{ dependency: dep }],
    signal: lockReleaseSignal,
    signalArgs: [{ holder: 'nobody' }],
  });
  const lock = h.client.workflow.getHandle(lockId);
  await lock.signal(lockAcquireSignal, { holder: lockId, runId: probe.signaledRunId });
  await lock.signal(lockAcquireSignal, { holder: hb.workflowId, runId: bRunId, nonce: 'guessed' });
  await lock.signal(lockAcquireSignal, { holder: hb.workflowId, runId: bRunId });
  await eventually(async () => (await lockState(dep)).waiting.length === 3, 10_000, 'three forged entries queued');

  await hb.signal('resume', { by: 'carol' });
  await waitForStatus(hb, waitsFor(dep), 60_000, 'b waiting');
  await eventually(async () => (await lockState(dep)).waiting.length === 4, 10_000, "b's own entry queued last");
  expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });

  await ha.signal('abort', { by: 'carol' });
  expect((await resultWithin(ha, 30_000)).state).toBe('aborted');
  await waitForStatus(hb, holds(dep), 30_000, 'b granted after the forged entries were dropped');
  const refused = (await lockState(dep)).refused!.filter((r) => r.message === 'lockAcquire');
  expect(refused.map((r) => [r.holder, r.reason])).toEqual([
    [lockId, 'not granted: the named run is a dependencyLockWorkflow, not a rollout'],
    [hb.workflowId, 'not granted: the named run did not request this lock with this nonce'],
    [hb.workflowId, 'not granted: the named run did not request this lock'],
  ]);
  const res = await resultWithin(hb, 60_000);
  expect(res.state).toBe('succeeded');
  // No grant was ever sent for a forged entry: b refused none.
  expect(entries(res.status, /refused a lockGranted for (?!probe)/)).toHaveLength(0);
  await eventually(async () => (await lockState(dep)).holder === undefined, 10_000, 'lock free');
  await replayLockHistory(dep, 'dependency-lock-v3-forged-acquires');
});

test('a forged failing externalVerdict does not roll back a healthy rollout', async () => {
  const spec = await prepare(lambdaSpec(h, 'fv-healthy', { canary: { targets: ['us-east-1'], weight: 10, bake: '15 seconds' } }, 1));
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(handle, (s) => s.stage === 'canary' && /baking/.test(s.detail), 60_000, 'canary bake');
  const forged = { verdict: 'fail' as const, reason: 'scheduled analysis: error rate 40 % > 2 %', release: spec.release };
  await handle.signal(externalVerdictSignal, forged);
  await handle.signal(externalVerdictSignal, { ...forged, nonce: randomBytes(16).toString('base64url') });
  await handle.signal('externalVerdict', 'fail');
  const s = await waitForStatus(
    handle,
    (st) => entries(st, /^refused an external fail: it does not carry this run's message nonce/).length === 2,
    20_000,
    'forged fails refused',
  );
  expect(entries(s, /^refused a malformed externalVerdict$/)).toHaveLength(1);
  expect(s.state).toBe('running');
  expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: { '2': 0.1 } });
  const res = await resultWithin(handle, 60_000);
  expect(res.state).toBe('succeeded');
  expect(res.status.history.some((e) => e.text.includes('error rate 40 %'))).toBe(false);
  expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '2', weights: {} });
});

test('a forged passing externalVerdict does not mask a real failing one from the scheduled analysis', async () => {
  const spec = await prepare(
    lambdaSpec(h, 'fv-failing', { canary: { targets: ['us-east-1'], weight: 10, bake: '2 minutes' } }, 1),
    (v) => v === '2',
  );
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  try {
    await waitForStatus(handle, (s) => s.stage === 'canary' && /baking/.test(s.detail), 60_000, 'canary bake');
    await handle.signal(externalVerdictSignal, { verdict: 'pass', reason: 'all good', release: spec.release });
    await waitForStatus(handle, (s) => entries(s, /^refused an external pass/).length === 1, 20_000, 'forged pass refused');
    await createAnalysisSchedule(h.client, { service: spec.service, every: '2s', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused by the real scheduled verdict');
    expect(paused.rollbackReason).toMatch(/^scheduled analysis: us-east-1: error rate/);
    expect(entries(paused, /^external fail: scheduled analysis/).length).toBeGreaterThanOrEqual(1);
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: {} });
    if (process.env.ROLLGATE_RECORD_HISTORIES === '1') await recordSenderOfFail(spec.service);
  } finally {
    await scheduleAction(h.client, spec.service, 'delete').catch(() => undefined);
  }
  await handle.signal('abort');
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  await recordHistory(handle, 'rollout-v2-forged-pass-real-scheduled-fail');
});

/** The scheduled-analysis run that sent the fail (with the nonce), for the replay suite. */
async function recordSenderOfFail(service: string): Promise<void> {
  const d = await h.client.schedule.getHandle(analysisScheduleId(service)).describe();
  for (const a of d.info.recentActions) {
    const run = h.client.workflow.getHandle(a.action.workflow.workflowId, a.action.workflow.firstExecutionRunId);
    const res = (await run.result()) as ScheduledAnalysisResult;
    if (res.mode === 'during-rollout' && res.verdict.verdict === 'fail' && /^sent fail/.test(res.action))
      return recordHistory(run, 'scheduled-analysis-v2-verdict-nonce');
  }
  throw new Error('no scheduled analysis sent the fail');
}

/** The lock workflow's live history replays; ROLLGATE_RECORD_LOCK_HISTORY=1 saves it as a fixture. */
async function replayLockHistory(dep: string, name: string): Promise<void> {
  const history = await h.client.workflow.getHandle(dependencyLockWorkflowId(dep)).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks }, history, dep);
  if (process.env.ROLLGATE_RECORD_LOCK_HISTORY === '1') saveHistoryFile(name, history);
}
