import { recordHistory } from './support/history';
import { startRollout } from '../src/client';
import { abortSignal, resumeSignal, type RolloutResult } from '../src/contract';
import { aliasState, publishedVersions } from './support/lambda';
import {
  createFunctions,
  createHarness,
  lambdaSpec,
  simulateTraffic,
  trafficSettled,
  waitForStatus,
  waitForAlert,
  type Harness,
} from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('rollback');
  await h.startWorker();
});
afterAll(async () => h?.close());

async function expectAllStable(spec: { targets: any[] }) {
  for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
}

test('breach at the canary: canary target reverted, pipeline paused, alert sent; abort closes as rolled back', async () => {
  const spec = lambdaSpec(h, 'breach-canary');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after breach');
    expect(paused.rollbackReason).toMatch(/us-east-1: error rate .* \(canary\) vs .* \(baseline\) > threshold/);
    expect(paused.targets.map((t) => t.weight)).toEqual([0, 0, 0]);
    await expectAllStable(spec);

    const alert = await waitForAlert(h, 'breach-canary'); // throws if none arrives
    expect(alert.body.text).toMatch(/rolled back after breach in canary/);
    expect(alert.body.rollgate.revertedTargets.sort()).toEqual(['ap-southeast-2', 'eu-west-1', 'us-east-1']);
    expect(alert.body.text).toContain(`rollgate resume ${handle.workflowId}`);

    await handle.signal(abortSignal, { by: 'carol' });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('rolled-back');
    await expectAllStable(spec);
  } finally {
    traffic.stop();
  }
});

test('breach in wave 2 reverts every touched target; resume retries from the canary without publishing again', async () => {
  const spec = lambdaSpec(h, 'breach-wave2');
  await createFunctions(h, spec);
  let broken = true;
  const traffic = simulateTraffic(h, spec, (t, v) => broken && t.region === 'ap-southeast-2' && v === '2');
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after wave-2 breach');
    expect(paused.rollbackReason).toMatch(/^ap-southeast-2: error rate/);
    expect(paused.history.some((e) => e.kind === 'compensation' && e.text.startsWith('eu-west-1: 100 % back on version 1'))).toBe(true);
    await expectAllStable(spec);
    await waitForAlert(h, 'breach-wave2');
    expect(h.webhook.received.filter((r) => r.body.rollgate.service === 'breach-wave2')).toHaveLength(1);

    broken = false;
    await trafficSettled(traffic);
    await handle.signal(resumeSignal, { by: 'carol' });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.history.some((e) => /found already published version 2/.test(e.text))).toBe(true);
    // A saga + resume path for the replay suite (see test/replay.test.ts).
    await recordHistory(handle, 'rollout-v2-breach-resume');
    for (const t of spec.targets) {
      expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
      expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
    }
  } finally {
    traffic.stop();
  }
});

test('a canary with no data extends its bake twice, then fails with the reason', async () => {
  const spec = lambdaSpec(h, 'no-data', { canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' } });
  await createFunctions(h, spec);
  // No simulated traffic at all.
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after no data');
  expect(paused.rollbackReason).toMatch(/no data: 0 canary requests < minimum 5 .* \(after 2 extension\(s\)\)/);
  expect(paused.history.filter((e) => /no data, extending the bake/.test(e.text))).toHaveLength(2);
  await expectAllStable(spec);
  await handle.signal(abortSignal);
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
});
