/**
 * The rollback invariant on the paths that broke it (issue 9), each checked in moto, never from the
 * workflow's own status: a stopped rollout serves 100 % stable on every touched target, and stays so.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRollout } from '../src/client';
import { LambdaClient, UpdateAliasCommand } from '@aws-sdk/client-lambda';
import { lambdaOp } from '../src/dev/fault-proxy';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { LambdaTargetSpec, RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import {
  abortSignal,
  approveUpdate,
  externalVerdictSignal,
  messageNonceQuery,
  resumeSignal,
  statusQuery,
  type RolloutStatus,
} from '../src/contract';
import { aliasState, watchAliasWrites } from './support/lambda';
import { recordHistory } from './support/history';
import {
  createFunctions,
  createHarness,
  lambdaSpec,
  simulateTraffic,
  trafficSettled,
  waitForAlert,
  waitForStatus,
  type Harness,
  resultWithin,
} from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('invariant');
  await h.startWorker();
});
afterAll(async () => h?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two Lambda targets with their own function names, so faults can hit one of them only. */
function twoTargets(service: string, over: Partial<RolloutSpecInput> = {}): RolloutSpec {
  const targets: LambdaTargetSpec[] = [
    { name: 'a', provider: 'aws-lambda', region: 'us-east-1', function: `${service}-a`, alias: 'live' },
    { name: 'b', provider: 'aws-lambda', region: 'eu-west-1', function: `${service}-b`, alias: 'live' },
  ];
  return lambdaSpec(h, service, {
    targets,
    canary: { targets: ['a', 'b'], weight: 10, bake: '1 second' },
    waves: [],
    ...over,
  });
}

/** The canary shift on `fn` goes through; every later alias update (the reverts) is refused. */
function refuseRevertsOf(fn: string): void {
  let shifted = false;
  h.proxy.inject({
    match: (c) => {
      if (!lambdaOp.updateAlias(fn)(c)) return false;
      if (shifted) return true;
      shifted = true; // the canary shift
      return false;
    },
    times: 1_000,
    action: { status: 403, errorType: 'AccessDeniedException', message: 'not authorized' },
  });
}

/** Every target on version 1 alone, now and still after `staysMs` (no late write lands). */
async function expectStableAndStays(spec: RolloutSpec, staysMs = 3_000) {
  for (const t of spec.targets)
    expect({ target: t.name, ...(await aliasState(h.motoUrl, t)) }).toEqual({ target: t.name, version: '1', weights: {} });
  await sleep(staysMs);
  for (const t of spec.targets)
    expect({ target: t.name, ...(await aliasState(h.motoUrl, t)) }).toEqual({ target: t.name, version: '1', weights: {} });
}

/** The reason an update was refused (the SDK wraps it: "Workflow Update failed" with the cause). */
async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'accepted',
    (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
  );
}

test('one target fails non-retryably while its sibling is mid-write: the sibling settles first, then both are reverted, and stay so', async () => {
  const spec = twoTargets('sibling-race');
  await createFunctions(h, spec);
  // a's first alias update (the canary shift) reaches moto only after 3 s; b's is refused outright.
  h.proxy.inject({ match: lambdaOp.updateAlias('sibling-race-a'), action: { delayMs: 3_000 } });
  h.proxy.inject({
    match: lambdaOp.updateAlias('sibling-race-b'),
    action: { status: 403, errorType: 'AccessDeniedException', message: 'not authorized to perform lambda:UpdateAlias' },
  });
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after the refused shift');
  expect(paused.rollbackReason).toMatch(/AccessDeniedException/);
  // The delayed write landed before the revert, not after it.
  const aWrites = h.proxy.calls.filter(lambdaOp.updateAlias('sibling-race-a'));
  expect(aWrites).toHaveLength(2);
  await expectStableAndStays(spec);
  await handle.signal(abortSignal, { by: 'carol' });
  expect((await resultWithin(handle, 30_000)).state).toBe('rolled-back');
  await recordHistory(handle, 'rollout-v2-sibling-failure-abort');
});

