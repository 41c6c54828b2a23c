/** The rollgate CLI against the real dev server: exit codes, --json shapes, operator commands. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main';
import { lambdaOp } from '../src/dev/fault-proxy';
import { validateSpec } from '../src/spec/validate';
import type { RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import { abortSignal, resumeSignal, type RolloutResult } from '../src/contract';
import { aliasState, publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('cli');
  await h.startWorker();
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
});
afterAll(async () => h?.close());

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  const l = jest.spyOn(console, 'log').mockImplementation((...a) => void (out += `${a.join(' ')}\n`));
  process.exitCode = undefined;
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
    process.exitCode = undefined;
  }
}

test('operator workflow through the CLI', async () => {
  const base = lambdaSpec(h, 'cli-svc');
  const spec = { ...base, waves: base.waves.map((w, i) => (i === 0 ? { ...w, approval: true } : w)) };
  const file = join(h.workDir, 'cli-svc.json');
  writeFileSync(file, JSON.stringify(spec));
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    expect(await run('validate', file)).toMatchObject({ code: 0, out: expect.stringContaining('ok (cli-svc r2, 3 target(s), 2 wave(s))') });
    const plan = await run('plan', file);
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(/wave:wave-1\s+wait for approval \(alice, bob\)/);
    expect(plan.out).toMatch(/minimum duration 5s \(bakes only; plus 1 approval\(s\)/);

    const started = await run('start', file, '--by', 'carol', '--task-queue', h.taskQueue, '--json');
    expect(started.code).toBe(0);
    const id = JSON.parse(started.out).id;
    expect(id).toBe('rollout-cli-svc');

    // Wait for the approval gate, reading status --json like a script would.
    let status: any;
    for (let i = 0; i < 200; i++) {
      const r = await run('status', id, '--json');
      expect(r.code).toBe(0);
      status = JSON.parse(r.out);
      if (status.awaitingApproval) break;
      await new Promise((res) => setTimeout(res, 150));
    }
    expect(status).toMatchObject({ id, service: 'cli-svc', release: 'r2', state: 'running', stage: 'wave:wave-1' });
    expect(status.targets[0]).toMatchObject({ name: 'us-east-1', stableVersion: '1', newVersion: '2', weight: 10 });
    for (const t of status.targets)
      expect(Object.keys(t)).toEqual(expect.arrayContaining(['name', 'stableVersion', 'newVersion', 'weight']));

    const refused = await run('approve', id, '--by', 'carol');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^rollgate: refused: carol is not an approver of cli-svc/);
    expect((await run('approve', id)).code).toBe(2); // missing --by

    expect((await run('pause', id, '--by', 'carol')).code).toBe(0);
    expect((await run('resume', id, '--by', 'carol')).code).toBe(0);
    expect(await run('approve', id, '--by', 'bob', '--comment', 'lgtm')).toMatchObject({
      code: 0,
      out: expect.stringContaining('approved wave wave-1'),
    });

    const watched = await run('watch', id, '--json', '--interval', '200');
    expect(watched.code).toBe(0);
    const lines = watched.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[lines.length - 1]).toMatchObject({ state: 'succeeded', stage: 'done' });

    const history = await run('history', id);
    expect(history.out).toMatch(/approval\s+bob approved wave wave-1: lgtm/);
    expect(history.out).toMatch(/operator\s+paused by carol/);

    let listed: any[] = [];
    for (let i = 0; i < 50 && listed.length === 0; i++) {
      listed = JSON.parse((await run('list', '--service', 'cli-svc', '--state', 'succeeded', '--json')).out);
      if (!listed.length) await new Promise((res) => setTimeout(res, 200));
    }
    expect(listed[0]).toMatchObject({ id, service: 'cli-svc', release: 'r2', state: 'succeeded', stage: 'done' });
    expect((await run('retry', id)).code).toBe(1);
  } finally {
    traffic.stop();
  }
});

test('reject, retry and abort through the CLI on a paused pipeline', async () => {
  const base = lambdaSpec(h, 'cli-paused', {}, 2);
  const spec = validateSpec({ ...JSON.parse(JSON.stringify(base)), waves: base.waves.map((w) => ({ ...w, approval: true })) });
  const file = join(h.workDir, 'cli-paused.json');
  writeFileSync(file, JSON.stringify(spec));
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  const id = 'rollout-cli-paused';
  const handle = h.client.workflow.getHandle(id);
  const expectStable = async () => {
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  };
  try {
    expect((await run('start', file, '--by', 'carol', '--task-queue', h.taskQueue)).code).toBe(0);
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 60_000, 'approval gate');
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: { '2': 0.1 } });

    // reject: the canary is reverted and the pipeline pauses.
    expect(await run('reject', id, '--by', 'bob', '--reason', 'not on a Friday')).toMatchObject({
      code: 0,
      out: `${id}: rejected wave wave-1\n`,
    });
    const paused = await waitForStatus(handle, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 30_000, 'paused');
    expect(paused.rollbackReason).toBe('wave wave-1 rejected by bob: not on a Friday');
    await expectStable();
    const status = await run('status', id, '--json');
    expect(JSON.parse(status.out)).toMatchObject({ state: 'paused', stage: 'rollback' });
    // Nothing waits for an approval now: a second reject is refused.
    const again = await run('reject', id, '--by', 'bob', '--reason', 'twice');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/not waiting for an approval/);

    // retry: from the canary again, with the version already published; back at the gate.
    expect(await run('retry', id, '--by', 'carol')).toMatchObject({ code: 0, out: `${id}: retrying from the canary\n` });
    const retried = await waitForStatus(handle, (s) => s.state === 'running' && s.awaitingApproval === 'wave-1', 60_000, 'gate again');
    expect(retried.history.some((e) => e.text === 'us-east-1: found already published version 2 (stable 1)')).toBe(true);
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: { '2': 0.1 } });
    for (const t of spec.targets) expect(await publishedVersions(h.motoUrl, t)).toEqual(['1', '2']);
    expect((await run('reject', id, '--by', 'alice', '--reason', 'still no')).code).toBe(0);
    await waitForStatus(handle, (s) => s.state === 'paused' && s.pausedAfterRollback === true, 30_000, 'paused again');
    // The state says paused before the rolled-back alert goes out; an abort sent during the alert is
    // acted on after it, so `watch` could still see the open pipeline. Wait for the second alert.
    await waitForStatus(
      handle,
      (s) => s.history.filter((e) => e.kind === 'alert' && e.text.startsWith('rolled-back alert')).length >= 2,
      30_000,
      'second rolled-back alert',
    );

    // abort on the paused pipeline: closed as rolled back (exit 3 from watch), everything stable.
    expect(await run('abort', id, '--by', 'carol')).toMatchObject({ code: 0, out: `${id}: abort sent\n` });
    // A signal is not processed at once: until it is, watch rightly reports the still-open paused pipeline.
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    const watched = await run('watch', id, '--interval', '200', '--timeout', '1m');
    expect(watched.code).toBe(3);
    expect(watched.out).toMatch(
      /rollout-cli-paused: rolled-back: rolled back and closed: wave wave-1 rejected by alice: still no \[exit 3\]\n$/,
    );
    await expectStable();
    // Closed: abort and retry are refused.
    expect(await run('abort', id, '--by', 'carol')).toMatchObject({
      code: 1,
      err: expect.stringMatching(/rollout rollout-cli-paused is closed/),
    });
    expect((await run('retry', id)).code).toBe(1);
  } finally {
    traffic.stop();
  }
});

test('errors: unknown rollout, bad state filter, unreadable spec', async () => {
  const r = await run('status', 'rollout-nope');
  expect(r).toMatchObject({ code: 1, err: 'rollgate: no rollout with id rollout-nope\n' });
  expect((await run('list', '--state', 'sleeping')).code).toBe(2);
  const missing = await run('validate', '/nonexistent.yaml');
  expect(missing.code).toBe(2);
  expect(missing.err).toMatch(/\(file\): cannot read \/nonexistent.yaml: ENOENT/);
});

// ---- start --wait / watch outcomes and their exit codes ------------------------------------

/** A one-target spec (canary only) written to a file for the CLI. */
function oneTargetSpec(service: string, over: Partial<RolloutSpecInput> = {}): { spec: RolloutSpec; file: string } {
  const spec = validateSpec({ ...JSON.parse(JSON.stringify(lambdaSpec(h, service, {}, 1))), waves: [], ...over });
  const file = join(h.workDir, `${service}.json`);
  writeFileSync(file, JSON.stringify(spec));
  return { spec, file };
}

