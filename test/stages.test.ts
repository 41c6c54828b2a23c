/** Build/test/migrate stages, verify failures (probe, env drift), escalation of a failed revert, alert retries. */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LambdaClient, PublishVersionCommand, UpdateAliasCommand, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { startRollout } from '../src/client';
import { lambdaOp } from '../src/dev/fault-proxy';
import { sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { validateSpec } from '../src/spec/validate';
import { abortSignal, resumeSignal, type RolloutResult } from '../src/contract';
import { historyText } from './support/history';
import { saltedHash } from '../src/providers/fingerprint';
import { aliasState, publishedVersions, watchAliasWrites } from './support/lambda';
import {
  createFunctions,
  createHarness,
  lambdaSpec,
  simulateTraffic,
  waitForStatus,
  waitForAlert,
  type Harness,
  resultWithin,
} from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('stages');
  await h.startWorker();
});
afterAll(async () => h?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes (anything but a read) that reached a function through the proxy since call index `from`. */
const writesTo = (fn: string, from = 0) => h.proxy.calls.slice(from).filter((c) => c.method !== 'GET' && lambdaOp.any(fn)(c));

function oneTarget(service: string, over: Record<string, unknown> = {}) {
  const base = lambdaSpec(h, service, {}, 1);
  return validateSpec({ ...JSON.parse(JSON.stringify(base)), waves: [], ...over });
}

test('build runs once and its digest is deployed; tests and the migration run before any deploy', async () => {
  const dir = h.workDir;
  writeFileSync(join(dir, 'src.zip'), sampleZip('built by the build stage'));
  writeFileSync(join(dir, 'schema'), '6\n');
  const spec = oneTarget('staged', {
    // A shell only where the spec asks for one; `test -f out.zip` is split into argv and run without one.
    artifact: { build: { command: 'echo build >> build.log && cp src.zip out.zip', shell: true, output: 'out.zip', cwd: dir } },
    test: { command: 'test -f out.zip', cwd: dir },
    migration: { command: 'echo "$ROLLGATE_SCHEMA_REV" > schema', current_command: 'cat schema', shell: true, cwd: dir },
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
  const spec = oneTarget('failing-tests', { test: { command: 'echo "2 tests failed" && exit 3', shell: true } });
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

test('an abort during the build or the test command stops the command and closes the rollout; nothing is deployed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-abort-cmd-'));
  // Each command records its pid and then is that pid (exec): it would run for 5 minutes unless stopped.
  const build = oneTarget('abort-build', {
    artifact: { build: { command: 'echo $$ > build.pid; exec sleep 300', shell: true, output: 'out.zip', cwd: dir } },
  });
  const tests = oneTarget('abort-tests', { test: { command: 'echo $$ > test.pid; exec sleep 300', shell: true, cwd: dir } });
  const pids: number[] = [];
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    await Promise.all(
      [
        [build, 'build', 'build.pid'],
        [tests, 'test', 'test.pid'],
      ].map(async ([spec, stage, pidFile]) => {
        const sp = spec as typeof build;
        await createFunctions(h, sp);
        const handle = await startRollout(h.client, sp, { startedBy: 'carol', taskQueue: h.taskQueue });
        await waitForStatus(handle, (st) => st.stage === stage && existsSync(join(dir, pidFile as string)), 60_000, `${stage} running`);
        const pid = Number(readFileSync(join(dir, pidFile as string), 'utf8'));
        pids.push(pid);
        expect(alive(pid)).toBe(true);
        await handle.signal(abortSignal, { by: 'carol' });
        const res = await resultWithin(handle, 60_000);
        expect({ state: res.state, reason: res.reason }).toEqual({ state: 'aborted', reason: 'aborted by carol: nothing was deployed' });
        // The command itself was stopped (the activity kills it when cancelled), not left running.
        const deadline = Date.now() + 30_000;
        while (alive(pid) && Date.now() < deadline) await sleep(100);
        expect({ stage, alive: alive(pid) }).toEqual({ stage, alive: false });
        expect(writesTo((sp.targets[0] as LambdaTargetSpec).function)).toHaveLength(0);
        expect(await aliasState(h.motoUrl, sp.targets[0])).toEqual({ version: '1', weights: {} });
      }),
    );
  } finally {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});

test('a target already split by another deployment is refused at preflight and left exactly as it was', async () => {
  const spec = oneTarget('already-split');
  await createFunctions(h, spec);
  const t = spec.targets[0] as LambdaTargetSpec;
  // Someone else's deployment is in progress: version 2 published, 20 % of the alias on it.
  const lambda = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  await lambda.send(
    new UpdateFunctionConfigurationCommand({
      FunctionName: t.function,
      Environment: { Variables: { RELEASE_ID: 'theirs', SCHEMA_REV: '0' } },
    }),
  );
  expect((await lambda.send(new PublishVersionCommand({ FunctionName: t.function }))).Version).toBe('2');
  await lambda.send(
    new UpdateAliasCommand({ FunctionName: t.function, Name: t.alias, RoutingConfig: { AdditionalVersionWeights: { '2': 0.2 } } }),
  );
  const res = await resultWithin(await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }), 60_000);
  expect({ state: res.state, reason: res.reason }).toEqual({
    state: 'failed',
    reason: 'us-east-1 already routes 20 % to version 2: another deployment is in progress',
  });
  expect(res.status.history.filter((e) => e.kind === 'stage').map((e) => e.text.split(':')[0])).toEqual(['stage preflight', 'stage done']);
  expect(writesTo(t.function)).toHaveLength(0);
  expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: { '2': 0.2 } });
  expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
});