test('abort is honoured in rollback-failed: the rollout closes as rollback-failed', async () => {
  const spec = twoTargets('abort-rollback-failed', { canary: { targets: ['a'], weight: 10, bake: '1 second' } });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2');
  refuseRevertsOf('abort-rollback-failed-a');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.state === 'rollback-failed', 60_000, 'rollback-failed');
    await waitForAlert(h, 'abort-rollback-failed');
    await handle.signal(abortSignal, { by: 'carol' });
    const res = await resultWithin(handle, 20_000);
    expect(res.state).toBe('rollback-failed');
    // The last try failed too: a last alert names the target that may still serve the new version.
    const closing = h.webhook.received.filter((r) => r.body.rollgate.service === 'abort-rollback-failed').pop()!;
    expect(closing.body.rollgate.event).toBe('closed-rollback-failed');
    expect(closing.body.text).toMatch(/revert a: .*AccessDenied/);
    await recordHistory(handle, 'rollout-v2-rollback-failed-abort');
  } finally {
    traffic.stop();
    h.proxy.clearFaults();
  }
});

test('an abort whose revert fails waits in rollback-failed; fixed, a second abort reverts and closes', async () => {
  const spec = twoTargets('abort-then-fix', { canary: { targets: ['a'], weight: 10, bake: '60 seconds' } });
  await createFunctions(h, spec);
  refuseRevertsOf('abort-then-fix-a');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.stage === 'canary' && /baking/.test(s.detail), 60_000, 'canary bake');
    await handle.signal(abortSignal, { by: 'carol' });
    await waitForStatus(handle, (s) => s.state === 'rollback-failed', 60_000, 'rollback-failed');
    await sleep(1_500);
    expect((await handle.query(statusQuery)).state).toBe('rollback-failed'); // the early abort did not close it
    h.proxy.clearFaults(); // the operator fixes the permission
    await handle.signal(abortSignal, { by: 'carol' });
    const res = await resultWithin(handle, 30_000);
    expect(res.state).toBe('aborted');
    await expectStableAndStays(spec, 1_000);
  } finally {
    h.proxy.clearFaults();
  }
});

test('an abort part-way through the deploy waits for the write in flight, reverts, and nothing moves after', async () => {
  const spec = twoTargets('abort-deploy');
  await createFunctions(h, spec);
  // a's code upload reaches moto only after 5 s; b deploys at once.
  const HOLD_MS = 5_000;
  h.proxy.inject({ match: lambdaOp.updateCode('abort-deploy-a'), action: { delayMs: HOLD_MS } });
  const aliases = watchAliasWrites(h.proxy);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const deadline = Date.now() + 60_000;
  while (h.proxy.count(lambdaOp.updateCode('abort-deploy-a')) === 0 && Date.now() < deadline) await sleep(50);
  const held = h.proxy.calls.find(lambdaOp.updateCode('abort-deploy-a'))!;
  expect(held).toBeDefined();
  await handle.signal(abortSignal, { by: 'carol' });
  const res = await resultWithin(handle, 60_000);
  expect({ state: res.state, reason: res.reason }).toEqual({ state: 'aborted', reason: 'aborted by carol' });
  // The rollout closed only after the held write was answered: the deploy settled before the saga ran.
  const closedAtMs = (await handle.describe()).closeTime!.getTime();
  expect(closedAtMs).toBeGreaterThanOrEqual(held.atMs + HOLD_MS);
  const stages = res.status.history.filter((e) => e.kind === 'stage').map((e) => e.text.split(':')[0]);
  expect(stages).toEqual(['stage preflight', 'stage build', 'stage deploy', 'stage rollback', 'stage done']);
  const compensations = res.status.history.filter((e) => e.kind === 'compensation').map((e) => e.text);
  expect(compensations.filter((t) => !t.includes('$LATEST')).sort()).toEqual(['a: 100 % back on version 1', 'b: 100 % back on version 1']);
  // Both deploys had changed $LATEST (a's held code upload landed before the saga ran): put back after the reverts.
  expect(compensations.filter((t) => t.includes('$LATEST')).sort()).toEqual([
    'a: $LATEST back on the code and environment of version 1',
    'b: $LATEST back on the code and environment of version 1',
  ]);
  // No traffic moved: no alias write ever put weight on (or pointed at) anything but version 1.
  await expectStableAndStays(spec);
  aliases.stop();
  for (const fn of ['abort-deploy-a', 'abort-deploy-b']) expect(aliases.forward(fn, '1')).toEqual([]);
});

