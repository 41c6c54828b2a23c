/**
 * Fencing (issue 9: "no write lands after the revert", by construction): a revert marks the target
 * with its rollout and pass, and a forward write of that pass, such as a zombie attempt the server
 * already gave up on, is refused when it reads the mark. Checked in moto and the Cloud Run fake,
 * first on the providers, then on a real rollout whose saga left the marks.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRollout } from '../src/client';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { LambdaTargetSpec, TargetSpec } from '../src/spec/schema';
import type { TrafficFence } from '../src/providers/types';
import { FENCE_ANNOTATION } from '../src/providers/cloud-run';
import { resumeSignal, type RolloutResult } from '../src/contract';
import { aliasState, publishedVersions } from './support/lambda';
import { recordHistory } from './support/history';
import { cloudRunState, cloudRunTarget, imageFor, mixedSpec, seedCloudRun, simulateCloudRunTraffic } from './support/cloud-run';
import { createHarness, simulateTraffic, waitForStatus, type Harness } from './support/harness';
import { GetAliasCommand, GetFunctionConfigurationCommand, LambdaClient } from '@aws-sdk/client-lambda';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('fence', { cloudRun: true });
  await h.startWorker();
});
afterAll(async () => h?.close());

const lambda = () => h.deps.providers['aws-lambda']!;
const cloudRun = () => h.deps.providers['cloud-run']!;
const pass1: TrafficFence = { chain: 'chain-a', pass: 1 };
const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '7' };

async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'accepted',
    (e: Error & { code?: string }) => `${e.code ?? e.name}: ${e.message}`,
  );
}

async function functionConfig(t: TargetSpec, qualifier: string) {
  const l = t as LambdaTargetSpec;
  const c = new LambdaClient({ endpoint: h.motoUrl, region: l.region, credentials: TEST_CREDENTIALS });
  return c.send(new GetFunctionConfigurationCommand({ FunctionName: l.function, Qualifier: qualifier }));
}

async function until(pred: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function aliasDescription(t: LambdaTargetSpec): Promise<string | undefined> {
  const c = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  return (await c.send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }))).Description;
}

test('Lambda: after a revert of pass 1, forward writes of pass 1 are refused and leave the alias alone; pass 2 and other rollouts are not', async () => {
  const t: LambdaTargetSpec = { name: 'l', provider: 'aws-lambda', region: 'eu-central-1', function: 'fence-fn', alias: 'live' };
  await createSampleFunction(h.motoUrl, t, { LOG_LEVEL: 'info' });
  const zip = sampleZip('fence v2');
  const digest = createHash('sha256').update(zip).digest('hex');
  const path = join(h.workDir, `${digest}.zip`);
  writeFileSync(path, zip);
  const { newVersion } = await lambda().deployRevision(t, { digest, path }, contract, 'rollout-fence', pass1);
  expect(newVersion).toBe('2');
  await lambda().setTraffic(t, '1', '2', 10, { fence: pass1 });
  expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: { '2': 0.1 } });

  await lambda().routeAll(t, '1', { fence: pass1, revert: true });
  expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  expect(await aliasDescription(t)).toContain('[rollgate-reverted:chain-a#1]');

  // A zombie of pass 1: its canary step and its promote are refused, nothing written.
  const writesBefore = h.proxy.calls.filter((c) => c.method !== 'GET').length;
  expect(await refusal(lambda().setTraffic(t, '1', '2', 50, { fence: pass1 }))).toMatch(/^Fenced: l: 2 at 50 % refused/);
  expect(await refusal(lambda().routeAll(t, '2', { fence: pass1 }))).toMatch(/^Fenced: /);
  expect(h.proxy.calls.filter((c) => c.method !== 'GET').length).toBe(writesBefore);
  expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });

  // The next pass (after resume) and another rollout's writes go through.
  expect(await lambda().setTraffic(t, '1', '2', 20, { fence: { chain: 'chain-a', pass: 2 } })).toEqual({ changed: true });
  expect(await lambda().setTraffic(t, '1', '2', 30, { fence: { chain: 'chain-b', pass: 1 } })).toEqual({ changed: true });
  // A second revert of pass 1 is a no-op once alias and mark are there; a revert of pass 2 moves the mark.
  await lambda().routeAll(t, '1', { fence: { chain: 'chain-a', pass: 2 }, revert: true });
  expect(await lambda().routeAll(t, '1', { fence: { chain: 'chain-a', pass: 2 }, revert: true })).toEqual({ changed: false });
  expect(await aliasDescription(t)).toBe('[rollgate-reverted:chain-a#2]');
});

test('Cloud Run: after a revert of pass 1, the canary step, the promote and the deploy tag of pass 1 are refused', async () => {
  const t = cloudRunTarget('c', 'fence-svc', 'europe-west1');
  h.cloudRun!.seedService({ project: t.project, region: t.region, service: t.service, image: imageFor(t.service, 'r1'), env: {} });
  const stable = cloudRunState(h, t).revisions[0];
  const { newVersion } = await cloudRun().deployRevision(
    t,
    { digest: 'x', image: imageFor(t.service, 'r2') },
    contract,
    'rollout-fence',
    pass1,
  );
  await cloudRun().setTraffic(t, stable, newVersion, 20, { fence: pass1 });
  expect(cloudRunState(h, t).split).toEqual({ [stable]: 80, [newVersion]: 20 });

  await cloudRun().routeAll(t, stable, { dropTag: true, fence: pass1, revert: true });
  const svc = h.cloudRun!.getServiceState(t.project, t.region, t.service)!;
  expect((svc.annotations as Record<string, string>)[FENCE_ANNOTATION]).toBe('[rollgate-reverted:chain-a#1]');
  expect(cloudRunState(h, t)).toMatchObject({ split: { [stable]: 100 }, tags: [] });

  expect(await refusal(cloudRun().setTraffic(t, stable, newVersion, 50, { fence: pass1 }))).toMatch(/^Fenced: c: /);
  expect(await refusal(cloudRun().routeAll(t, newVersion, { fence: pass1 }))).toMatch(/^Fenced: /);
  // The deploy's retry would put the canary tag back: refused too.
  expect(
    await refusal(cloudRun().deployRevision(t, { digest: 'x', image: imageFor(t.service, 'r2') }, contract, 'rollout-fence', pass1)),
  ).toMatch(/^Fenced: c: tagging the new revision refused/);
  expect(cloudRunState(h, t)).toMatchObject({ split: { [stable]: 100 }, tags: [] });

  expect(await cloudRun().setTraffic(t, stable, newVersion, 20, { fence: { chain: 'chain-a', pass: 2 } })).toEqual({ changed: true });
});

test('a real rollout: its saga marks every target, a late write of the reverted pass is refused, and the pass after resume promotes', async () => {
  const service = 'fence-e2e';
  const targets: TargetSpec[] = [
    { name: 'l', provider: 'aws-lambda', region: 'us-east-1', function: `${service}-fn`, alias: 'live' },
    cloudRunTarget('c', `${service}-svc`, 'europe-west1'),
  ];
  const spec = mixedSpec(h, service, targets, { canary: { targets: ['l', 'c'], weight: 20, bake: '3 seconds' }, waves: [] });
  await createSampleFunction(h.motoUrl, targets[0] as LambdaTargetSpec, { LOG_LEVEL: 'info' });
  h.lambdaCode.add(sampleZip(`${service}-fn v1`));
  const stable = seedCloudRun(h, spec);
  let bad = true;
  const sims = [
    simulateTraffic(h, spec, (_t, v) => bad && v === '2'),
    simulateCloudRunTraffic(h, spec, (_t, rev) => bad && rev !== stable.c),
  ];
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const paused = await waitForStatus(handle, (s) => s.pausedAfterRollback === true, 90_000, 'paused after the breach');
    const next = Object.fromEntries(paused.targets.map((x) => [x.name, x.newVersion!]));
    const zombie: TrafficFence = { chain: handle.firstExecutionRunId, pass: 1 };
    const [l, c] = targets;
    expect(await refusal(lambda().setTraffic(l, '1', next.l, 50, { fence: zombie }))).toMatch(/^Fenced: /);
    expect(await refusal(cloudRun().setTraffic(c, stable.c, next.c, 50, { fence: zombie }))).toMatch(/^Fenced: /);
    expect(await aliasState(h.motoUrl, l)).toEqual({ version: '1', weights: {} });
    expect(cloudRunState(h, c)).toMatchObject({ split: { [stable.c]: 100 }, tags: [] });

    // The function's $LATEST is back on version 1's code and environment too.
    await until(async () => {
      const [latest, v1] = await Promise.all([functionConfig(l, '$LATEST'), functionConfig(l, '1')]);
      return latest.CodeSha256 === v1.CodeSha256 && JSON.stringify(latest.Environment) === JSON.stringify(v1.Environment);
    }, 30_000);

    bad = false;
    await handle.signal(resumeSignal, { by: 'carol' });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('succeeded');
    expect(await aliasState(h.motoUrl, l)).toEqual({ version: next.l, weights: {} });
    expect(cloudRunState(h, c).split).toEqual({ [next.c]: 100 });
    expect(await publishedVersions(h.motoUrl, l)).toEqual(['1', next.l]); // the second pass found its version again
    await recordHistory(handle, 'rollout-v2-runner-fence-restore-latest-resume');
  } finally {
    for (const s of sims) s.stop();
  }
}, 180_000);

test('a mark keeps the description it was added to', async () => {
  const { withFenceMark } = await import('../src/providers/fence');
  expect(withFenceMark('owned by team-a', pass1)).toBe('owned by team-a [rollgate-reverted:chain-a#1]');
  expect(withFenceMark('owned by team-a [rollgate-reverted:chain-a#1]', { chain: 'chain-a', pass: 2 })).toBe(
    'owned by team-a [rollgate-reverted:chain-a#2]',
  );
  expect(withFenceMark('x'.repeat(300), pass1).length).toBeLessThanOrEqual(256);
});
