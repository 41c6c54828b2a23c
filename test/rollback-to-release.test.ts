/**
 * `rollgate rollback --to RELEASE` on the real dev server, moto and the Cloud Run fake: every target
 * back on the version/revision that release promoted (read back from moto and the fake), after the
 * environment's approval and a freeze window; refused for a release that never promoted or whose
 * version no longer exists; a failure midway puts back what served before (the saga).
 */
import { DeleteFunctionCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { RolloutRefusedError } from '../src/client';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { promoteRelease, releaseRecords, rollbackToRelease, vetoRelease } from '../src/releases';
import type { Pipeline } from '../src/spec/pipeline';
import { abortSignal, approveUpdate, type RolloutResult } from '../src/contract';
import { lambdaOp } from '../src/dev/fault-proxy';
import { aliasState, watchAliasWrites } from './support/lambda';
import { cloudRunState } from './support/cloud-run';
import { seedPipeline, targetsOf, testPipeline, type EnvOptions } from './support/pipeline';
import { recordHistory } from './support/history';
import { createHarness, resultWithin, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('rollback-to', { cloudRun: true });
  await h.startWorker();
});
afterEach(() => h.proxy.clearFaults());
afterAll(async () => h?.close());

const opts = () => ({ startedBy: 'carol', taskQueue: h.taskQueue });
const PROD: Record<string, EnvOptions> = { prod: { approval: true } };
const utcLocal = (ms: number) => new Date(ms).toISOString().slice(0, 19);

async function approveWhenAsked(handle: Parameters<typeof waitForStatus>[0], wave?: string) {
  await waitForStatus(handle, (s) => s.awaitingApproval !== undefined, 60_000, 'awaiting approval');
  await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', ...(wave ? { wave } : {}) }] });
}

/** Promote `release` in prod (approved) and wait until the registry has read it. */
async function promoted(p: Pipeline, release: string): Promise<void> {
  const handle = await promoteRelease(h.client, p, release, 'prod', opts());
  await approveWhenAsked(handle);
  expect(((await resultWithin(handle, 90_000)) as RolloutResult).state).toBe('succeeded');
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const state = await releaseRecords(h.client, p.service);
    if (state.releases.find((r) => r.release === release)?.environments[0]?.runId === handle.firstExecutionRunId) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`registry did not record ${release}`);
}

/** r1 then r2 promoted in prod: returns what each served (Lambda version, Cloud Run revision). */
async function twoReleases(service: string) {
  const p1 = testPipeline(h, service, 'r1', PROD);
  await seedPipeline(h, p1);
  const { fn, run } = targetsOf(p1, 'prod');
  await promoted(p1, 'r1');
  const r1 = { version: (await aliasState(h.motoUrl, fn)).version, revision: Object.keys(cloudRunState(h, run).split)[0] };
  await promoted(testPipeline(h, service, 'r2', PROD), 'r2');
  const r2 = { version: (await aliasState(h.motoUrl, fn)).version, revision: Object.keys(cloudRunState(h, run).split)[0] };
  expect(r2.version).not.toBe(r1.version);
  expect(r2.revision).not.toBe(r1.revision);
  return { fn, run, r1, r2 };
}

test('back to r1 on Lambda and Cloud Run after the approval and a freeze window; no build, no canary', async () => {
  const { fn, run, r1, r2 } = await twoReleases('menu');
  // The freeze window ends a few seconds after the rollback starts: nothing may move before that.
  const freezeEndsMs = Date.now() + 20_000;
  const frozen = testPipeline(h, 'menu', 'r3', {
    prod: {
      approval: true,
      freeze_windows: [{ name: 'hold', timezone: 'UTC', from: utcLocal(Date.now() - 60_000), to: utcLocal(freezeEndsMs) }],
    },
  });
  const writes = watchAliasWrites(h.proxy);
  try {
    const handle = await rollbackToRelease(h.client, frozen, 'r1', 'prod', opts());
    const waiting = await waitForStatus(handle, (s) => s.awaitingApproval === 'rollback', 60_000, 'awaiting the rollback approval');
    expect(waiting.rollbackTo).toBe('r1');
    expect(await aliasState(h.motoUrl, fn)).toEqual({ version: r2.version, weights: {} });
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', wave: 'rollback' }] });
    const res = (await resultWithin(handle, 90_000)) as RolloutResult;
    expect(res.state).toBe('succeeded');
    expect(res.reason).toBe('rolled back to release r1: 2 target(s) on the versions it promoted');
    await recordHistory(handle, 'rollout-v2-rollback-to-release');
    // Ground truth: moto's alias and the fake's served split are r1's.
    expect(await aliasState(h.motoUrl, fn)).toEqual({ version: r1.version, weights: {} });
    expect(cloudRunState(h, run).split).toEqual({ [r1.revision]: 100 });
    // The freeze held the write: the alias moved to r1 only once the window had ended.
    const forward = writes.forward(fn.function, r2.version);
    expect(forward.length).toBeGreaterThan(0);
    expect(Math.min(...forward.map((w) => w.atMs))).toBeGreaterThanOrEqual(freezeEndsMs - 1000);
    const text = res.status.history.map((e) => `${e.kind} ${e.text}`).join('\n');
    expect(text).toMatch(/wait frozen until .* \(freeze window hold\)/);
    expect(text).toContain(`rollback to r1: prod-fn ${r2.version} → ${r1.version}, prod-run ${r2.revision} → ${r1.revision}`);
    expect(text).not.toMatch(/artifact sha256|published version|bake/);
    const state = await releaseRecords(h.client, 'menu');
    const deadline = Date.now() + 20_000;
    let restored = state.releases.find((r) => r.release === 'r1')!.environments[0].restoredAtMs;
    while (!restored && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      restored = (await releaseRecords(h.client, 'menu')).releases.find((r) => r.release === 'r1')!.environments[0].restoredAtMs;
    }
    expect(restored).toBeGreaterThan(0);
  } finally {
    writes.stop();
  }
});