test('rollback-failed with three targets where only one revert fails: resume retries that one revert only', async () => {
  const targets: LambdaTargetSpec[] = ['a', 'b', 'c'].map((n, i) => ({
    name: n,
    provider: 'aws-lambda' as const,
    region: ['us-east-1', 'eu-west-1', 'ap-southeast-2'][i],
    function: `one-of-three-${n}`,
    alias: 'live',
  }));
  const spec = lambdaSpec(h, 'one-of-three', { targets, canary: { targets: ['a', 'b', 'c'], weight: 10, bake: '1 second' }, waves: [] });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (t, v) => t.name === 'a' && v === '2'); // a's canary breaches
  refuseRevertsOf('one-of-three-b');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const failed = await waitForStatus(handle, (s) => s.state === 'rollback-failed', 60_000, 'rollback-failed');
    expect(failed.rollbackReason).toMatch(/^a: error rate/);
    // a and c are back on version 1; b still serves the canary split.
    expect(await aliasState(h.motoUrl, targets[0])).toEqual({ version: '1', weights: {} });
    expect(await aliasState(h.motoUrl, targets[1])).toEqual({ version: '1', weights: { '2': 0.1 } });
    expect(await aliasState(h.motoUrl, targets[2])).toEqual({ version: '1', weights: {} });
    const alert = await waitForAlert(h, 'one-of-three');
    expect(alert.body.rollgate.event).toBe('rollback-failed');
    expect(alert.body.text).toMatch(/revert b: .*AccessDenied/);
    expect(alert.body.text).not.toMatch(/revert [ac]:/);
    expect([...alert.body.rollgate.revertedTargets].sort()).toEqual(['a', 'c']);
    expect(failed.targets.map((t) => [t.name, t.weight])).toEqual([
      ['a', 0],
      ['b', 10],
      ['c', 0],
    ]);

    h.proxy.clearFaults(); // the operator fixes b's permission
    const from = h.proxy.calls.length;
    const historyBefore = failed.history.length;
    await handle.signal(resumeSignal, { by: 'carol' });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 30_000, 'paused after the retried revert');
    const after = h.proxy.calls.slice(from);
    // b's revert and nothing else: one alias update on b, no traffic write to a or c, nothing published
    // or invoked. (Once every revert is done, each function's $LATEST is put back: code/configuration writes.)
    expect(after.filter(lambdaOp.updateAlias('one-of-three-b'))).toHaveLength(1);
    const restoresLatest = (c: { path: string }) => /\/functions\/[^/]+\/(code|configuration)$/.test(c.path.split('?')[0]);
    for (const fn of ['one-of-three-a', 'one-of-three-c'])
      expect(
        after.filter((c) => c.method !== 'GET' && lambdaOp.any(fn)(c) && !restoresLatest(c)).map((c) => `${c.method} ${c.path}`),
      ).toEqual([]);
    expect(after.filter((c) => lambdaOp.publishVersion()(c) || lambdaOp.invoke()(c))).toHaveLength(0);
    const newEntries = paused.history.slice(historyBefore);
    expect(newEntries.filter((e) => e.kind === 'compensation' && !e.text.includes('$LATEST')).map((e) => e.text)).toEqual([
      'b: 100 % back on version 1',
    ]);
    expect(newEntries.filter((e) => e.kind === 'stage').map((e) => e.text.split(':')[0])).toEqual(['stage rollback']);
    await expectStableAndStays(spec, 1_000);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 20_000)).state).toBe('rolled-back');
  } finally {
    traffic.stop();
    h.proxy.clearFaults();
  }
});

