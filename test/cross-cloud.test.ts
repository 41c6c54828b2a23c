/**
 * End to end on the real Temporal dev server, moto (through the fault proxy) and the Cloud Run /
 * Cloud Monitoring fakes: Cloud Run-only and cross-cloud rollouts, breaches and failures in mixed
 * waves, injected faults, a revision that never becomes ready, and a worker process SIGKILLed
 * while a Cloud Run operation is in flight.
 */
import type { ChildProcess } from 'node:child_process';
import { Status } from 'google-gax';
import { startRollout } from '../src/client';
import { abortSignal, approveUpdate, pauseSignal, resumeSignal, type RolloutResult } from '../src/contract';
import type { CloudRunTargetSpec, RolloutSpec } from '../src/spec/schema';
import { startChildWorker, sigkill } from './support/child-worker';
import { aliasState, publishedVersions } from './support/lambda';
import { cloudRunState, cloudRunTarget, lambdaTarget, mixedSpec, seedCloudRun, simulateCloudRunTraffic } from './support/cloud-run';
import { createFunctions, createHarness, simulateTraffic, waitForStatus, waitForAlert, type Harness } from './support/harness';

let h: Harness;
let child: ChildProcess | undefined;
beforeAll(async () => {
  h = await createHarness('xcloud', { cloudRun: true });
  await h.startWorker();
});
afterEach(async () => {
  if (child) await sigkill(child);
  child = undefined;
  h.cloudRun!.knobs.operationPolls = 1;
  h.cloudRun!.knobs.operationMaxMs = 2_000;
  h.cloudRun!.knobs.neverReady = () => false;
});
afterAll(async () => h?.close());

const lambdas = (spec: RolloutSpec) => spec.targets.filter((t) => t.provider === 'aws-lambda');
const runs = (spec: RolloutSpec) => spec.targets.filter((t): t is CloudRunTargetSpec => t.provider === 'cloud-run');

/** Both clouds back where they were: aliases on version 1, services 100 % on their first revision, no canary tag. */
async function expectAllPrevious(spec: RolloutSpec, first: Record<string, string>) {
  for (const t of lambdas(spec)) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  for (const t of runs(spec)) {
    const s = cloudRunState(h, t);
    expect(s.split).toEqual({ [first[t.name]]: 100 });
    expect(s.tags).toEqual([]);
  }
}

function traffic(spec: RolloutSpec, badRun: (t: CloudRunTargetSpec, rev: string) => boolean = () => false) {
  const sims = [simulateTraffic(h, spec), simulateCloudRunTraffic(h, spec, badRun)];
  return { stop: () => sims.forEach((s) => s.stop()) };
}