test('refused: a release that never promoted, and one whose Lambda version no longer exists', async () => {
  const { fn, r1, r2 } = await twoReleases('soup');
  const p = testPipeline(h, 'soup', 'r3', PROD);
  await expect(rollbackToRelease(h.client, p, 'r9', 'prod', opts())).rejects.toThrow(
    new RolloutRefusedError('rollback of soup prod to r9 refused: release r9 never ran in prod. Nothing was started.'),
  );
  const c = new LambdaClient({ endpoint: h.motoUrl, region: fn.region, credentials: TEST_CREDENTIALS });
  await c.send(new DeleteFunctionCommand({ FunctionName: fn.function, Qualifier: r1.version }));
  const handle = await rollbackToRelease(h.client, p, 'r1', 'prod', { ...opts() });
  const res = (await resultWithin(handle, 60_000)) as RolloutResult;
  expect(res.state).toBe('failed');
  expect(res.reason).toContain(`cannot go back to release r1: prod-fn: version ${r1.version} no longer exists`);
  expect(await aliasState(h.motoUrl, fn)).toEqual({ version: r2.version, weights: {} });
});

test('a failure midway puts back what served before: Cloud Run moved to r1, the Lambda route refused, both end on r2', async () => {
  const { fn, run, r1, r2 } = await twoReleases('wine');
  const handle = await rollbackToRelease(h.client, testPipeline(h, 'wine', 'r3', PROD), 'r1', 'prod', opts());
  await waitForStatus(handle, (s) => s.awaitingApproval === 'rollback', 60_000, 'awaiting the rollback approval');
  // The Lambda route reads its alias slowly, then is refused: by then Cloud Run has moved.
  h.proxy.inject({
    match: (c) => c.method === 'GET' && lambdaOp.any(fn.function)(c) && c.path.includes('/aliases/'),
    action: { delayMs: 4000 },
  });
  h.proxy.inject({ match: lambdaOp.updateAlias(fn.function), action: { status: 403, errorType: 'AccessDeniedException' } });
  let sawR1 = false;
  const watch = setInterval(() => {
    if (cloudRunState(h, run).split[r1.revision] === 100) sawR1 = true;
  }, 50);
  try {
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });
    await waitForStatus(handle, (s) => s.state === 'paused', 90_000, 'paused after the saga');
  } finally {
    clearInterval(watch);
  }
  expect(sawR1).toBe(true);
  expect(await aliasState(h.motoUrl, fn)).toEqual({ version: r2.version, weights: {} });
  expect(cloudRunState(h, run).split).toEqual({ [r2.revision]: 100 });
  await handle.signal(abortSignal, { by: 'carol' });
  expect(((await resultWithin(handle, 60_000)) as RolloutResult).state).toBe('rolled-back');
  await recordHistory(handle, 'rollout-v2-rollback-to-release-saga');
});

test('a veto that comes while the rollback waits for its approval: nothing is routed back to the vetoed release', async () => {
  const { fn, run, r2 } = await twoReleases('cake');
  const handle = await rollbackToRelease(h.client, testPipeline(h, 'cake', 'r3', PROD), 'r1', 'prod', opts());
  await waitForStatus(handle, (s) => s.awaitingApproval === 'rollback', 60_000, 'awaiting the rollback approval');
  await vetoRelease(h.client, 'cake', 'r1', { by: 'dana', reason: 'leaks carts' });
  const writes = watchAliasWrites(h.proxy);
  try {
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', wave: 'rollback' }] });
    const refused = await waitForStatus(
      handle,
      (s) => s.state === 'paused' && /vetoed/.test(s.rollbackReason ?? ''),
      60_000,
      'paused: the route back refused',
    );
    expect(refused.rollbackReason).toBe(
      'rollback to release r1 refused: release r1 was vetoed by dana (unverified) (leaks carts); nothing was routed',
    );
    // Ground truth: both targets still serve r2; no alias write moved prod-fn off it.
    expect(writes.forward(fn.function, r2.version)).toEqual([]);
    expect(await aliasState(h.motoUrl, fn)).toEqual({ version: r2.version, weights: {} });
    expect(cloudRunState(h, run).split).toEqual({ [r2.revision]: 100 });
  } finally {
    writes.stop();
  }
  await handle.signal(abortSignal, { by: 'carol' });
  expect(((await resultWithin(handle, 60_000)) as RolloutResult).state).toBe('rolled-back');
  await recordHistory(handle, 'rollout-v2-release-gates-rollback-to-vetoed');
});
