/**
 * Environments and promotion on the real dev server, moto and the Cloud Run fake: a release built
 * and verified in staging is promoted to prod with exactly its digest (read back from moto and the
 * fake); promotions refused for a release that did not succeed, was rolled back or has not soaked;
 * the evidence on the release; a veto that blocks a promote and a plain start of the same digest;
 * forged registry messages that change nothing.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { RolloutRefusedError, startRollout } from '../src/client';
import { promoteRelease, releaseRecords, rollbackToRelease, vetoRelease } from '../src/releases';
import { environmentSpec, type Pipeline } from '../src/spec/pipeline';
import { abortSignal, approveUpdate, rejectUpdate, resumeSignal, type RolloutResult, type RolloutStatus } from '../src/contract';
import { releaseRegistryWorkflowId, rolloutClosedSignal } from '../src/contract';
import { formatReleases } from '../src/cli/releases';
import { main } from '../src/cli/main';
import { aliasState, publishedVersions, watchAliasWrites } from './support/lambda';
import { sampleZip } from '../src/dev/lambda-fixtures';
import { cloudRunState } from './support/cloud-run';
import { codeSha, revisionImage, seedPipeline, targetsOf, testPipeline } from './support/pipeline';
import { historyText, recordHistory, workflowEvents } from './support/history';
import { createHarness, nextRun, resultWithin, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('promote', { cloudRun: true });
  await h.startWorker();
});
afterAll(async () => h?.close());

const FORGED_RUN_ID = '00000000-0000-4000-8000-000000000000';
const opts = () => ({ startedBy: 'carol', taskQueue: h.taskQueue });
const zipDigest = (p: Pipeline) =>
  createHash('sha256')
    .update(readFileSync((p.shared.artifact as { file: string }).file))
    .digest('hex');

/** Run the CLI in-process against this file's server; its stdout and exit code. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
  let out = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((out += String(s)), true));
  try {
    return { code: await main(args), out };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = undefined;
  }
}

/** Wait until the registry has read the run (it reads each announced run from Temporal itself). */
async function recorded(service: string, release: string, env: string, runId: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const state = await releaseRecords(h.client, service);
    const e = state.releases.find((r) => r.release === release)?.environments.find((x) => x.environment === env);
    if (e?.runId === runId) return { state, env: e };
    if (Date.now() > deadline) throw new Error(`registry did not record ${release} in ${env}: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function approveWhenAsked(handle: Parameters<typeof waitForStatus>[0]) {
  await waitForStatus(handle, (s) => s.awaitingApproval !== undefined, 60_000, 'awaiting approval');
  await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });
}

test('staging then prod with exactly the staging digest; refused until it has soaked; evidence on the release', async () => {
  const p = testPipeline(h, 'shop', 'r1');
  await seedPipeline(h, p);
  const stg = targetsOf(p, 'staging');
  const prod = targetsOf(p, 'prod');

  const staging = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  const sres = (await resultWithin(staging, 90_000)) as RolloutResult;
  expect(sres.state).toBe('succeeded');
  expect(sres.status.environment).toBe('staging');
  const stagingVersion = (await aliasState(h.motoUrl, stg.fn)).version;
  expect(stagingVersion).toBe('2');
  expect(await codeSha(h.motoUrl, stg.fn, stagingVersion)).toBe(zipDigest(p));
  const { env: stagingRecord } = await recorded('shop', 'r1', 'staging', staging.firstExecutionRunId);

  // Soak: 15 s in staging. Straight away the promotion is refused, saying how long is left.
  const early = promoteRelease(h.client, p, 'r1', 'prod', opts());
  await expect(early).rejects.toThrow(RolloutRefusedError);
  await expect(early).rejects.toThrow(/has soaked \d+(ms|s) in staging; prod requires 15s: \d+s left/);
  await new Promise((r) => setTimeout(r, Math.max(0, stagingRecord.promotedAtMs! + 15_100 - Date.now())));

  // The pipeline file has moved on (a new zip and image for r2): prod must still get r1's artifact.
  const moved = testPipeline(h, 'shop', 'r2');
  const promotion = await promoteRelease(h.client, moved, 'r1', 'prod', opts());
  await approveWhenAsked(promotion);
  const pres = (await resultWithin(promotion, 90_000)) as RolloutResult;
  expect(pres.state).toBe('succeeded');
  await recordHistory(promotion, 'rollout-v2-release-registry-promotion');

  // Ground truth: the prod function's new version has the staging code, prod's revision the staging image.
  const prodVersion = (await aliasState(h.motoUrl, prod.fn)).version;
  expect(prodVersion).toBe('2');
  expect(await codeSha(h.motoUrl, prod.fn, prodVersion)).toBe(zipDigest(p));
  expect(await codeSha(h.motoUrl, prod.fn, prodVersion)).not.toBe(zipDigest(moved));
  const stagingRevision = Object.keys(cloudRunState(h, stg.run).split)[0];
  const prodRevision = Object.keys(cloudRunState(h, prod.run).split)[0];
  expect(cloudRunState(h, prod.run).split).toEqual({ [prodRevision]: 100 });
  expect(revisionImage(h, prod.run, prodRevision)).toBe(revisionImage(h, stg.run, stagingRevision));
  // Not rebuilt: the prod run scheduled no build activity.
  const types = (await workflowEvents(promotion)).map((e) => e.activity).filter(Boolean);
  expect(types).not.toContain('buildArtifact');
  expect(types).toContain('deployRevision');

  const { state, env: prodRecord } = await recorded('shop', 'r1', 'prod', promotion.firstExecutionRunId);
  const r1 = state.releases.find((r) => r.release === 'r1')!;
  expect(r1.artifact.digest).toBe(zipDigest(p));
  expect(r1.environments.map((e) => e.environment)).toEqual(['staging', 'prod']);
  expect(prodRecord).toMatchObject({ outcome: 'succeeded', startedBy: 'carol' });
  expect(prodRecord.targets).toEqual(
    expect.arrayContaining([
      { name: prod.fn.name, provider: 'aws-lambda', version: prodVersion, previous: '1' },
      { name: prod.run.name, provider: 'cloud-run', version: prodRevision, previous: expect.any(String) },
    ]),
  );
  expect(prodRecord.approvals).toEqual([{ wave: 'rest', by: 'alice', decision: 'approved' }]);
  expect(prodRecord.verdicts.join('\n')).toMatch(/verify prod-fn: 1 probe\(s\) ok/);
  const text = formatReleases(state, Date.now());
  expect(text).toContain(`r1  artifact ${zipDigest(p)}`);
  expect(text).toMatch(/staging: succeeded, soaked \d/);
  expect(text).toContain('approved rest by alice (unverified)');
  // The CLI shows the same records under `history SERVICE --releases`.
  const shown = await cli(['history', 'shop', '--releases']);
  expect(shown.code).toBe(0);
  expect(shown.out).toContain(`r1  artifact ${zipDigest(p)}`);
  expect(shown.out).toMatch(/prod: succeeded, soaked \d+(ms|s); closed .*; started by carol \(unverified\)/);
});

test('refused: a release that did not succeed in staging, and one that was rolled back there', async () => {
  const p = testPipeline(h, 'cart', 'r1', { staging: {}, prod: {} });
  await seedPipeline(h, p);
  const stg = targetsOf(p, 'staging');

  // Aborted during the canary: did not succeed.
  const aborted = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  await waitForStatus(aborted, (s) => s.stage === 'canary', 60_000, 'canary');
  await aborted.signal(abortSignal, { by: 'carol', reason: 'not today' });
  expect(((await resultWithin(aborted, 60_000)) as RolloutResult).state).toBe('aborted');
  await recorded('cart', 'r1', 'staging', aborted.firstExecutionRunId);
  await expect(promoteRelease(h.client, p, 'r1', 'prod', opts())).rejects.toThrow(
    'promote cart r1 to prod refused: release r1 did not succeed in staging (its last rollout there ended aborted). Nothing was started.',
  );

  // r2 fails verify: rolled back, then the paused pipeline is closed.
  const bad = testPipeline(h, 'cart', 'r2', { staging: {}, prod: {} }, { probe: 'never-answered' });
  const rolled = await promoteRelease(h.client, bad, 'r2', 'staging', opts());
  await waitForStatus(rolled, (s) => s.state === 'paused', 90_000, 'paused after the rollback');
  expect(await aliasState(h.motoUrl, stg.fn)).toEqual({ version: '1', weights: {} });
  await rolled.signal(abortSignal, { by: 'carol' });
  expect(((await resultWithin(rolled, 60_000)) as RolloutResult).state).toBe('rolled-back');
  await recorded('cart', 'r2', 'staging', rolled.firstExecutionRunId);
  await expect(promoteRelease(h.client, p, 'r2', 'prod', opts())).rejects.toThrow(/release r2 was rolled back in staging at \d{4}-/);
  await expect(promoteRelease(h.client, p, 'r9', 'prod', opts())).rejects.toThrow('release r9 has not run in staging');
  // Nothing moved in prod.
  expect(await publishedVersions(h.motoUrl, targetsOf(p, 'prod').fn)).toEqual(['1']);
});

test('veto: blocks a promote and a plain start of the same digest before anything is deployed', async () => {
  const p = testPipeline(h, 'till', 'r1', { staging: {}, prod: {} });
  await seedPipeline(h, p);
  const staging = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  expect(((await resultWithin(staging, 90_000)) as RolloutResult).state).toBe('succeeded');
  await recorded('till', 'r1', 'staging', staging.firstExecutionRunId);

  await expect(vetoRelease(h.client, 'till', 'r7', { by: 'dana', reason: 'x' })).rejects.toThrow(/no record of release r7 of till/);
  // Through the CLI: `veto`, then `promote` refused with the reason (exit 1).
  const vetoed = await cli(['veto', 'till', 'r1', '--reason', 'corrupts carts', '--by', 'dana', '--json']);
  expect(vetoed.code).toBe(0);
  expect(JSON.parse(vetoed.out)).toMatchObject({ by: 'dana', verified: false, reason: 'corrupts carts' });
  const file = join(h.workDir, 'till-pipeline.yaml');
  writeFileSync(file, stringify({ service: p.service, ...p.shared, environments: p.environments }));
  const refused = await cli(['promote', 'till', '--release', 'r1', '--to', 'prod', '--pipeline', file, '--task-queue', h.taskQueue]);
  expect(refused.code).toBe(1);
  expect(refused.out).toMatch(/promote till r1 to prod refused: release r1 is vetoed \(by dana \(unverified\) at .*: corrupts carts\)/);
  // A second veto does not rewrite the first.
  expect(await vetoRelease(h.client, 'till', 'r1', { by: 'erin', reason: 'again' })).toMatchObject({
    by: 'dana',
    reason: 'corrupts carts',
  });

  await expect(promoteRelease(h.client, p, 'r1', 'prod', opts())).rejects.toThrow(
    /release r1 is vetoed \(by dana \(unverified\) at .*: corrupts carts\)/,
  );
  // A plain start of the same zip under another release name: the rollout itself refuses after the build.
  const prod = targetsOf(p, 'prod');
  const versionsBefore = await publishedVersions(h.motoUrl, prod.fn);
  const plain = await startRollout(h.client, { ...environmentSpec(p, 'prod', 'r1-again') }, opts());
  const res = (await resultWithin(plain, 60_000)) as RolloutResult;
  expect(res.state).toBe('failed');
  await recordHistory(plain, 'rollout-v2-release-registry-vetoed');
  expect(res.reason).toMatch(/is vetoed: release r1 was marked bad by dana \(unverified\) \(corrupts carts\); nothing was deployed/);
  expect(await publishedVersions(h.motoUrl, prod.fn)).toEqual(versionsBefore);
  expect(await aliasState(h.motoUrl, prod.fn)).toEqual({ version: '1', weights: {} });
  expect(Object.keys(cloudRunState(h, prod.run).split)).toHaveLength(1);
  expect(cloudRunState(h, prod.run).revisions).toHaveLength(1);
});

test('forged registry messages: a claimed outcome is ignored, runs that are not closed rollouts of the service are refused', async () => {
  const p = testPipeline(h, 'bank', 'r1', { staging: {}, prod: {} });
  await seedPipeline(h, p);
  const aborted = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  await waitForStatus(aborted, (s) => s.stage === 'canary', 60_000, 'canary');
  await aborted.signal(abortSignal, { by: 'carol' });
  expect((await resultWithin(aborted, 60_000)).state).toBe('aborted');
  await recorded('bank', 'r1', 'staging', aborted.firstExecutionRunId);

  const registry = h.client.workflow.getHandle(releaseRegistryWorkflowId('bank'));
  // The same run again with a forged outcome, a run of another service, the registry itself, garbage.
  // A closed rollout of another service (it fails in preflight: its function does not exist).
  const spec = environmentSpec(p, 'staging', 'zz');
  const missing = { ...spec.targets[0], function: 'bank-missing-fn' } as (typeof spec.targets)[number];
  const other = await startRollout(h.client, { ...spec, service: 'bank-other', targets: [missing], waves: [] }, opts());
  expect(((await resultWithin(other, 60_000)) as RolloutResult).state).toBe('failed');
  await registry.signal(rolloutClosedSignal, { workflowId: aborted.workflowId, runId: FORGED_RUN_ID, outcome: 'succeeded' } as never);
  await registry.signal(rolloutClosedSignal, {
    workflowId: aborted.workflowId,
    runId: aborted.firstExecutionRunId,
    outcome: 'succeeded',
  } as never);
  const self = await registry.describe();
  await registry.signal(rolloutClosedSignal, { workflowId: self.workflowId, runId: self.runId });
  await registry.signal(rolloutClosedSignal, 'garbage' as never);
  await registry.signal(rolloutClosedSignal, { workflowId: other.workflowId, runId: other.firstExecutionRunId });
  const deadline = Date.now() + 60_000;
  let state = await releaseRecords(h.client, 'bank');
  while (state.refused.length < 4 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 300));
    state = await releaseRecords(h.client, 'bank');
  }
  const reasons = state.refused.map((r) => r.reason).join('\n');
  expect(reasons).toContain(`${aborted.workflowId} run ${FORGED_RUN_ID}: no such run`);
  expect(reasons).toContain(`${self.workflowId} run ${self.runId}: the named run is a releaseRegistryWorkflow, not a rollout`);
  expect(reasons).toContain('malformed message');
  expect(reasons).toContain('the named run is a rollout of bank-other, not of bank');
  expect(state.releases.find((r) => r.release === 'r1')!.environments[0].outcome).toBe('aborted');
  await expect(promoteRelease(h.client, p, 'r1', 'prod', opts())).rejects.toThrow(/did not succeed in staging/);
  await recordHistory(registry, 'release-registry-v1-forged-messages');
});

test('a staging re-run that rebuilt the release: prod gets the digest that succeeded in staging, never the first build', async () => {
  const p = testPipeline(h, 'deli', 'r1', { staging: {}, prod: {} });
  await seedPipeline(h, p);
  const stg = targetsOf(p, 'staging');
  const prod = targetsOf(p, 'prod');
  // The first staging run of r1 (build A) is aborted in its canary.
  const first = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  await waitForStatus(first, (s) => s.stage === 'canary', 60_000, 'canary');
  await first.signal(abortSignal, { by: 'carol', reason: 'wrong build' });
  expect(((await resultWithin(first, 60_000)) as RolloutResult).state).toBe('aborted');
  await recorded('deli', 'r1', 'staging', first.firstExecutionRunId);
  // r1 is rebuilt (build B, same image) and succeeds in staging.
  const zipB = join(h.workDir, 'deli-r1-rebuilt.zip');
  writeFileSync(zipB, sampleZip('deli r1 rebuilt'));
  const rebuilt: Pipeline = { ...p, shared: { ...p.shared, artifact: { ...(p.shared.artifact as object), file: zipB } } };
  expect(zipDigest(rebuilt)).not.toBe(zipDigest(p));
  const rerun = await promoteRelease(h.client, rebuilt, 'r1', 'staging', opts());
  expect(((await resultWithin(rerun, 90_000)) as RolloutResult).state).toBe('succeeded');
  expect(await codeSha(h.motoUrl, stg.fn, (await aliasState(h.motoUrl, stg.fn)).version)).toBe(zipDigest(rebuilt));
  const { state } = await recorded('deli', 'r1', 'staging', rerun.firstExecutionRunId);
  const firstBuild = state.releases.find((r) => r.release === 'r1')!.artifact;
  expect(firstBuild.digest).toBe(zipDigest(p));

  // A prod rollout pinned to the first build (what the old client pinned): refused inside the rollout.
  const stale = await startRollout(h.client, environmentSpec(p, 'prod', 'r1'), {
    ...opts(),
    environment: 'prod',
    pinnedArtifact: firstBuild,
  });
  const staleRes = (await resultWithin(stale, 60_000)) as RolloutResult;
  expect(staleRes.state).toBe('failed');
  await recordHistory(stale, 'rollout-v2-release-gates-stale-pin');
  expect(staleRes.reason).toContain(`pinnedArtifact: ${zipDigest(p)} is not what release r1 verified in staging (${zipDigest(rebuilt)}`);
  expect(await publishedVersions(h.motoUrl, prod.fn)).toEqual(['1']);
  expect(cloudRunState(h, prod.run).revisions).toHaveLength(1);

  // The promotion deploys B, read back from moto.
  const promotion = await promoteRelease(h.client, p, 'r1', 'prod', opts());
  expect(((await resultWithin(promotion, 90_000)) as RolloutResult).state).toBe('succeeded');
  await recordHistory(promotion, 'rollout-v2-release-gates-promotion');
  const prodVersion = (await aliasState(h.motoUrl, prod.fn)).version;
  expect(prodVersion).toBe('2');
  expect(await codeSha(h.motoUrl, prod.fn, prodVersion)).toBe(zipDigest(rebuilt));
  // Each environment's digest is on the record and in `history --releases`.
  const { state: after } = await recorded('deli', 'r1', 'prod', promotion.firstExecutionRunId);
  const r1 = after.releases.find((r) => r.release === 'r1')!;
  expect(r1.environments.map((e) => [e.environment, e.artifact?.digest])).toEqual([
    ['staging', zipDigest(rebuilt)],
    ['prod', zipDigest(rebuilt)],
  ]);
  const shown = await cli(['history', 'deli', '--releases']);
  expect(shown.code).toBe(0);
  expect(shown.out).toMatch(new RegExp(`staging: succeeded.*\\n    artifact ${zipDigest(rebuilt)} `));
  expect(shown.out).toMatch(new RegExp(`prod: succeeded.*\\n    artifact ${zipDigest(rebuilt)} `));
});

test('a veto after a rollback: resume does not redeploy the vetoed release', async () => {
  const p = testPipeline(h, 'oven', 'r1', { staging: {}, prod: { approval: true } });
  await seedPipeline(h, p);
  const prod = targetsOf(p, 'prod');
  const staging = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  expect(((await resultWithin(staging, 90_000)) as RolloutResult).state).toBe('succeeded');
  await recorded('oven', 'r1', 'staging', staging.firstExecutionRunId);
  // In prod the canary ran, then the wave's approval is rejected: reverted, the pipeline paused.
  const promotion = await promoteRelease(h.client, p, 'r1', 'prod', opts());
  await waitForStatus(promotion, (s) => s.awaitingApproval !== undefined, 60_000, 'awaiting approval');
  await promotion.executeUpdate(rejectUpdate, { args: [{ by: 'alice', reason: 'not yet' }] });
  await waitForStatus(promotion, (s) => s.state === 'paused', 60_000, 'paused after the rejection');
  expect(await aliasState(h.motoUrl, prod.fn)).toEqual({ version: '1', weights: {} });

  await vetoRelease(h.client, 'oven', 'r1', { by: 'dana', reason: 'corrupts ovens' });
  await expectResumeRefusedByVeto(
    promotion,
    prod,
    /is vetoed: release r1 was marked bad by dana \(unverified\) \(corrupts ovens\); nothing was deployed/,
  );
  await promotion.signal(abortSignal, { by: 'carol' });
  expect(((await resultWithin(promotion, 60_000)) as RolloutResult).state).toBe('rolled-back');
  await recordHistory(promotion, 'rollout-v2-release-gates-vetoed-resume');
});

test("a run naming prod over staging's targets is no evidence of prod", async () => {
  const p = testPipeline(h, 'mill', 'r1', { staging: {}, prod: {} });
  await seedPipeline(h, p);
  const staging = await promoteRelease(h.client, p, 'r1', 'staging', opts()); // declares the pipeline to the registry
  expect(((await resultWithin(staging, 90_000)) as RolloutResult).state).toBe('succeeded');
  await recorded('mill', 'r1', 'staging', staging.firstExecutionRunId);
  // r2 on staging's targets, claiming prod: it succeeds (on staging), but the registry must not record it as prod.
  const claim = await startRollout(h.client, environmentSpec(testPipeline(h, 'mill', 'r2', { staging: {}, prod: {} }), 'staging', 'r2'), {
    ...opts(),
    environment: 'prod',
  });
  expect(((await resultWithin(claim, 90_000)) as RolloutResult).state).toBe('succeeded');
  const deadline = Date.now() + 60_000;
  let state = await releaseRecords(h.client, 'mill');
  while (!state.refused.some((r) => r.reason.includes(claim.firstExecutionRunId)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 300));
    state = await releaseRecords(h.client, 'mill');
  }
  const reason = state.refused.find((r) => r.reason.includes(claim.firstExecutionRunId))?.reason;
  expect(reason).toMatch(
    /the run names environment prod, but its targets \(aws-lambda:us-east-1:mill-staging:live, cloud-run:.*\) are staging's/,
  );
  expect(state.releases.find((r) => r.release === 'r2')).toBeUndefined();
  await expect(rollbackToRelease(h.client, p, 'r2', 'prod', opts())).rejects.toThrow('release r2 never ran in prod');
  await recordHistory(h.client.workflow.getHandle(releaseRegistryWorkflowId('mill')), 'release-registry-v2-environment-targets');
  // Nothing moved in prod.
  expect(await publishedVersions(h.motoUrl, targetsOf(p, 'prod').fn)).toEqual(['1']);
});

/** An update to a rollout that may be handing over to its next run right now: sent again until a run takes it. */
async function rejectWave(handle: Parameters<typeof waitForStatus>[0], reason: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await waitForStatus(handle, (s) => s.awaitingApproval !== undefined, 60_000, 'awaiting approval');
    try {
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'alice', reason }] });
      return;
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}

test('a promotion that continued as new keeps its pin: resume after a rollback deploys the staging digest, and a veto since is honoured', async () => {
  // Analyses every second during the approval wait, so the wait hands over to new runs.
  const shape = (release: string) => {
    const p = testPipeline(h, 'kiln', release, { staging: {}, prod: { approval: true } });
    p.shared.rollback = { ...(p.shared.rollback as object), interval: '1 second' };
    return p;
  };
  const resumes = (s: RolloutStatus) => s.history.filter((e) => e.kind === 'operator' && e.text.startsWith('resumed')).length;
  const rejections = (s: RolloutStatus) => s.approvals.filter((a) => a.decision === 'rejected').length;
  const p = shape('r1');
  await seedPipeline(h, p);
  const stg = targetsOf(p, 'staging');
  const prod = targetsOf(p, 'prod');
  const staging = await promoteRelease(h.client, p, 'r1', 'staging', opts());
  expect(((await resultWithin(staging, 90_000)) as RolloutResult).state).toBe('succeeded');
  await recorded('kiln', 'r1', 'staging', staging.firstExecutionRunId);
  const stagingImage = revisionImage(h, stg.run, Object.keys(cloudRunState(h, stg.run).split)[0]);

  // The pipeline file has moved on (r2's zip and image); the promotion of r1 hands over past 60 events.
  const moved = shape('r2');
  expect(zipDigest(moved)).not.toBe(zipDigest(p));
  const promotion = await promoteRelease(h.client, moved, 'r1', 'prod', { ...opts(), continueAsNewAfterEvents: 60 });
  await waitForStatus(promotion, (s) => s.awaitingApproval !== undefined, 90_000, 'awaiting approval');
  const seen = new Set([promotion.firstExecutionRunId, (await promotion.describe()).runId]);
  await nextRun(promotion, seen);
  const firstRunEvents = await workflowEvents(h.client.workflow.getHandle(promotion.workflowId, promotion.firstExecutionRunId));
  expect(firstRunEvents[firstRunEvents.length - 1].type).toBe('WORKFLOW_EXECUTION_CONTINUED_AS_NEW');

  // Rejected in a continued run: reverted, paused (no timer, so no more handovers).
  await rejectWave(promotion, 'not yet');
  await waitForStatus(promotion, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 60_000, 'paused after the rejection');
  const pausedRun = (await promotion.describe()).runId;
  expect(pausedRun).not.toBe(promotion.firstExecutionRunId);
  expect(await aliasState(h.motoUrl, prod.fn)).toEqual({ version: '1', weights: {} });
  expect(Object.values(cloudRunState(h, prod.run).split)).toEqual([100]);

  // resume: a new deploy pass in the continued run. Ground truth: the canary serves the staging code.
  await promotion.signal(resumeSignal, { by: 'carol' });
  await waitForStatus(promotion, (s) => s.awaitingApproval !== undefined && resumes(s) === 1, 90_000, 'awaiting approval again');
  const canary = await aliasState(h.motoUrl, prod.fn);
  expect(canary.version).toBe('1');
  expect(Object.keys(canary.weights)).toEqual(['2']);
  expect(await publishedVersions(h.motoUrl, prod.fn)).toEqual(['1', '2']);
  expect(await codeSha(h.motoUrl, prod.fn, '2')).toBe(zipDigest(p));
  const prodRevisions = cloudRunState(h, prod.run).revisions;
  expect(prodRevisions).toHaveLength(2);
  for (const r of prodRevisions.filter((x) => !Object.keys(cloudRunState(h, prod.run).split).includes(x)))
    expect(revisionImage(h, prod.run, r)).toBe(stagingImage);
  // The continued run carries the pin and asked the gate with it before the resumed pass deployed.
  const paused = h.client.workflow.getHandle(promotion.workflowId, pausedRun);
  const text = await historyText(paused);
  expect(text).toContain(`"pinnedArtifact":{`);
  expect(text).toMatch(/"pinned":true/);
  const events = await workflowEvents(paused);
  const resumedAt = events.findIndex((e) => e.type === 'WORKFLOW_EXECUTION_SIGNALED');
  expect(resumedAt).toBeGreaterThan(0);
  const after = events
    .slice(resumedAt)
    .filter((e) => e.type === 'ACTIVITY_TASK_SCHEDULED')
    .map((e) => e.activity);
  expect(after.indexOf('checkReleaseGate')).toBeGreaterThanOrEqual(0);
  expect(after.indexOf('checkReleaseGate')).toBeLessThan(after.indexOf('deployRevision'));

  // Rejected again (in whatever run the wait is in now), vetoed meanwhile: the next resume deploys nothing.
  await rejectWave(promotion, 'still not');
  await waitForStatus(
    promotion,
    (s) => s.state === 'paused' && rejections(s) === 2 && s.pausedAfterRollback === true,
    60_000,
    'paused again',
  );
  expect(await aliasState(h.motoUrl, prod.fn)).toEqual({ version: '1', weights: {} });
  await vetoRelease(h.client, 'kiln', 'r1', { by: 'dana', reason: 'cracks kilns' });
  await expectResumeRefusedByVeto(
    promotion,
    prod,
    /is vetoed: release r1 was marked bad by dana \(unverified\) \(cracks kilns\); nothing was deployed/,
  );
  expect(await publishedVersions(h.motoUrl, prod.fn)).toEqual(['1', '2']);
  await promotion.signal(abortSignal, { by: 'carol' });
  expect(((await resultWithin(promotion, 60_000)) as RolloutResult).state).toBe('rolled-back');
}, 300_000);

/**
 * `resume` on a paused promotion whose release was vetoed meanwhile: refused and paused again with
 * `reason`, and (ground truth) no write moved prod's alias off version 1, Cloud Run all on one revision.
 */
async function expectResumeRefusedByVeto(
  promotion: Awaited<ReturnType<typeof promoteRelease>>,
  prod: ReturnType<typeof targetsOf>,
  reason: RegExp,
): Promise<void> {
  const writes = watchAliasWrites(h.proxy);
  try {
    await promotion.signal(resumeSignal, { by: 'carol' });
    const refused = await waitForStatus(
      promotion,
      (s) => s.state === 'paused' && /is vetoed/.test(s.rollbackReason ?? ''),
      60_000,
      'paused again: the resume refused',
    );
    expect(refused.rollbackReason).toMatch(reason);
    expect(writes.forward(prod.fn.function, '1')).toEqual([]);
    expect(await aliasState(h.motoUrl, prod.fn)).toEqual({ version: '1', weights: {} });
    expect(Object.values(cloudRunState(h, prod.run).split)).toEqual([100]);
  } finally {
    writes.stop();
  }
}