test('Cloud Run only: canary → wave → promote; retryable faults from the fake are absorbed; one revision per service', async () => {
  const spec = mixedSpec(h, 'crun', [cloudRunTarget('cr-eu', 'crun', 'europe-west1'), cloudRunTarget('cr-us', 'crun', 'us-central1')], {
    canary: { targets: ['cr-eu'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-1', targets: ['cr-us'], steps: [50, 100], bake: '1 second' }],
  });
  const first = seedCloudRun(h, spec);
  const fake = h.cloudRun!;
  const failedBefore = { ...fake.failed };
  // Codes the Google client does not retry itself: the activities' retries must absorb them.
  fake.failNext('UpdateService', 2, Status.UNAVAILABLE);
  fake.failNext('GetOperation', 1, Status.ABORTED); // after an update landed: the retry must find the revision
  fake.failNext('GetRevision', 1, Status.RESOURCE_EXHAUSTED);
  const sim = traffic(spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    for (const m of ['UpdateService', 'GetOperation', 'GetRevision'])
      expect((fake.failed[m] ?? 0) - (failedBefore[m] ?? 0)).toBeGreaterThan(0);
    expect((fake.failed.UpdateService ?? 0) - (failedBefore.UpdateService ?? 0)).toBe(2);
    for (const t of runs(spec)) {
      const st = res.status.targets.find((x) => x.name === t.name)!;
      expect(st).toMatchObject({ provider: 'cloud-run', stableVersion: first[t.name], newVersion: 'crun-r2', weight: 100 });
      const s = cloudRunState(h, t);
      expect(s.split).toEqual({ 'crun-r2': 100 });
      expect(s.revisions).toEqual([first[t.name], 'crun-r2']);
      expect(s.labels).toMatchObject({ 'rollgate-release': 'r2', 'rollgate-revision': 'crun-r2' });
    }
    const text = res.status.history.map((e) => e.text).join('\n');
    expect(text).toMatch(/verify cr-eu: 1 probe\(s\) ok, contract ok/);
    expect(text).toMatch(/cr-eu: error rate .* \(canary, \d+ req\)/);
    expect(res.status.lastAnalysis?.verdict).toBe('pass');
  } finally {
    sim.stop();
  }
});

test('cross-cloud: canary on Lambda, waves mixing Lambda and Cloud Run; both clouds checked at every wave gate', async () => {
  const spec = mixedSpec(
    h,
    'xcloud',
    [
      lambdaTarget('xcloud', 'us-east-1'),
      cloudRunTarget('cr-eu', 'xcloud', 'europe-west1'),
      lambdaTarget('xcloud', 'eu-west-1'),
      cloudRunTarget('cr-us', 'xcloud', 'us-central1'),
    ],
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
      waves: [
        { name: 'wave-1', targets: ['cr-eu'], steps: [50, 100], bake: '1 second', approval: true },
        { name: 'wave-2', targets: ['eu-west-1', 'cr-us'], steps: [25, 100], bake: '3 seconds', approval: true },
      ],
    },
  );
  await createFunctions(h, spec);
  const first = seedCloudRun(h, spec);
  const [l1, c1, l2, c2] = spec.targets;
  const sim = traffic(spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 60_000, 'wave-1 gate');
    // After the canary: Lambda canary at 10 %, every Cloud Run service deployed at 0 % with its tag.
    expect(await aliasState(h.motoUrl, l1)).toEqual({ version: '1', weights: { '2': 0.1 } });
    for (const t of [c1, c2]) expect(cloudRunState(h, t)).toMatchObject({ split: { [first[t.name]]: 100 }, tags: ['canary:xcloud-r2'] });
    expect(await aliasState(h.motoUrl, l2)).toEqual({ version: '1', weights: {} });
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });

    const gate2 = await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-2', 60_000, 'wave-2 gate');
    // After wave-1: the Cloud Run service of wave-1 is fully on the new revision; wave-2 untouched.
    expect(cloudRunState(h, c1).split).toEqual({ 'xcloud-r2': 100 });
    expect(cloudRunState(h, c2).split).toEqual({ [first[c2.name]]: 100 });
    expect(await aliasState(h.motoUrl, l2)).toEqual({ version: '1', weights: {} });
    expect(gate2.targets.map((t) => [t.name, t.provider, t.stableVersion, t.newVersion, t.weight])).toEqual([
      ['us-east-1', 'aws-lambda', '1', '2', 10],
      ['cr-eu', 'cloud-run', first[c1.name], 'xcloud-r2', 100],
      ['eu-west-1', 'aws-lambda', '1', '2', 0],
      ['cr-us', 'cloud-run', first[c2.name], 'xcloud-r2', 0],
    ]);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });

    // The mixed 25 % step, read in both emulators while it bakes (held there by an operator pause).
    await waitForStatus(handle, (s) => /baking .* wave wave-2 at 25 %/.test(s.detail), 60_000, 'wave-2 baking at 25 %');
    await handle.signal(pauseSignal, { by: 'carol' });
    const held = await waitForStatus(handle, (s) => s.state === 'paused', 10_000, 'paused at 25 %');
    expect(held.targets.filter((t) => t.name === 'eu-west-1' || t.name === 'cr-us').map((t) => t.weight)).toEqual([25, 25]);
    expect(await aliasState(h.motoUrl, l2)).toEqual({ version: '1', weights: { '2': 0.25 } });
    expect(cloudRunState(h, c2)).toMatchObject({ split: { [first[c2.name]]: 75, 'xcloud-r2': 25 }, tags: ['canary:xcloud-r2'] });
    await handle.signal(resumeSignal, { by: 'carol' });

    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    for (const t of lambdas(spec)) {
      expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
      expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    }
    for (const t of runs(spec))
      expect(cloudRunState(h, t)).toMatchObject({ split: { 'xcloud-r2': 100 }, revisions: [first[t.name], 'xcloud-r2'] });
  } finally {
    sim.stop();
  }
});

test('breach on Cloud Run in a mixed wave: every touched target in both clouds reverted, pipeline paused', async () => {
  const spec = mixedSpec(
    h,
    'xbreach',
    [
      lambdaTarget('xbreach', 'us-east-1'),
      cloudRunTarget('cr-eu', 'xbreach', 'europe-west1'),
      cloudRunTarget('cr-us', 'xbreach', 'us-central1'),
    ],
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
      waves: [{ name: 'mixed', targets: ['cr-eu', 'cr-us'], steps: [25, 100], bake: '1 second' }],
    },
  );
  await createFunctions(h, spec);
  const first = seedCloudRun(h, spec);
  const sim = traffic(spec, (t, rev) => t.region === 'us-central1' && rev === 'xbreach-r2');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after breach');
    expect(paused.rollbackReason).toMatch(/^cr-us: error rate .* \(canary\) vs .* \(baseline\) > threshold/);
    expect(paused.targets.map((t) => t.weight)).toEqual([0, 0, 0]);
    await expectAllPrevious(spec, first);
    const alert = await waitForAlert(h, 'xbreach');
    expect(alert.body.rollgate.revertedTargets.sort()).toEqual(['cr-eu', 'cr-us', 'us-east-1']);
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    sim.stop();
  }
});