test('promote refused on one target after the others reached 100 %: every target goes back, those at 100 % too', async () => {
  const targets: LambdaTargetSpec[] = ['a', 'b', 'c'].map((n, i) => ({
    name: n,
    provider: 'aws-lambda' as const,
    region: ['us-east-1', 'eu-west-1', 'ap-southeast-2'][i],
    function: `promote-one-${n}`,
    alias: 'live',
  }));
  const spec = lambdaSpec(h, 'promote-one', {
    targets,
    canary: { targets: ['a'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-bc', targets: ['b', 'c'], steps: [100], bake: '1 second' }],
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  // a's second alias update is its promote (the first is the canary shift): refused. Its revert goes through.
  let aUpdates = 0;
  h.proxy.inject({
    match: (c) => lambdaOp.updateAlias('promote-one-a')(c) && ++aUpdates === 2,
    action: { status: 403, errorType: 'AccessDeniedException', message: 'not authorized to perform lambda:UpdateAlias' },
  });
  const aliases = watchAliasWrites(h.proxy);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after the refused promote');
    expect(paused.rollbackReason).toMatch(/^stage promote failed: .*AccessDeniedException/);
    expect(paused.failedStage).toBe('promote');
    // b and c had reached 100 % on version 2 before the promote, and were put back.
    for (const fn of ['promote-one-b', 'promote-one-c'])
      expect(aliases.forward(fn, '1')).toEqual([expect.objectContaining({ version: '2', weights: {} })]);
    expect(
      paused.history
        .filter((e) => e.kind === 'compensation')
        .map((e) => e.text)
        .sort(),
    ).toEqual(['a: 100 % back on version 1', 'b: 100 % back on version 1', 'c: 100 % back on version 1']);
    await expectStableAndStays(spec);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 20_000)).state).toBe('rolled-back');
  } finally {
    aliases.stop();
    traffic.stop();
    h.proxy.clearFaults();
  }
});

test('a minute of throttling does not turn an automatic revert into rollback-failed', async () => {
  const spec = twoTargets('throttled-revert', { canary: { targets: ['a'], weight: 10, bake: '1 second' } });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2');
  let throttleUntil = 0;
  let shifted = false;
  h.proxy.inject({
    match: (c) => {
      if (!lambdaOp.updateAlias('throttled-revert-a')(c)) return false;
      if (!shifted) {
        shifted = true;
        throttleUntil = Date.now() + 60_000; // the revert comes about a second later
        return false;
      }
      return Date.now() < throttleUntil;
    },
    times: 100_000,
    action: { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded' },
  });
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused' || s.state === 'rollback-failed', 150_000, 'after revert');
    expect(paused.state).toBe('paused');
    expect(Date.now()).toBeGreaterThanOrEqual(throttleUntil);
    await expectStableAndStays(spec, 0);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 20_000)).state).toBe('rolled-back');
  } finally {
    traffic.stop();
    h.proxy.clearFaults();
  }
}, 180_000);

test('a failure while counting earlier failures (escalation) still alerts and closes the rollout', async () => {
  await h.stopWorker();
  await h.startWorker({ client: undefined }); // consecutiveStageFailures cannot reach Temporal
  try {
    const spec = twoTargets('escalation-down', { test: { command: 'exit 4', shell: true } });
    await createFunctions(h, spec);
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = await resultWithin(handle, 60_000);
    expect(res.state).toBe('failed');
    const alert = await waitForAlert(h, 'escalation-down');
    expect(alert.body.text).toMatch(/failed in stage test before anything was deployed/);
    expect(res.status.history.some((e) => /could not count earlier failures/.test(e.text))).toBe(true);
  } finally {
    await h.stopWorker();
    await h.startWorker();
  }
});

test('a breach reported while a wave awaits approval rolls back at once, without the approval', async () => {
  const spec = twoTargets('breach-awaiting', {
    canary: { targets: ['a'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-b', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-b', 60_000, 'awaiting approval');
    // A verdict about another release (an earlier rollout of the service) is ignored.
    // Sent as rollgate's scheduled analysis sends them: with the run's message nonce, read by query.
    const nonce = await handle.query(messageNonceQuery);
    await handle.signal(externalVerdictSignal, { verdict: 'fail', reason: 'about r1', release: 'r1', nonce });
    await waitForStatus(handle, (s) => s.history.some((e) => /ignored an external fail about release r1/.test(e.text)), 10_000, 'ignored');
    expect((await handle.query(statusQuery)).awaitingApproval).toBe('wave-b');
    await handle.signal(externalVerdictSignal, {
      verdict: 'fail',
      reason: 'scheduled analysis: error rate 9 % > 2 %',
      release: 'r2',
      nonce,
    });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 30_000, 'paused after the external breach');
    expect(paused.rollbackReason).toBe('scheduled analysis: error rate 9 % > 2 %');
    expect(paused.awaitingApproval).toBeUndefined();
    await expectStableAndStays(spec, 1_000);
    // The approval meant for the wave that no longer waits is refused, not applied later.
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] }))).toMatch(/not waiting for an approval/);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 20_000)).state).toBe('rolled-back');
    await recordHistory(handle, 'rollout-v2-breach-awaiting-approval');
  } finally {
    traffic.stop();
  }
});

