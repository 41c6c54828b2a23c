/** Build/test/migrate stages, verify failures (probe, env drift), escalation of a failed revert, alert retries. */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LambdaClient, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { startRollout } from '../src/client';
import { lambdaOp } from '../src/dev/fault-proxy';
import { sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { validateSpec } from '../src/spec/validate';
import { abortSignal, resumeSignal, type RolloutResult } from '../src/workflows/messages';
import { historyText } from './support/history';
import { aliasState, publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, waitForAlert, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('stages');
  await h.startWorker();
});
afterAll(async () => h?.close());

function oneTarget(service: string, over: Record<string, unknown> = {}) {
  const base = lambdaSpec(h, service, {}, 1);
  return validateSpec({ ...JSON.parse(JSON.stringify(base)), waves: [], ...over });
}

test('build runs once and its digest is deployed; tests and the migration run before any deploy', async () => {
  const dir = h.workDir;
  writeFileSync(join(dir, 'src.zip'), sampleZip('built by the build stage'));
  writeFileSync(join(dir, 'schema'), '6\n');
  const spec = oneTarget('staged', {
    artifact: { build: { command: 'echo build >> build.log && cp src.zip out.zip', output: 'out.zip', cwd: dir } },
    test: { command: 'test -f out.zip', cwd: dir },
    migration: { command: 'echo "$ROLLGATE_SCHEMA_REV" > schema', current_command: 'cat schema', cwd: dir },
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    const digest = createHash('sha256')
      .update(readFileSync(join(dir, 'out.zip')))
      .digest('hex');
    expect(res.status.artifactDigest).toBe(digest);
    expect(readFileSync(join(dir, 'build.log'), 'utf8')).toBe('build\n');
    const stages = res.status.history.filter((e) => e.kind === 'stage').map((e) => e.text.split(':')[0]);
    expect(stages).toEqual([
      'stage preflight',
      'stage build',
      'stage test',
      'stage migrate',
      'stage deploy',
      'stage verify',
      'stage canary',
      'stage promote',
      'stage done',
    ]);
    expect(res.status.history.some((e) => e.text === 'schema_rev 7 verified')).toBe(true);
    // The first Lambda write comes after the migration finished.
    const migrated = res.status.history.find((e) => e.text === 'schema_rev 7 verified')!.atMs;
    const firstWrite = h.proxy.calls.find((c) => c.method !== 'GET' && lambdaOp.any('staged-fn')(c))!;
    expect(firstWrite.atMs).toBeGreaterThanOrEqual(migrated);
  } finally {
    traffic.stop();
  }
});

test('a failing test command ends the rollout before anything is deployed', async () => {
  const spec = oneTarget('failing-tests', { test: { command: 'echo "2 tests failed" && exit 3' } });
  await createFunctions(h, spec);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const res = (await handle.result()) as RolloutResult;
  expect(res.state).toBe('failed');
  expect(res.reason).toMatch(/test command exited 3: 2 tests failed/);
  // Only the read-only target preflight reached Lambda: no write.
  expect(h.proxy.count((c) => c.method !== 'GET' && lambdaOp.any('failing-tests-fn')(c))).toBe(0);
});

test('a migration that reports another schema_rev fails before any deploy', async () => {
  const spec = oneTarget('bad-migration', { migration: { command: 'true', current_command: 'echo 6' } });
  await createFunctions(h, spec);
  const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
  expect(res.state).toBe('failed');
  expect(res.reason).toBe('migration reports schema_rev "6", spec expects "7"');
  expect(h.proxy.count((c) => c.method !== 'GET' && lambdaOp.any('bad-migration-fn')(c))).toBe(0);
});

test('a failing health probe fails verify before traffic moves; the alert is retried until delivered', async () => {
  const spec = oneTarget('bad-probe');
  await createFunctions(h, spec);
  h.proxy.inject({
    match: (c) => lambdaOp.invoke('bad-probe-fn')(c) && c.path.includes('Qualifier=2'),
    action: { respond: () => ({ status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: '{"errorMessage":"boom"}' }) },
  });
  h.webhook.failNext(2, 503);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after verify');
  expect(paused.rollbackReason).toMatch(/verify failed: us-east-1: probe health: function error Unhandled/);
  expect(h.proxy.count(lambdaOp.updateAlias('bad-probe-fn'))).toBe(0);
  await waitForStatus(handle, (s) => s.history.some((e) => /rolled-back alert delivered/.test(e.text)), 30_000, 'alert delivered');
  expect(h.webhook.received.filter((r) => r.body.rollgate.service === 'bad-probe')).toHaveLength(1);
  await handle.signal(abortSignal);
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
});

test('env drift: a key missing versus the stable version fails verify; changed values are reported by hash only', async () => {
  const spec = oneTarget('drift');
  await createFunctions(h, spec, { DB_PASSWORD: 'hunter2-secret', LOG_LEVEL: 'info' });
  const t = spec.targets[0] as LambdaTargetSpec;
  // Someone changed $LATEST's configuration: the password is gone, the log level changed.
  const lambda = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  await lambda.send(
    new UpdateFunctionConfigurationCommand({ FunctionName: t.function, Environment: { Variables: { LOG_LEVEL: 'debug-verbose' } } }),
  );
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after drift');
  expect(paused.rollbackReason).toMatch(/env keys missing vs stable 1: DB_PASSWORD/);
  expect(paused.rollbackReason).toMatch(/env values changed \(by hash\): LOG_LEVEL [0-9a-f]{12}->[0-9a-f]{12}/);
  const text = await historyText(handle);
  for (const secret of ['hunter2-secret', 'debug-verbose']) expect(text).not.toContain(secret);
  expect(JSON.stringify(paused)).not.toContain('hunter2-secret');
  await handle.signal(abortSignal);
  await handle.result();
});

test('a revert that keeps failing escalates (rollback-failed + alert); resume retries only the revert', async () => {
  const spec = oneTarget('stuck-revert');
  spec.rollback.revert_retry_for = '10 seconds'; // escalate within the test (default: 3 minutes)
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2'); // canary breaches
  // Every alias update after the canary shift fails with a (retryable) service error.
  let shifted = false;
  h.proxy.inject({
    match: (c) => {
      if (!lambdaOp.updateAlias('stuck-revert-fn')(c)) return false;
      if (!shifted) {
        shifted = true;
        return false;
      }
      return true;
    },
    times: 1000,
    action: { status: 503, errorType: 'ServiceException', message: 'Lambda is having a bad day' },
  });
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const failed = await waitForStatus(handle, (s) => s.state === 'rollback-failed', 60_000, 'rollback-failed');
    expect(failed.detail).toMatch(/ROLLBACK FAILED for stuck-revert r2 after breach in canary: revert us-east-1: .*bad day/);
    // Retried for rollback.revert_retry_for (activity attempts, each with the SDK's own retries) before escalating.
    expect(h.proxy.count(lambdaOp.updateAlias('stuck-revert-fn'))).toBeGreaterThanOrEqual(1 + 6);
    const alert = await waitForAlert(h, 'stuck-revert');
    expect(alert?.body.rollgate.event).toBe('rollback-failed');
    expect((await aliasState(h.motoUrl, spec.targets[0])).weights).toEqual({ '2': 0.1 });

    h.proxy.clearFaults();
    const callsBefore = h.proxy.calls.length;
    const historyBefore = (await waitForStatus(handle, () => true)).history.length;
    await handle.signal(resumeSignal, { by: 'carol' });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused', 30_000, 'paused after the retried revert');
    // "Only the revert": one alias update, nothing published or invoked, no pipeline stage entered.
    const after = h.proxy.calls.slice(callsBefore);
    expect(after.filter(lambdaOp.updateAlias('stuck-revert-fn'))).toHaveLength(1);
    expect(after.filter((c) => lambdaOp.publishVersion('stuck-revert-fn')(c) || lambdaOp.invoke('stuck-revert-fn')(c))).toHaveLength(0);
    expect(
      paused.history
        .slice(historyBefore)
        .filter((e) => e.kind === 'stage')
        .map((e) => e.text.split(':')[0]),
    ).toEqual(['stage rollback']);
    expect(paused.targets[0].weight).toBe(0);
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: {} });
    expect(await publishedVersions(h.motoUrl, spec.targets[0])).toEqual(['1', '2']);
    await handle.signal(abortSignal);
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    traffic.stop();
  }
});

test('the same stage failing in 3 consecutive rollouts escalates in the alert', async () => {
  const alertsOf = () => h.webhook.received.filter((r) => r.body.rollgate.service === 'escalating').map((r) => r.body);
  for (let i = 1; i <= 3; i++) {
    const spec = oneTarget('escalating', { release: `r${i}`, test: { command: 'exit 1' } });
    if (i === 1) await createFunctions(h, spec);
    const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
    expect(res).toMatchObject({ state: 'failed', status: { failedStage: 'test' } });
    await new Promise((r) => setTimeout(r, 1500)); // visibility catches up with the closed run
  }
  const alerts = alertsOf();
  expect(alerts).toHaveLength(3);
  expect(alerts[0].text).toMatch(/^rollgate: escalating r1 failed in stage test before anything was deployed/);
  expect(alerts[1].rollgate.escalation).toBeUndefined();
  expect(alerts[2].rollgate.escalation).toBe('ESCALATION: stage test failed in 3 consecutive rollouts of escalating');
  expect(alerts[2].text).toMatch(/^ESCALATION: stage test failed in 3 consecutive rollouts of escalating\. rollgate: escalating r3 failed/);
});