test('a release the target already serves is refused at deploy: nothing published, no traffic moved', async () => {
  const spec = oneTarget('already-serves');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const first = await resultWithin(await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }), 90_000);
    expect({ state: first.state, reason: first.reason }).toEqual({ state: 'succeeded', reason: expect.any(String) });
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '2', weights: {} });
    // The same release (same artifact) again: the deploy finds version 2, which is what the alias serves.
    const from = h.proxy.calls.length;
    const aliases = watchAliasWrites(h.proxy);
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const stopped = await waitForStatus(handle, (st) => st.state !== 'running', 60_000, 'the second rollout to stop');
    expect({ state: stopped.state, reason: stopped.rollbackReason }).toEqual({
      state: 'paused',
      reason: 'us-east-1 already serves release r2 (version 2)',
    });
    expect(stopped.history.some((e) => e.text === 'us-east-1: found already published version 2 (stable 2)')).toBe(true);
    expect(stopped.history.some((e) => /^stage (verify|canary)/.test(e.text))).toBe(false);
    const fn = (spec.targets[0] as LambdaTargetSpec).function;
    // Nothing published, probed or moved (a revert to where the alias already is may still mark it).
    expect(writesTo(fn, from).filter((c) => !lambdaOp.updateAlias(fn)(c))).toHaveLength(0);
    aliases.stop();
    expect(aliases.forward(fn, '2')).toEqual([]);
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '2', weights: {} });
    expect(await publishedVersions(h.motoUrl, spec.targets[0])).toEqual(['1', '2']);
    await handle.signal(abortSignal);
    expect((await resultWithin(handle, 30_000)).state).toBe('rolled-back');
  } finally {
    traffic.stop();
  }
});