test('analysis keeps running while a wave awaits approval: a canary that degrades is rolled back', async () => {
  const spec = twoTargets('degrade-awaiting', {
    canary: { targets: ['a'], weight: 50, bake: '1 second' },
    waves: [{ name: 'wave-b', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' },
  });
  await createFunctions(h, spec);
  let broken = false;
  const traffic = simulateTraffic(h, spec, (_t, v) => broken && v === '2');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-b', 60_000, 'awaiting approval');
    broken = true;
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 30_000, 'paused after the breach during the wait');
    expect(paused.rollbackReason).toMatch(/^a: error rate/);
    expect(paused.failedStage).toBe('wave:wave-b');
    await expectStableAndStays(spec, 1_000);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 20_000)).state).toBe('rolled-back');
    await recordHistory(handle, 'rollout-v2-interval-analysis-during-approval');
  } finally {
    traffic.stop();
  }
});

test('an approval that names another wave is refused', async () => {
  const spec = twoTargets('wave-named', {
    canary: { targets: ['a'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-b', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-b', 60_000, 'awaiting approval');
    expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', wave: 'wave-a' }] }))).toMatch(
      /waits for an approval of wave wave-b, not wave-a/,
    );
    expect(await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', wave: 'wave-b' }] })).toBe('approved wave wave-b');
    expect((await resultWithin(handle, 60_000)).state).toBe('succeeded');
    await recordHistory(handle, 'rollout-v2-approval');
  } finally {
    traffic.stop();
  }
});

test('bookkeeping after promotion (TagResource refused) does not revert a promoted release', async () => {
  const spec = twoTargets('tag-refused');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  h.proxy.inject({
    match: (c) => c.method === 'POST' && c.path.includes('/tags/'),
    times: 1_000,
    action: { status: 403, errorType: 'AccessDeniedException', message: 'not authorized to perform lambda:TagResource' },
  });
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = await resultWithin(handle, 90_000);
    expect(res.state).toBe('succeeded');
    expect(res.status.history.some((e) => /recording it on the target failed/.test(e.text))).toBe(true);
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
  } finally {
    traffic.stop();
    h.proxy.clearFaults();
  }
});

test('an outside breach that arrives while paused after a rollback does not survive resume', async () => {
  const spec = twoTargets('stale-breach', { canary: { targets: ['a'], weight: 10, bake: '1 second' } });
  await createFunctions(h, spec);
  let broken = true;
  const traffic = simulateTraffic(h, spec, (_t, v) => broken && v === '2');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.state === 'paused' && s.stage === 'rollback', 60_000, 'paused after breach');
    const nonce = await handle.query(messageNonceQuery); // as the scheduled analysis sends it
    await handle.signal(externalVerdictSignal, { verdict: 'fail', reason: 'stale scheduled verdict', nonce });
    broken = false;
    await trafficSettled(traffic); // no breaching datapoint of the first pass lands in the second one's window
    await handle.signal(resumeSignal, { by: 'carol' });
    const res = await resultWithin(handle, 90_000);
    expect({ state: res.state, reason: res.reason }).toEqual({ state: 'succeeded', reason: expect.any(String) });
  } finally {
    traffic.stop();
  }
});

