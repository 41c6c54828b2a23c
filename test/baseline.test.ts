/**
 * At a wave's 100 % step the stable revision serves nothing. It must be judged against what the
 * stable revision served before the shift, not against an empty baseline (issue 9, item 8).
 * Cloud Run + the Cloud Monitoring fake, whose intervals are exact (CloudWatch rounds to minutes).
 */
import { startRollout } from '../src/client';
import { CloudRunTrafficSimulator } from '../src/dev/cloud-run-traffic';
import type { CloudRunTargetSpec } from '../src/spec/schema';
import type { RolloutResult } from '../src/contract';
import { createHarness, type Harness } from './support/harness';
import { cloudRunState, cloudRunTarget, mixedSpec, seedCloudRun } from './support/cloud-run';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('baseline', { cloudRun: true });
  await h.startWorker();
});
afterAll(async () => h?.close());

test('both revisions fail 3 % of requests: nothing regressed, the release goes through its 100 % steps', async () => {
  const targets = [cloudRunTarget('eu', 'steady', 'europe-west1'), cloudRunTarget('us', 'steady', 'us-central1')];
  const spec = mixedSpec(h, 'steady', targets, {
    canary: { targets: ['eu'], weight: 50, bake: '2 seconds' },
    waves: [
      { name: 'eu-all', targets: ['eu'], steps: [100], bake: '3 seconds' },
      { name: 'us', targets: ['us'], steps: [50, 100], bake: '3 seconds' },
    ],
  });
  seedCloudRun(h, spec);
  const traffic = new CloudRunTrafficSimulator(h.cloudRun!.address, h.monitoring!, targets as CloudRunTargetSpec[], {
    requestsPerTick: 100,
    errorRate: () => 0.03,
  }).start(250);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = (await handle.result()) as RolloutResult;
    expect({ state: res.state, reason: res.status.rollbackReason ?? res.reason }).toEqual({
      state: 'succeeded',
      reason: expect.any(String),
    });
    // The last verdict of each 100 % step compared 3 % with 3 %, not with 0 %.
    const at100 = res.status.history.filter((e) => e.kind === 'verdict' && /baseline/.test(e.text)).map((e) => e.text);
    expect(at100.length).toBeGreaterThan(0);
    for (const t of targets) expect(cloudRunState(h, t).split).toEqual({ 'steady-r2': 100 });
  } finally {
    traffic.stop();
  }
}, 120_000);