test('a failing health probe fails verify before traffic moves; the alert is retried until delivered', async () => {
  const spec = oneTarget('bad-probe');
  await createFunctions(h, spec);
  h.proxy.inject({
    match: (c) => lambdaOp.invoke('bad-probe-fn')(c) && c.path.includes('Qualifier=2'),
    action: { respond: () => ({ status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: '{"errorMessage":"boom"}' }) },
  });
  h.webhook.failNext(2, 503);
  const aliasWrites = watchAliasWrites(h.proxy);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  const paused = await waitForStatus(handle, (s) => s.state === 'paused', 60_000, 'paused after verify');
  aliasWrites.stop();
  expect(paused.rollbackReason).toMatch(/verify failed: us-east-1: probe health: function error Unhandled/);
  // No traffic moved: the one alias write is the revert's fence mark (version 1 alone, as before).
  expect(aliasWrites.forward('bad-probe-fn', '1')).toEqual([]);
  expect(aliasWrites.writes.filter((w) => w.fn === 'bad-probe-fn').map((w) => w.version)).toEqual(['1']);
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
  // Hashed with the worker's key (ROLLGATE_HASH_KEY): the hashes of "info" and "debug-verbose" under that salt.
  const hashed = (salt: string, v: string) => saltedHash(salt, 'LOG_LEVEL', v);
  expect(paused.rollbackReason).toContain(
    `env values changed (by hash): LOG_LEVEL ${hashed(h.deps.hashKey, 'info')}->${hashed(h.deps.hashKey, 'debug-verbose')}`,
  );
  expect(hashed('another-key', 'info')).not.toBe(hashed(h.deps.hashKey, 'info'));
  const text = await historyText(handle);
  for (const secret of ['hunter2-secret', 'debug-verbose']) expect(text).not.toContain(secret);
  expect(JSON.stringify(paused)).not.toContain('hunter2-secret');
  await handle.signal(abortSignal);
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
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
    // A fixed message (error name, reason, HTTP status), never the service's own text.
    expect(failed.detail).toMatch(
      // The deadline may fire while an attempt is in flight: then the server's timeout names the last error.
      /ROLLBACK FAILED for stuck-revert r2 after breach in canary: revert us-east-1: (Not enough time .*; last error: )?us-east-1: ServiceException: Lambda service error, HTTP 503 \(lambda us-east-1\/stuck-revert-fn\)/,
    );
    expect(failed.detail).not.toContain('bad day');
    // Retried for rollback.revert_retry_for (activity attempts, each with the SDK's own retries) before escalating.
    expect(h.proxy.count(lambdaOp.updateAlias('stuck-revert-fn'))).toBeGreaterThanOrEqual(1 + 6);
    const alert = await waitForAlert(h, 'stuck-revert');
    expect(alert.body.rollgate.event).toBe('rollback-failed');
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

test('a revert attempt still in flight when revert_retry_for runs out: the escalation names the error that kept failing', async () => {
  // The deadline then fires on the server's timer: the timeout has no cause, only heartbeat details.
  const spec = oneTarget('inflight-revert');
  spec.rollback.revert_retry_for = '6 seconds';
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2'); // canary breaches
  // Alias update 1 is the canary shift; 2-5 fail (revert attempts), from 6 on they hang past the deadline.
  let updates = 0;
  const isUpdate = lambdaOp.updateAlias('inflight-revert-fn');
  h.proxy.inject({
    match: (c) => isUpdate(c) && ++updates >= 2 && updates <= 5,
    times: 1000, // never exhausted, so this rule keeps counting
    action: { status: 503, errorType: 'ServiceException', message: 'Lambda is having a bad day' },
  });
  h.proxy.inject({ match: (c) => isUpdate(c) && updates >= 6, times: 1000, action: { delayMs: 15_000 } });
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const failed = await waitForStatus(handle, (s) => s.state === 'rollback-failed', 60_000, 'rollback-failed');
    expect(failed.detail).toMatch(
      /revert us-east-1: Not enough time .*; last error: us-east-1: ServiceException: Lambda service error, HTTP 503/,
    );
    expect(failed.detail).not.toContain('bad day');
    h.proxy.clearFaults();
    // abort in rollback-failed: the revert gets a last try, which now goes through.
    await handle.signal(abortSignal);
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: {} });
  } finally {
    traffic.stop();
  }
});

test('the same stage failing in 3 consecutive rollouts escalates in the alert', async () => {
  const alertsOf = () => h.webhook.received.filter((r) => r.body.rollgate.service === 'escalating').map((r) => r.body);
  for (let i = 1; i <= 3; i++) {
    const spec = oneTarget('escalating', { release: `r${i}`, test: { command: 'exit 1', shell: true } });
    if (i === 1) await createFunctions(h, spec);
    const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
    expect(res).toMatchObject({ state: 'failed', status: { failedStage: 'test' } });
    // The next rollout counts earlier failures from visibility, which lags: wait until it lists this run.
    const query = `WorkflowId = 'rollout-escalating' AND ExecutionStatus = 'Completed'`;
    const deadline = Date.now() + 30_000;
    while ((await h.client.workflow.count(query)).count < i && Date.now() < deadline) await sleep(100);
    expect((await h.client.workflow.count(query)).count).toBe(i);
  }
  const alerts = alertsOf();
  expect(alerts).toHaveLength(3);
  expect(alerts[0].text).toMatch(/^rollgate: escalating r1 failed in stage test before anything was deployed/);
  expect(alerts[1].rollgate.escalation).toBeUndefined();
  expect(alerts[2].rollgate.escalation).toBe('ESCALATION: stage test failed in 3 consecutive rollouts of escalating');
  expect(alerts[2].text).toMatch(/^ESCALATION: stage test failed in 3 consecutive rollouts of escalating\. rollgate: escalating r3 failed/);
});