test('a scheduled verdict about the previous pass, landing after the resume, does not roll the new pass back', async () => {
  const spec = twoTargets('stale-pass', { canary: { targets: ['a'], weight: 10, bake: '60 seconds' } });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const baking = (pass: number) => (s: RolloutStatus) =>
      s.state === 'running' && s.pass === pass && s.stage === 'canary' && /baking/.test(s.detail);
    await waitForStatus(handle, baking(1), 60_000, 'pass 1 baking');
    const nonce = await handle.query(messageNonceQuery); // as the scheduled analysis sends it
    const verdict = (pass: number) => ({ verdict: 'fail' as const, reason: `judged pass ${pass}`, release: spec.release, pass, nonce });
    await handle.signal(externalVerdictSignal, verdict(1));
    await waitForStatus(handle, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 60_000, 'paused after the breach');
    await handle.signal(resumeSignal, { by: 'carol' });
    await waitForStatus(handle, baking(2), 60_000, 'pass 2 baking');
    // The analysis that read pass 1 sends its fail only now.
    await handle.signal(externalVerdictSignal, verdict(1));
    await waitForStatus(
      handle,
      (s) => s.history.some((e) => /ignored an external fail about pass 1/.test(e.text)),
      30_000,
      'stale verdict recorded',
    );
    const after = await handle.query(statusQuery);
    expect({ state: after.state, pass: after.pass, stage: after.stage }).toEqual({ state: 'running', pass: 2, stage: 'canary' });
    expect((await aliasState(h.motoUrl, spec.targets[0])).weights).toEqual({ '2': 0.1 }); // the canary is still on
    // A verdict about this pass still acts.
    await handle.signal(externalVerdictSignal, verdict(2));
    await waitForStatus(handle, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 60_000, 'pass 2 rolled back');
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    await handle.signal(abortSignal, { by: 'carol' });
    expect((await resultWithin(handle, 60_000)).state).toBe('rolled-back');
  } finally {
    traffic.stop();
  }
});

test('a resume sent while the rollback alert is still being retried is not dropped', async () => {
  const spec = twoTargets('resume-during-alert', { canary: { targets: ['a'], weight: 10, bake: '1 second' } });
  await createFunctions(h, spec);
  let broken = true;
  const traffic = simulateTraffic(h, spec, (_t, v) => broken && v === '2');
  h.webhook.failNext(2, 503); // the alert is delivered on its third attempt, about 3 s later
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 60_000, 'paused after breach');
    broken = false;
    await trafficSettled(traffic);
    await handle.signal(resumeSignal, { by: 'carol' });
    const res = await resultWithin(handle, 90_000);
    expect({ state: res.state, reason: res.reason }).toEqual({ state: 'succeeded', reason: expect.any(String) });
  } finally {
    traffic.stop();
  }
});

test('an abort during the migration waits for it to finish, and says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-migrate-'));
  const spec = twoTargets('abort-migrate', {
    migration: { command: 'sleep 3 && echo "$ROLLGATE_SCHEMA_REV" > schema', current_command: 'cat schema', shell: true, cwd: dir },
  });
  await createFunctions(h, spec);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(handle, (s) => s.stage === 'migrate', 60_000, 'migrating');
  await handle.signal(abortSignal, { by: 'carol' });
  const res = await resultWithin(handle, 30_000);
  expect(res.state).toBe('aborted');
  expect(res.reason).toMatch(/after the migration to schema_rev 7 completed; nothing was deployed/);
  expect(existsSync(join(dir, 'schema'))).toBe(true); // the migration ran to its end
  await recordHistory(handle, 'rollout-v2-abort-during-migrate');
  expect(h.proxy.count((c) => c.method !== 'GET' && lambdaOp.any('abort-migrate-a')(c))).toBe(0);
});

test('a target that cannot be read fails the rollout before the migration runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-migrate-'));
  const spec = twoTargets('typo-before-migrate', {
    migration: { command: 'echo "$ROLLGATE_SCHEMA_REV" > schema', current_command: 'cat schema', shell: true, cwd: dir },
  });
  await createFunctions(h, { ...spec, targets: spec.targets.slice(0, 1) }); // b's function does not exist
  const res = await resultWithin(await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }), 60_000);
  expect(res.state).toBe('failed');
  expect(res.reason).toMatch(/^stage preflight failed: .*ResourceNotFoundException/);
  expect(existsSync(join(dir, 'schema'))).toBe(false);
});

test('an alias on $LATEST is refused at preflight: nothing to revert to', async () => {
  const spec = twoTargets('alias-on-latest');
  await createFunctions(h, spec);
  const b = spec.targets[1] as LambdaTargetSpec;
  const lambda = new LambdaClient({ endpoint: h.motoUrl, region: b.region, credentials: TEST_CREDENTIALS });
  await lambda.send(new UpdateAliasCommand({ FunctionName: b.function, Name: b.alias, FunctionVersion: '$LATEST' }));
  const res = await resultWithin(await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }), 60_000);
  expect(res.state).toBe('failed');
  expect(res.reason).toMatch(/^b: alias serves \$LATEST, not a published version/);
  expect(h.proxy.count((c) => c.method !== 'GET' && lambdaOp.any('alias-on-latest-a')(c))).toBe(0);
});