test('a non-retryable Cloud Run error (PERMISSION_DENIED) fails the stage and the saga reverts both clouds', async () => {
  const spec = mixedSpec(h, 'xdenied', [lambdaTarget('xdenied', 'us-east-1'), cloudRunTarget('cr-eu', 'xdenied', 'europe-west1')], {
    canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-1', targets: ['cr-eu'], steps: [100], bake: '1 second', approval: true }],
  });
  await createFunctions(h, spec);
  const first = seedCloudRun(h, spec);
  const sim = traffic(spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 60_000, 'wave-1 gate');
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: { '2': 0.1 } });
    h.cloudRun!.failNext('UpdateService', 1, Status.PERMISSION_DENIED);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after the failure');
    expect(paused.rollbackReason).toMatch(/stage wave:wave-1 failed: .*PERMISSION_DENIED/);
    expect(
      paused.history
        .filter((e) => e.kind === 'compensation' && !e.text.includes('$LATEST'))
        .map((e) => e.text.split(':')[0])
        .sort(),
    ).toEqual(['cr-eu', 'us-east-1']);
    await expectAllPrevious(spec, first);
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    sim.stop();
  }
});

test('a Cloud Run revision that never becomes ready fails the deploy stage before any traffic moves', async () => {
  const spec = mixedSpec(h, 'xnever', [lambdaTarget('xnever', 'us-east-1'), cloudRunTarget('cr-eu', 'xnever', 'europe-west1')], {
    canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
    waves: [{ name: 'wave-1', targets: ['cr-eu'], steps: [100], bake: '1 second' }],
  });
  await createFunctions(h, spec);
  const first = seedCloudRun(h, spec);
  h.cloudRun!.knobs.neverReady = (r) => r.service === 'xnever' && r.env.RELEASE_ID === 'r2';
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after the failed deploy');
  expect(paused.rollbackReason).toMatch(/stage deploy failed: .*xnever-r2.* not ready/);
  expect(paused.history.some((e) => /stage canary/.test(e.text))).toBe(false);
  expect(paused.targets.map((t) => t.weight)).toEqual([0, 0]);
  await expectAllPrevious(spec, first);
  expect(cloudRunState(h, spec.targets[1]).revisions).toEqual([first['cr-eu'], 'xnever-r2']); // created, never served
  await handle.signal(abortSignal, { by: 'carol' });
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
});

test('worker process SIGKILLed while the Cloud Run deploy operation is in flight: a new worker finishes with one revision', async () => {
  await h.stopWorker(); // only the child processes poll this task queue now
  try {
    const t = cloudRunTarget('cr-eu', 'xcrash', 'europe-west1');
    const spec = mixedSpec(h, 'xcrash', [t], { canary: { targets: ['cr-eu'], weight: 10, bake: '1 second' }, waves: [] });
    const first = seedCloudRun(h, spec);
    const fake = h.cloudRun!;
    const env = {
      ROLLGATE_TEST_TEMPORAL: process.env.ROLLGATE_TEST_TEMPORAL!,
      ROLLGATE_TASK_QUEUE: h.taskQueue,
      ROLLGATE_LAMBDA_ENDPOINT: h.proxy.url,
      ROLLGATE_STATE_DIR: h.workDir,
      ROLLGATE_CLOUD_RUN_ENDPOINT: fake.address,
      ROLLGATE_CLOUD_MONITORING_ENDPOINT: h.monitoring!.address,
      ROLLGATE_CLOUD_RUN_PROBE_VIA: fake.httpUrl,
    };
    child = await startChildWorker(env);
    fake.knobs.operationPolls = 100_000; // the deploy's operation stays in flight until the backstop
    fake.knobs.operationMaxMs = 4_000;
    const updates = fake.callCount('UpdateService');
    const sim = simulateCloudRunTraffic(h, spec);
    try {
      const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
      const deadline = Date.now() + 30_000;
      while (fake.callCount('UpdateService') === updates && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300)); // polling the operation
      expect(cloudRunState(h, t).reconciling).toBe(true);
      await sigkill(child);
      child = await startChildWorker(env);
      fake.knobs.operationPolls = 1;
      fake.knobs.operationMaxMs = 2_000;
      await waitForStatus(handle, (s) => s.state !== 'running', 90_000, 'the rollout to finish on the new worker');
      const res = (await handle.result()) as RolloutResult;
      expect(res.state).toBe('succeeded');
      expect(res.status.history.some((e) => /cr-eu: found already published version xcrash-r2/.test(e.text))).toBe(true);
      expect(cloudRunState(h, t)).toMatchObject({ split: { 'xcrash-r2': 100 }, revisions: [first['cr-eu'], 'xcrash-r2'] });
    } finally {
      sim.stop();
    }
  } finally {
    await h.startWorker();
  }
});
