import { recordHistory } from './support/history';
import { WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { noopSinks } from '../src/worker';
import { startRollout } from '../src/client';
import type { RolloutResult } from '../src/contract';
import { historyText } from './support/history';
import { aliasState, publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('happy');
  await h.startWorker();
});
afterAll(async () => h?.close());

test('a release goes build → verify → canary → waves → promote, alias checked in moto after every wave', async () => {
  const spec = lambdaSpec(h, 'happy');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle: WorkflowHandle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const [canaryT, wave1T, wave2T] = spec.targets;

    const inWave2 = await waitForStatus(handle, (s) => s.stage === 'wave:wave-2', 60_000, 'wave-2');
    // After wave-1: its target is at 100 % on the new version; the canary target still at its weight.
    const newV = inWave2.targets.find((t) => t.name === wave1T.name)!.newVersion!;
    expect(await aliasState(h.motoUrl, wave1T)).toEqual({ version: newV, weights: {} });
    const canaryAlias = await aliasState(h.motoUrl, canaryT);
    expect(canaryAlias.version).toBe('1');
    expect(canaryAlias.weights).toEqual({ [inWave2.targets[0].newVersion!]: 0.1 });

    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.stage).toBe('done');
    for (const t of spec.targets) {
      const st = res.status.targets.find((x) => x.name === t.name)!;
      expect(st).toMatchObject({ stableVersion: '1', newVersion: '2', weight: 100 });
      expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
      expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    }
    expect(res.status.artifactDigest).toMatch(/^[a-f0-9]{64}$/);
    expect(res.status.history.map((e) => e.text).join('\n')).toMatch(/verify us-east-1: 1 probe\(s\) ok/);
    expect(res.status.lastAnalysis?.verdict).toBe('pass');
    void wave2T;

    // Secrets never enter the history: the env value of DB_PASSWORD is nowhere in it.
    // The live history replays against the current workflow code; with ROLLGATE_RECORD_HISTORIES=1 it
    // is saved as the committed fixture that test/replay.test.ts replays on every run.
    const history = await handle.fetchHistory();
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks },
      history,
      handle.workflowId,
    );
    await recordHistory(handle, 'rollout-v2-happy-path');

    const text = await historyText(handle);
    expect(text).toContain('RELEASE_ID'); // payloads were decoded: the check below can see values
    expect(text).not.toContain('s3cret-value');
  } finally {
    traffic.stop();
  }
});