const startArgs = (file: string) => [file, '--by', 'carol', '--task-queue', h.taskQueue];

test('a breach: start --wait ends with exit 3 once the pipeline pauses after the rollback; watch too, open or closed', async () => {
  const { spec, file } = oneTargetSpec('cli-breach');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2');
  try {
    const started = await run('start', ...startArgs(file), '--wait', '--json');
    expect(started.code).toBe(3);
    const res = JSON.parse(started.out);
    expect(res).toMatchObject({ id: 'rollout-cli-breach', outcome: 'rolled-back', exitCode: 3, open: true, state: 'paused' });
    expect(res.status).toMatchObject({ state: 'paused', stage: 'rollback' });
    expect(res.reason).toMatch(/^rolled back, pipeline paused: .*error rate.*`rollgate resume rollout-cli-breach` retries/);
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: {} });

    const watched = await run('watch', 'rollout-cli-breach', '--interval', '200');
    expect(watched.code).toBe(3);
    expect(watched.out).toMatch(/state=paused\s+stage=rollback/);
    expect(watched.out).toMatch(/rollout-cli-breach: rolled-back \(rollout still open\): rolled back, pipeline paused: .* \[exit 3\]\n$/);

    // abort closes it as rolled-back: same code.
    const handle = h.client.workflow.getHandle('rollout-cli-breach');
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    const closed = await run('watch', 'rollout-cli-breach', '--json');
    expect(closed.code).toBe(3);
    expect(JSON.parse(closed.out.trim().split('\n').pop()!)).toMatchObject({ state: 'rolled-back' });
    expect(closed.err).toMatch(/^rollout-cli-breach: rolled-back: rolled back and closed: .* \[exit 3\]\n$/);
  } finally {
    traffic.stop();
  }
});

