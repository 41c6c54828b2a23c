/**
 * A rollout started by the previous workflow code (the v1 bundle, as the first release shipped it)
 * waits for an approval while the fleet is upgraded; the new worker finishes it on the v1 path.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startRollout } from '../src/client';
import { approveUpdate, type RolloutResult } from '../src/contract';
import { aliasState } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';
import { historyText } from './support/history';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('v1-upgrade');
});
afterAll(async () => h?.close());

test('a v1 rollout awaiting approval is finished by the new worker, on the v1 code path', async () => {
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('./support/v1-workflows') });
  const v1BundlePath = join(h.workDir, 'v1-bundle.js');
  writeFileSync(v1BundlePath, bundle.code);
  // The previous release's worker: it ran the command activities itself (v1 runs schedule them on its queue).
  await h.startWorker({}, v1BundlePath, { withCommands: true });

  const spec = lambdaSpec(h, 'v1-upgrade', {}, 2);
  spec.waves[0].approval = true;
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 60_000, 'awaiting approval on v1');
    await h.stopWorker(); // the upgrade: the v1 worker goes, the current one comes
    await h.startWorker();
    expect(await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] })).toBe('approved wave wave-1');
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
    // It never took the v2 path: no rollout-v2 marker, and no v2-only stage in its history.
    const text = await historyText(handle);
    expect(text).not.toContain('rollout-v2');
    expect(res.status.history.some((e) => e.text.startsWith('stage preflight'))).toBe(false);
  } finally {
    traffic.stop();
  }
}, 120_000);

test('a rollout started by the current worker takes the v2 path', async () => {
  await h.stopWorker();
  await h.startWorker();
  const spec = lambdaSpec(h, 'v2-path', {}, 1);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(await historyText(handle)).toContain('rollout-v2');
    expect(res.status.history.some((e) => e.text.startsWith('stage preflight'))).toBe(true);
  } finally {
    traffic.stop();
  }
});
