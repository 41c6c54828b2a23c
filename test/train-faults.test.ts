/**
 * Release trains when something goes wrong at the wrong moment (review of issue 11, patch
 * `train-v2` / `rollout-train-member-v2`), on the real dev server and moto (through the fault
 * proxy). Every outcome is read from moto's aliases, not from the workflows' own status:
 * - a held member breaches while its train is releasing: every member ends on its stable version;
 * - the train is terminated while a member is held: the member alerts and pauses, abort reverts it;
 * - the train is aborted while a member's own revert fails: only really reverted members are
 *   listed, and the train's revert is not taken as that member's operator abort;
 * - a member breaches while another one moves: every member stops before the reverts begin;
 * - the starter's token expires before the last member starts: members take the train's check.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { defaultPayloadConverter } from '@temporalio/common';
import { lambdaOp } from '../src/dev/fault-proxy';
import { validateTrain } from '../src/spec/train';
import type { LambdaTargetSpec, RolloutSpec, RolloutSpecInput, TargetSpec } from '../src/spec/schema';
import { startTrain } from '../src/train-client';
import { externalVerdictSignal, messageNonceQuery, statusQuery, type RolloutInput, type RolloutStatus } from '../src/contract';
import { trainDecisionSignal, trainStatusQuery, type TrainResult, type TrainSpec, type TrainStatus } from '../src/contract';
import { createIdentityVerifier, verifierConfigFromEnv } from '../src/identity/verifier';
import { recordHistory } from './support/history';
import { issuerEnv, startTestIssuer } from './support/oidc';
import { aliasState } from './support/lambda';
import { mixedSpec } from './support/cloud-run';
import { createFunctions, createHarness, nextRun, resultWithin, simulateTraffic, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('train-faults');
  await h.startWorker();
});
afterEach(() => {
  h.proxy.clearFaults();
});
afterAll(async () => h?.close());

function fn(service: string, name = 'use1', region = 'us-east-1'): LambdaTargetSpec {
  return { name, provider: 'aws-lambda', region, function: `${service}-${name}`, alias: 'live' };
}

function single(service: string, bake = '1 second', over: Partial<RolloutSpecInput> = {}): RolloutSpec {
  const target: TargetSpec = fn(service);
  return mixedSpec(h, service, [target], { canary: { targets: [target.name], weight: 10, bake }, waves: [] }, over);
}

function train(name: string, members: { spec: RolloutSpec; depends_on?: string[] }[]): TrainSpec {
  return validateTrain({ train: name, services: members.map((m) => ({ spec: m.spec, depends_on: m.depends_on ?? [] })) }, h.workDir);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForTrain(id: string, pred: (s: TrainStatus) => boolean, what: string, timeoutMs = 90_000): Promise<TrainStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: TrainStatus | undefined;
  while (Date.now() < deadline) {
    last = await h.client.workflow
      .getHandle(id)
      .query(trainStatusQuery)
      .catch(() => last);
    if (last && pred(last)) return last;
    await sleep(100);
  }
  throw new Error(
    `timed out waiting for ${what}; last: ${JSON.stringify(last && { state: last.state, detail: last.detail, members: last.members })}`,
  );
}

async function waitForMember(
  service: string,
  pred: (s: RolloutStatus) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<RolloutStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: RolloutStatus | undefined;
  while (Date.now() < deadline) {
    last = await h.client.workflow
      .getHandle(`rollout-${service}`)
      .query(statusQuery)
      .catch(() => last);
    if (last && pred(last)) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last && { state: last.state, detail: last.detail })}`);
}

async function alertsFor(service: string, event: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  const found = () => h.webhook.received.filter((r) => r.body?.rollgate?.service === service && r.body?.rollgate?.event === event);
  while (found().length === 0 && Date.now() < deadline) await sleep(100);
  return found();
}

/** Lambda alias writes the proxy forwarded, per function: time, version and weights. */
function aliasWrites() {
  const writes: { fn: string; version?: string; weights: Record<string, number>; atMs: number }[] = [];
  h.proxy.observers.push((call, body, status) => {
    if (status >= 300 || !lambdaOp.updateAlias()(call)) return;
    const b = JSON.parse(body.toString('utf8') || '{}');
    writes.push({
      fn: /\/functions\/([^/?]+)/.exec(call.path)![1],
      version: b.FunctionVersion,
      weights: b.RoutingConfig?.AdditionalVersionWeights ?? {},
      atMs: Date.now(),
    });
  });
  return {
    /** Writes that moved traffic forward (a weight on the new version, or the new version itself). */
    forward: (f: string) =>
      writes.filter((w) => w.fn === f && ((w.version !== undefined && w.version !== '1') || Object.keys(w.weights).length > 0)),
    /** The first write that put the alias back on version 1 alone (a revert). */
    firstRevertAt: (f: string) => writes.find((w) => w.fn === f && w.version === '1' && Object.keys(w.weights).length === 0)?.atMs,
  };
}