test('a revert that keeps failing: start --wait and watch end with exit 4 (rollback-failed)', async () => {
  // Reverts escalate after 10 s of failures here (default 3 minutes).
  const { spec, file } = oneTargetSpec('cli-stuck', {
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, revert_retry_for: '10 seconds' },
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec, (_t, v) => v === '2');
  // The canary shift goes through; every later alias update (the revert) fails.
  let shifted = false;
  h.proxy.inject({
    match: (c) => lambdaOp.updateAlias('cli-stuck-fn')(c) && (shifted ? true : ((shifted = true), false)),
    times: 1000,
    action: { status: 503, errorType: 'ServiceException', message: 'Lambda is having a bad day' },
  });
  try {
    const started = await run('start', ...startArgs(file), '--wait', '--timeout', '3m');
    expect(started.code).toBe(4);
    expect(started.out).toMatch(
      /rollout-cli-stuck: rollback-failed \(rollout still open\): a revert failed, targets may still serve the new version: .*`rollgate resume rollout-cli-stuck` \(retry the revert\).* \[exit 4\]/,
    );
    const watched = await run('watch', 'rollout-cli-stuck', '--json');
    expect(watched.code).toBe(4);
    expect(JSON.parse(watched.out.trim().split('\n').pop()!)).toMatchObject({ state: 'rollback-failed' });

    // Fixed: resume retries the revert, the pipeline pauses: exit 3 from then on.
    h.proxy.clearFaults();
    const handle = h.client.workflow.getHandle('rollout-cli-stuck');
    await handle.signal(resumeSignal, { by: 'carol' });
    expect((await run('watch', 'rollout-cli-stuck', '--interval', '200', '--timeout', '1m')).code).toBe(3);
    await handle.signal(abortSignal, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    h.proxy.clearFaults();
    traffic.stop();
  }
});

test('start --wait: 0 when promoted, 6 when a stage fails before any traffic moves', async () => {
  const ok = oneTargetSpec('cli-ok');
  await createFunctions(h, ok.spec);
  const traffic = simulateTraffic(h, ok.spec);
  try {
    const r = await run('start', ...startArgs(ok.file), '--wait', '--timeout', '2m');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/rollout-cli-ok: succeeded: release r2 promoted on 1 target\(s\) \[exit 0\]\n$/);
  } finally {
    traffic.stop();
  }
  const bad = oneTargetSpec('cli-red-tests', { test: { command: 'exit 1', shell: true } });
  const r = await run('start', ...startArgs(bad.file), '--wait', '--json');
  expect(r.code).toBe(6);
  expect(JSON.parse(r.out)).toMatchObject({ outcome: 'failed', exitCode: 6, open: false, state: 'failed' });
});