/** Every later alias update of `f` (after the first, the canary shift) is refused: its revert fails. */
function refuseRevertsOf(f: string): void {
  let shifted = false;
  h.proxy.inject({
    match: (c) => {
      if (!lambdaOp.updateAlias(f)(c)) return false;
      if (shifted) return true;
      shifted = true;
      return false;
    },
    times: 1_000,
    action: { status: 403, errorType: 'AccessDeniedException', message: 'not authorized' },
  });
}

const onStable = { version: '1', weights: {} };

test('a held member that breaches while its train is releasing: every member is reverted, one alert, the train pauses', async () => {
  // The train's release signals leave 3 s late (test/support/train-release-delay.ts): the breach
  // lands on the held member after the train saw every member held and began releasing.
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    workflowInterceptorModules: [require.resolve('./support/train-release-delay')],
    logger: { trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, log: () => {} },
  });
  const bundlePath = join(h.workDir, 'release-delay-bundle.js');
  writeFileSync(bundlePath, code);
  const a = single('rd-orders');
  const b = single('rd-web');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b)];
  const alertsBefore = h.webhook.received.length;
  await h.stopWorker();
  await h.startWorker({}, bundlePath);
  try {
    const handle = await startTrain(h.client, train('release-breach-r1', [{ spec: a }, { spec: b, depends_on: ['rd-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    await waitForTrain(handle.workflowId, (s) => /^every member promoted/.test(s.detail), 'the train releasing');
    // web is held; the train is releasing orders first: a scheduled analysis finds web's release bad.
    const web = h.client.workflow.getHandle('rollout-rd-web');
    const nonce = await web.query(messageNonceQuery);
    await web.signal(externalVerdictSignal, { verdict: 'fail', reason: 'scheduled analysis: error rate 40 % > 2 %', release: 'r2', nonce });
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback || s.state !== 'running', 'the train stops', 60_000);
    // Read from moto: both members back on their stable version, and they stay there.
    await sleep(4000);
    for (const s of [a, b]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual(onStable);
    expect(paused).toMatchObject({ state: 'paused', pausedAfterRollback: true, stoppedBy: 'rd-web' });
    expect(paused.reason).toMatch(/^member rd-web \(r2\) stopped while held: scheduled analysis: error rate 40 %/);
    expect(paused.reverted).toEqual(['rd-web', 'rd-orders']);
    // One alert, the train's, naming web; the members sent none.
    const trainAlerts = await alertsFor('rd-web', 'train-rolled-back');
    await sleep(500);
    expect(h.webhook.received.slice(alertsBefore).map((r) => r.body.rollgate.event)).toEqual(['train-rolled-back']);
    expect(trainAlerts[0].body.rollgate).toMatchObject({ rolloutId: 'train-release-breach-r1', state: 'paused' });
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
  } finally {
    sims.forEach((s) => s.stop());
    await h.stopWorker();
    await h.startWorker();
  }
});

test('the train is terminated while a member is held: the member alerts on its own and pauses; abort reverts it', async () => {
  const a = single('tg-orders');
  const b = single('tg-web', '40 seconds');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b)];
  try {
    const handle = await startTrain(h.client, train('gone-r1', [{ spec: a }, { spec: b, depends_on: ['tg-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
      memberParentCheckMs: 1000,
    });
    await waitForTrain(handle.workflowId, (s) => s.members[0].state === 'held' && s.members[1].state === 'running', 'orders held');
    await waitForMember('tg-web', (s) => /baking/.test(s.detail), 'web baking');
    await handle.terminate('an operator terminated the train');
    // The held member notices within its check interval: its own alert, then its own pause.
    const [alert] = await alertsFor('tg-orders', 'train-gone', 20_000);
    expect(alert?.body.text).toMatch(
      /^rollgate: tg-orders r2: train gone-r1 \(train-gone-r1\) is terminated while this member is promoted and held by it\. Paused: `rollgate resume rollout-tg-orders` keeps the release/,
    );
    const held = await waitForMember('tg-orders', (s) => s.state === 'paused', 'orders paused');
    expect(held.detail).toMatch(/train gone-r1 .* is terminated/);
    // Nothing moved meanwhile: still on the new version, as promoted.
    expect(await aliasState(h.motoUrl, a.targets[0])).toEqual({ version: '2', weights: {} });
    // The operator decides: abort reverts it (and web, which is still baking its canary).
    for (const s of ['tg-orders', 'tg-web']) await h.client.workflow.getHandle(`rollout-${s}`).signal('abort', { by: 'carol' });
    for (const s of ['tg-orders', 'tg-web']) expect((await h.client.workflow.getHandle(`rollout-${s}`).result()).state).toBe('aborted');
    for (const s of [a, b]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual(onStable);
    await recordHistory(h.client.workflow.getHandle('rollout-tg-orders'), 'rollout-v2-train-member-v2-train-gone');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test("the train is aborted while a member's own revert fails: only really reverted members are listed, the failed one keeps waiting for its operator", async () => {
  const a = single('rf-orders');
  const b = single('rf-web');
  for (const s of [a, b]) await createFunctions(h, s);
  // web's new version answers 30 % errors (its canary breaches) and its revert is refused.
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b, (_t, v) => v === '2')];
  refuseRevertsOf('rf-web-use1');
  try {
    const handle = await startTrain(h.client, train('revert-failed-r1', [{ spec: a }, { spec: b, depends_on: ['rf-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    // web's escalation alert is slow to get through (its webhook answers 500 four times): web is
    // in rollback-failed and the train has not heard of it yet when the operator aborts the train.
    h.webhook.failNext(4, 500);
    await waitForMember('rf-web', (s) => s.state === 'rollback-failed', 'web rollback-failed', 90_000);
    const before = await h.client.workflow.getHandle(handle.workflowId).query(trainStatusQuery);
    expect(before.members.find((m) => m.service === 'rf-web')!.state).toBe('running');
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol', reason: 'stop the train' });
    const res = (await handle.result()) as TrainResult;
    // Read from moto: orders is back on its stable version, web is not (its revert is refused).
    expect(await aliasState(h.motoUrl, a.targets[0])).toEqual(onStable);
    expect(await aliasState(h.motoUrl, b.targets[0])).not.toEqual(onStable);
    expect(res.state).toBe('aborted');
    expect(res.status.reverted).toEqual(['rf-orders']);
    expect(res.status.revertFailed).toEqual(['rf-web']);
    expect(res.reason).toMatch(
      /^aborted by carol: stop the train; reverted: rf-orders; REVERT FAILED \(still waiting for their operator\): rf-web$/,
    );
    // The train's revert was not web's operator abort: web is still open, waiting in rollback-failed.
    const web = h.client.workflow.getHandle('rollout-rf-web');
    await sleep(3000);
    expect((await web.describe()).status.name).toBe('RUNNING');
    const s = await waitForMember(
      'rf-web',
      (st) => st.history.some((e) => /asks to revert it: its revert already failed/.test(e.text)),
      'noted',
    );
    expect(s.state).toBe('rollback-failed');
    // Its operator fixes the target and resumes: the revert is retried and web ends on its stable version.
    h.proxy.clearFaults();
    await web.signal('resume', { by: 'carol' });
    expect((await web.result()).state).toBe('rolled-back');
    expect(await aliasState(h.motoUrl, b.targets[0])).toEqual(onStable);
    await recordHistory(handle, 'train-v2-abort-rollback-failed-member');
    await recordHistory(web, 'rollout-v2-train-member-v2-revert-during-rollback-failed');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('a train revert sent to a member that waits in its own rollback-failed is not its abort (the train nonce, read from its input)', async () => {
  const a = single('rn-web');
  await createFunctions(h, a);
  const sims = [simulateTraffic(h, a, (_t, v) => v === '2')];
  refuseRevertsOf('rn-web-use1');
  try {
    const handle = await startTrain(h.client, train('revert-nonce-r1', [{ spec: a }]), { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'train paused after web rollback-failed');
    const web = h.client.workflow.getHandle('rollout-rn-web');
    const started = (await web.fetchHistory()).events![0].workflowExecutionStartedEventAttributes!.input!.payloads![0];
    const input = defaultPayloadConverter.fromPayload<RolloutInput>(started);
    await web.signal(trainDecisionSignal, { decision: 'revert', reason: 'replayed', nonce: input.train!.nonce });
    await sleep(3000);
    expect((await web.describe()).status.name).toBe('RUNNING');
    await waitForMember('rn-web', (st) => st.history.some((e) => /asks to revert it: its revert already failed/.test(e.text)), 'noted');
    expect(await aliasState(h.motoUrl, a.targets[0])).not.toEqual(onStable);
    h.proxy.clearFaults();
    await web.signal('resume', { by: 'carol' });
    expect((await web.result()).state).toBe('rolled-back');
    expect(await aliasState(h.motoUrl, a.targets[0])).toEqual(onStable);
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    // The train was paused after its member's rollback: an abort closes it as rolled back.
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('a member breaches while another moves: every member stops before the reverts, which go dependents first', async () => {
  // Release order mv-x, mv-y, mv-z (independent): reverts go z, y, x. y breaches at its canary;
  // z's revert is slow (5 s): x, still stepping through its wave, must not move meanwhile.
  const x = mixedSpec(h, 'mv-x', [fn('mv-x', 'c'), fn('mv-x', 'w', 'eu-west-1')], {
    canary: { targets: ['c'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-1', targets: ['w'], steps: [10, 20, 30, 40, 50, 60, 70, 80, 90, 100], bake: '1 second' }],
  });
  // y's canary bakes long and turns bad only once x has stepped into its wave: on a loaded machine
  // y used to breach before x got there, and the test then had nothing moving to freeze.
  const y = single('mv-y', '45 seconds', { rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '2 seconds' } });
  const z = single('mv-z', '60 seconds');
  for (const s of [x, y, z]) await createFunctions(h, s);
  const writes = aliasWrites();
  let zShifted = false;
  h.proxy.inject({
    match: (c) => {
      if (!lambdaOp.updateAlias('mv-z-use1')(c)) return false;
      if (zShifted) return true;
      zShifted = true;
      return false;
    },
    times: 100,
    action: { delayMs: 5000 },
  });
  const sims = [
    simulateTraffic(h, x),
    simulateTraffic(h, y, (_t, v) => v === '2' && writes.forward('mv-x-w').length > 0),
    simulateTraffic(h, z),
  ];
  try {
    const handle = await startTrain(h.client, train('freeze-r1', [{ spec: x }, { spec: y }, { spec: z }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'train paused', 120_000);
    expect(paused.stoppedBy).toBe('mv-y');
    const yBack = writes.firstRevertAt('mv-y-use1')!;
    const xBack = Math.min(writes.firstRevertAt('mv-x-w') ?? Infinity, writes.firstRevertAt('mv-x-c')!);
    const zBack = writes.firstRevertAt('mv-z-use1')!;
    expect(yBack).toBeLessThan(zBack);
    expect(zBack).toBeLessThan(xBack);
    // z's revert was sent 5 s before it landed (the proxy held it): the train had told every member
    // to stop before it. After that, x makes at most the one step that was already under way;
    // before the fix x went on stepping through its wave while z reverted.
    const late = writes.forward('mv-x-w').filter((w) => w.atMs > zBack - 4500);
    expect(writes.forward('mv-x-w').length).toBeGreaterThan(0);
    expect(late.length).toBeLessThanOrEqual(1);
    for (const s of [x, y, z]) for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual(onStable);
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
    await recordHistory(handle, 'train-v2-freeze-then-revert');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('members start with the identity the train verified, not its token (which expires before the last member starts)', async () => {
  const idp = await startTestIssuer();
  await h.stopWorker();
  await h.startWorker({ identityVerifier: createIdentityVerifier(verifierConfigFromEnv(issuerEnv(idp))!) });
  const a = single('tt-orders', '8 seconds');
  const b = single('tt-web');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b)];
  try {
    // Expired 25 s ago: inside the verifier's 30 s clock tolerance when the train starts, outside it
    // once orders' 8 s canary is over and web starts (a 1-hour token outlived by a long train).
    const token = await idp.token('alice', { expiresIn: -25 });
    const handle = await startTrain(h.client, train('token-r1', [{ spec: a }, { spec: b, depends_on: ['tt-orders'] }]), {
      startedBy: 'alice',
      taskQueue: h.taskQueue,
      token,
    });
    const res = await Promise.race([handle.result() as Promise<TrainResult>, sleep(90_000).then(() => undefined)]);
    expect(res?.state).toBe('succeeded');
    for (const s of [a, b]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual({ version: '2', weights: {} });
    const web = h.client.workflow.getHandle('rollout-tt-web');
    expect((await web.result()).status.starter).toMatchObject({ name: 'alice', verified: true });
    // The token is not handed on to the members (it stays in the train's own input only).
    const started = (await web.fetchHistory()).events![0].workflowExecutionStartedEventAttributes!.input!.payloads![0];
    expect(defaultPayloadConverter.fromPayload<RolloutInput>(started).startToken).toBeUndefined();
    // A client cannot claim a train's identity: a start with a train membership but no parent needs a token.
    const forged = await h.client.workflow.start('rolloutWorkflow', {
      workflowId: 'rollout-tt-forged',
      taskQueue: h.taskQueue,
      args: [
        {
          spec: single('tt-forged'),
          startedBy: 'mallory',
          train: { id: 'train-token-r1', name: 'token-r1', nonce: 'x', lockstep: false, starter: { name: 'alice', verified: true } },
        },
      ],
    });
    const refused = (await forged.result()) as { state: string; reason?: string };
    expect(refused.state).toBe('failed');
    expect(refused.reason).toMatch(/^start refused: .*no token was sent/);
    await recordHistory(handle, 'train-v2-release-verified-starter');
    await recordHistory(web, 'rollout-v2-train-member-v2-release');
  } finally {
    sims.forEach((s) => s.stop());
    await h.stopWorker();
    await h.startWorker();
    await idp.close();
  }
});

test('a release sent to a member before it is held is refused: the train still reverts it when another member breaches', async () => {
  const a = single('rh-orders', '6 seconds');
  const b = single('rh-web');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b, (_t, v) => v === '2')];
  try {
    const handle = await startTrain(h.client, train('early-release-r1', [{ spec: a }, { spec: b, depends_on: ['rh-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    const orders = h.client.workflow.getHandle('rollout-rh-orders');
    await waitForMember('rh-orders', (s) => /baking/.test(s.detail), 'orders baking');
    // A release with the train's nonce (replayed from an earlier pass, say) before orders is held.
    const started = (await orders.fetchHistory()).events![0].workflowExecutionStartedEventAttributes!.input!.payloads![0];
    const nonce = defaultPayloadConverter.fromPayload<RolloutInput>(started).train!.nonce;
    await orders.signal(trainDecisionSignal, { decision: 'release', nonce });
    await waitForMember(
      'rh-orders',
      (s) => s.history.some((e) => /refused a trainDecision release: not promoted and held/.test(e.text)),
      'refused',
    );
    // web breaches at its canary: the train reverts orders, which was promoted and held, not released.
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'train paused', 90_000);
    expect(paused.reverted).toEqual(['rh-orders']);
    for (const s of [a, b]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual(onStable);
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test("an operator's abort sent while the train is sending its alert is the answer to it", async () => {
  const a = single('ra-web');
  await createFunctions(h, a);
  const sims = [simulateTraffic(h, a, (_t, v) => v === '2')];
  try {
    const handle = await startTrain(h.client, train('alert-answer-r1', [{ spec: a }]), { startedBy: 'carol', taskQueue: h.taskQueue });
    // The train's alert takes a few seconds (its webhook answers 500 three times, then 200).
    h.webhook.failNext(3, 500);
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'train paused');
    expect(paused.history.some((e) => /alert delivered/.test(e.text))).toBe(false);
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol', reason: 'close it' });
    // The abort closes the train (it used to be dropped: the train kept waiting for another one).
    const res = await Promise.race([handle.result() as Promise<TrainResult>, sleep(30_000).then(() => undefined)]);
    expect(res?.state).toBe('rolled-back');
    expect(res!.status.history.some((e) => /train-rolled-back alert delivered/.test(e.text))).toBe(true);
    expect(await aliasState(h.motoUrl, a.targets[0])).toEqual(onStable);
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('a held member is still analysed: its release turns bad while it waits for the others, and the train reverts every member', async () => {
  const a = single('ha-orders', '1 second', { rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '2 seconds' } });
  const b = single('ha-web', '15 seconds');
  for (const s of [a, b]) await createFunctions(h, s);
  let ordersBroken = false;
  const sims = [simulateTraffic(h, a, (_t, v) => ordersBroken && v === '2'), simulateTraffic(h, b)];
  try {
    const handle = await startTrain(h.client, train('held-analysis-r1', [{ spec: a }, { spec: b, depends_on: ['ha-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    await waitForTrain(handle.workflowId, (s) => s.members[0].state === 'held', 'orders held');
    // Promoted and held while web bakes its 15 s canary: orders' new version starts failing.
    ordersBroken = true;
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'the train stops', 60_000);
    expect(paused.stoppedBy).toBe('ha-orders');
    expect(paused.reason).toMatch(/^member ha-orders \(r2\) stopped while held: .*error rate/);
    for (const s of [a, b]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual(onStable);
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('lockstep: the train is terminated while members wait at a barrier; each alerts and pauses, resume goes on alone', async () => {
  const member = (service: string, canaryBake: string) =>
    mixedSpec(h, service, [fn(service, 'c'), fn(service, 'w', 'eu-west-1')], {
      canary: { targets: ['c'], weight: 10, bake: canaryBake },
      waves: [{ name: 'wave-1', targets: ['w'], steps: [100], bake: '1 second' }],
    });
  const a = member('lg-a', '1 second');
  const b = member('lg-b', '30 seconds');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b)];
  try {
    const t = validateTrain({ train: 'lockstep-gone-r1', lockstep: true, services: [{ spec: a }, { spec: b }] }, h.workDir);
    const handle = await startTrain(h.client, t, { startedBy: 'carol', taskQueue: h.taskQueue, memberParentCheckMs: 1000 });
    // a baked its canary and waits for b (30 s canary) at traffic stage 2.
    await waitForMember('lg-a', (s) => /lockstep: ready for traffic stage 2/.test(s.detail), 'a at the barrier');
    await handle.terminate('an operator terminated the train');
    const [alert] = await alertsFor('lg-a', 'train-gone', 20_000);
    expect(alert?.body.text).toMatch(
      /train lockstep-gone-r1 \(train-lockstep-gone-r1\) is terminated while this member waits at traffic stage 2/,
    );
    await waitForMember('lg-a', (s) => s.state === 'paused', 'a paused');
    // Nothing moved at the barrier: the canary target keeps its 10 %, the wave target untouched.
    expect(await aliasState(h.motoUrl, a.targets[1])).toEqual(onStable);
    // resume: a goes on without the train (its wave, promote) and closes as a plain rollout.
    await h.client.workflow.getHandle('rollout-lg-a').signal('resume', { by: 'carol' });
    expect((await h.client.workflow.getHandle('rollout-lg-a').result()).state).toBe('succeeded');
    for (const tgt of a.targets) expect(await aliasState(h.motoUrl, tgt)).toEqual({ version: '2', weights: {} });
    // b is still baking its canary; abort reverts it.
    await h.client.workflow.getHandle('rollout-lg-b').signal('abort', { by: 'carol' });
    expect((await h.client.workflow.getHandle('rollout-lg-b').result()).state).toBe('aborted');
    for (const tgt of b.targets) expect(await aliasState(h.motoUrl, tgt)).toEqual(onStable);
  } finally {
    sims.forEach((s) => s.stop());
  }
});

test('lockstep: a member paused because its train is gone continues as new: one train-gone alert, resume goes on alone', async () => {
  // Members hand over to a new run past 60 events (test/support/member-continue-as-new.ts).
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    workflowInterceptorModules: [require.resolve('./support/member-continue-as-new')],
    logger: { trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, log: () => {} },
  });
  const bundlePath = join(h.workDir, 'member-can-bundle.js');
  writeFileSync(bundlePath, code);
  const member = (service: string, canaryBake: string, over: Partial<RolloutSpecInput> = {}) =>
    mixedSpec(
      h,
      service,
      [fn(service, 'c'), fn(service, 'w', 'eu-west-1')],
      {
        canary: { targets: ['c'], weight: 10, bake: canaryBake },
        waves: [{ name: 'wave-1', targets: ['w'], steps: [100], bake: '1 second' }],
      },
      over,
    );
  // a analyses its canary every second while it waits (so its paused wait hands over); b bakes long.
  const a = member('lc-a', '1 second', { rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' } });
  const b = member('lc-b', '120 seconds');
  for (const s of [a, b]) await createFunctions(h, s);
  const sims = [simulateTraffic(h, a), simulateTraffic(h, b)];
  const trainGone = () =>
    h.webhook.received.filter((r) => r.body?.rollgate?.service === 'lc-a' && r.body?.rollgate?.event === 'train-gone');
  await h.stopWorker();
  await h.startWorker({}, bundlePath);
  const ma = h.client.workflow.getHandle('rollout-lc-a');
  try {
    const t = validateTrain({ train: 'lockstep-can-r1', lockstep: true, services: [{ spec: a }, { spec: b }] }, h.workDir);
    const handle = await startTrain(h.client, t, { startedBy: 'carol', taskQueue: h.taskQueue, memberParentCheckMs: 1000 });
    await waitForMember('lc-a', (s) => /lockstep: ready for traffic stage 2/.test(s.detail), 'a at the barrier');
    await handle.terminate('an operator terminated the train');
    const [alert] = await alertsFor('lc-a', 'train-gone', 20_000);
    expect(alert?.body.text).toMatch(
      /train lockstep-can-r1 \(train-lockstep-can-r1\) is terminated while this member waits at traffic stage 2/,
    );
    await waitForMember('lc-a', (s) => s.state === 'paused', 'a paused');
    // The paused member (its canary still serves 10 %, analysed every second) continues as new, twice.
    const pausedRun = (await ma.describe()).runId;
    const seen = new Set([pausedRun]);
    await nextRun(ma, seen, 60_000);
    await nextRun(ma, seen, 60_000);
    await sleep(3_000); // three more train checks' worth in the newest run
    const st = await waitForMember('lc-a', () => true, 'status');
    expect(st.state).toBe('paused');
    expect(trainGone()).toHaveLength(1);
    // Ground truth, read from moto: nothing moved since the barrier.
    expect(await aliasState(h.motoUrl, a.targets[0])).toEqual({ version: '1', weights: { '2': 0.1 } });
    expect(await aliasState(h.motoUrl, a.targets[1])).toEqual(onStable);
    // resume (in a continued run): a goes on without the train, as the run that alerted would have.
    await ma.signal('resume', { by: 'carol' });
    const res = await resultWithin(ma, 60_000);
    expect(res.state).toBe('succeeded');
    expect(res.status.history.some((e) => /continued as new run \d+ at wave wave-1/.test(e.text))).toBe(true);
    for (const tgt of a.targets) expect(await aliasState(h.motoUrl, tgt)).toEqual({ version: '2', weights: {} });
    expect(trainGone()).toHaveLength(1);
    // The member's code is the worker's (the interceptor changes only the train's child inputs): these replay.
    await recordHistory(h.client.workflow.getHandle('rollout-lc-a', pausedRun), 'rollout-v2-train-member-detached-continue-as-new');
    await recordHistory(
      h.client.workflow.getHandle('rollout-lc-a', (await ma.describe()).runId),
      'rollout-v2-train-member-detached-last-run',
    );
    // b is still baking its canary; abort reverts it.
    await h.client.workflow.getHandle('rollout-lc-b').signal('abort', { by: 'carol' });
    expect((await resultWithin(h.client.workflow.getHandle('rollout-lc-b'), 60_000)).state).toBe('aborted');
    for (const tgt of b.targets) expect(await aliasState(h.motoUrl, tgt)).toEqual(onStable);
  } finally {
    sims.forEach((s) => s.stop());
    await h.stopWorker();
    await h.startWorker();
  }
}, 240_000);