test('approval gate and operator pause keep watch waiting (timeout 7) unless --exit-on-approval (8); abort is 5', async () => {
  const base = lambdaSpec(h, 'cli-gate', {}, 2);
  const spec = validateSpec({ ...JSON.parse(JSON.stringify(base)), waves: base.waves.map((w) => ({ ...w, approval: true })) });
  const file = join(h.workDir, 'cli-gate.json');
  writeFileSync(file, JSON.stringify(spec));
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    expect((await run('start', ...startArgs(file), '--timeout', '5m')).code).toBe(2); // --timeout needs --wait
    expect((await run('start', ...startArgs(file), '--wait', '--timeout', 'soon')).code).toBe(2);
    const approval = await run('start', ...startArgs(file), '--wait', '--exit-on-approval', '--json');
    expect(approval.code).toBe(8);
    expect(JSON.parse(approval.out)).toMatchObject({ outcome: 'awaiting-approval', open: true, status: { awaitingApproval: 'wave-1' } });
    const id = 'rollout-cli-gate';
    expect((await run('watch', id, '--exit-on-approval')).out).toMatch(
      /awaiting-approval .*`rollgate approve rollout-cli-gate --by NAME` \(approvers: alice, bob\) \[exit 8\]/,
    );

    const t0 = Date.now();
    const waited = await run('watch', id, '--timeout', '1500ms', '--interval', '200');
    expect(waited.code).toBe(7);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(waited.out).toMatch(
      /rollout-cli-gate: timeout \(rollout still open\): still running in stage wave:wave-1 .*the rollout goes on \[exit 7\]/,
    );

    expect((await run('pause', id, '--by', 'carol')).code).toBe(0);
    const paused = await run('watch', id, '--timeout', '1s', '--interval', '200');
    expect(paused.code).toBe(7);
    expect(paused.out).toMatch(/timeout \(rollout still open\): still paused in stage wave:wave-1/);

    expect((await run('abort', id, '--by', 'carol')).code).toBe(0);
    const aborted = await run('watch', id, '--interval', '200', '--timeout', '1m');
    expect(aborted.code).toBe(5);
    expect(aborted.out).toMatch(/rollout-cli-gate: aborted: aborted by carol \[exit 5\]\n$/);
    await waitForStatus(h.client.workflow.getHandle(id), (s) => s.state === 'aborted');
  } finally {
    traffic.stop();
  }
});

test('--help documents the exit codes and when start --wait / watch end', async () => {
  for (const args of [['--help'], ['start', '--help'], ['watch', '--help']]) {
    const r = await run(...args);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Exit codes:');
    for (const line of [
      '0  ok',
      '3  rolled back',
      '4  rollback failed',
      '5  aborted',
      '6  failed',
      '7  --timeout elapsed',
      '8  waiting for an approval',
    ])
      expect(r.out).toContain(`  ${line}`);
  }
  expect((await run('watch', '--help')).out).toMatch(/An operator's pause keeps them waiting/);
});

test('the installed bin runs (npx rollgate)', () => {
  const r = spawnSync(process.execPath, [join(__dirname, '..', 'bin', 'rollgate.js'), '--help'], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  for (const cmd of [
    'validate',
    'start',
    'status',
    'approve',
    'reject',
    'pause',
    'resume',
    'abort',
    'worker',
    'runner',
    'plan',
    'watch',
    'list',
    'history',
    'retry',
  ])
    expect(r.stdout).toContain(cmd);
});
