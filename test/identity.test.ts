/**
 * Verified identities end to end (issue 10, item 3): a worker with an OIDC verifier against a
 * loopback JWKS server, tokens signed in the test. Each bad token is refused with its reason, the
 * starter cannot approve, a user outside the approvers' group cannot, `min_approvals` counts
 * distinct verified people, a tokenless signal is ignored, and the token stays out of status and
 * of every history event except the two that carry the message itself.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { main } from '../src/cli/main';
import { awaitStarterCheck, startRollout } from '../src/client';
import { createIdentityVerifier, verifierConfigFromEnv } from '../src/identity/verifier';
import { abortSignal, approveUpdate, pauseSignal, pauseUpdate, rejectUpdate, resumeUpdate, type RolloutResult } from '../src/contract';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForAlert, waitForStatus, type Harness } from './support/harness';
import { issuerEnv, startTestIssuer, type TestIssuer } from './support/oidc';
import { recordHistory } from './support/history';

let h: Harness;
let idp: TestIssuer;
beforeAll(async () => {
  idp = await startTestIssuer();
  h = await createHarness('identity');
  await h.startWorker({ identityVerifier: createIdentityVerifier(verifierConfigFromEnv(issuerEnv(idp))!) });
});
afterAll(async () => {
  await h?.close();
  await idp?.close();
});

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    return ((err as Error).cause as Error).message;
  }
  throw new Error('expected a refusal');
}

function gatedSpec(service: string) {
  const base = lambdaSpec(h, service, { approvers: ['bob', 'group:release-managers'], min_approvals: 2 }, 2);
  return { ...base, waves: base.waves.map((w) => ({ ...w, approval: true })) };
}

/** The types of the history events whose payloads contain `needle`. */
async function eventsContaining(handle: WorkflowHandle, needle: string): Promise<string[]> {
  const history = await handle.fetchHistory();
  const found = new Set<string>();
  const walk = (v: unknown, type: string): void => {
    if (v instanceof Uint8Array) {
      if (Buffer.from(v).toString('utf8').includes(needle)) found.add(type);
    } else if (Array.isArray(v)) v.forEach((x) => walk(x, type));
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x, type);
    else if (typeof v === 'string' && v.includes(needle)) found.add(type);
  };
  for (const e of history.events ?? []) {
    const type = Object.keys(e).find((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k]) ?? 'unknown';
    walk(e, type);
  }
  return [...found].sort();
}

test('a start without a token, or with a bad one, is refused before anything runs', async () => {
  const none = gatedSpec('id-start-none');
  const h1 = await startRollout(h.client, none, { startedBy: 'alice', taskQueue: h.taskQueue });
  const r1 = (await h1.result()) as RolloutResult;
  expect(r1.state).toBe('failed');
  expect(r1.reason).toMatch(/^start refused: this rollout's worker verifies identities, and no token was sent/);
  expect(r1.status.targets.every((t) => t.stableVersion === undefined)).toBe(true); // not even the preflight ran

  const expired = gatedSpec('id-start-expired');
  const h2 = await startRollout(h.client, expired, {
    startedBy: 'alice',
    taskQueue: h.taskQueue,
    token: await idp.token('alice', { expiresIn: -120 }),
  });
  await expect(awaitStarterCheck(h.client, h2.workflowId, h2.firstExecutionRunId)).rejects.toThrow(
    /rollout id-start-expired was not started|rollout rollout-id-start-expired was not started: start refused: the token has expired/,
  );
});

test('approvals on verified identities: bad tokens, the starter, outsiders refused; min_approvals counts distinct people', async () => {
  const spec = gatedSpec('id-approvals');
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  // alice is in the approvers' group, so only the four-eyes rule keeps her from approving her own rollout.
  const aliceToken = await idp.token('alice', { groups: ['release-managers'] });
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'alice', taskQueue: h.taskQueue, token: aliceToken });
    expect(await awaitStarterCheck(h.client, handle.workflowId, handle.firstExecutionRunId)).toEqual({
      name: 'alice',
      subject: 'sub-alice',
      groups: ['release-managers'],
      verified: true,
    });
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 90_000, 'approval wait');
    const approve = async (token: string | undefined, by = 'bob') =>
      handle.executeUpdate(approveUpdate, { args: [{ by, ...(token ? { token } : {}) }] });

    expect(await refusal(approve(await idp.forge('bob')))).toMatch(/^approve refused: the token's signature does not verify/);
    expect(await refusal(approve(await idp.token('bob', { expiresIn: -120 })))).toMatch(/^approve refused: the token has expired/);
    expect(await refusal(approve(await idp.token('bob', { audience: 'other-app' })))).toMatch(
      /^approve refused: the token is for another audience \(expected rollgate\)/,
    );
    expect(await refusal(approve(await idp.token('bob', { issuer: 'https://evil.example/' })))).toMatch(
      /^approve refused: the token is from another issuer/,
    );
    // The starter, whatever name they give: the verified subject decides.
    expect(await refusal(approve(aliceToken, 'bob'))).toMatch(/alice started this rollout and cannot approve it \(four-eyes rule\)/);
    expect(await refusal(approve(await idp.token('carol', { groups: ['dev'] })))).toMatch(
      /carol is not an approver of id-approvals \(approvers: bob, group:release-managers; groups in the token: dev\)/,
    );
    expect(await refusal(approve(undefined))).toMatch(/approve refused: this rollout verifies identities and no token was sent/);
    expect(
      await refusal(handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'no', token: await idp.forge('bob') }] })),
    ).toMatch(/^reject refused: the token's signature does not verify/);
    // A tokenless signal (an older client) is recorded and ignored.
    await handle.signal(pauseSignal, { by: 'mallory' });
    const ignored = await waitForStatus(
      handle,
      (s) => s.history.some((e) => e.text.startsWith('ignored a pause signal from mallory')),
      20_000,
      'ignored signal',
    );
    expect(ignored.state).toBe('running');

    expect(await approve(await idp.token('bob'))).toBe('approved wave wave-1 (1 of 2 approvals)');
    expect(await refusal(approve(await idp.token('bob')))).toMatch(
      /bob already approved wave wave-1: min_approvals 2 counts distinct people/,
    );
    // Paused and resumed by a verified operator while the wave still waits.
    const daveToken = await idp.token('dave', { groups: ['release-managers'] });
    expect(await handle.executeUpdate(pauseUpdate, { args: [{ by: 'whoever', reason: 'checking', token: daveToken }] })).toBe('paused');
    expect(await handle.executeUpdate(resumeUpdate, { args: [{ token: daveToken }] })).toBe('resumed');
    expect(await approve(daveToken, 'not-dave')).toBe('approved wave wave-1');

    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    await recordHistory(handle, 'rollout-v2-verified-identities');
    expect(res.status.starter).toMatchObject({ name: 'alice', verified: true });
    expect(res.status.approvals).toEqual([
      { wave: 'wave-1', by: 'bob', decision: 'approved', verified: true, subject: 'sub-bob' },
      { wave: 'wave-1', by: 'dave', decision: 'approved', verified: true, subject: 'sub-dave' },
    ]);
    const texts = res.status.history.map((e) => e.text);
    expect(texts).toEqual(
      expect.arrayContaining([
        'started by alice',
        'bob approved wave wave-1 (1 of 2)',
        'paused by dave: checking',
        'resumed by dave',
        'dave approved wave wave-1',
      ]),
    );
    // The tokens never reach status or history entries; in workflow history only the events
    // that carry the messages themselves hold them (see docs/security-identities.md).
    expect(JSON.stringify(res.status)).not.toContain(aliceToken);
    expect(JSON.stringify(res.status)).not.toContain(daveToken);
    // alice's token: the start, and her refused approval (an update accepted by its validator is
    // recorded); each message's token also in the input of its checkIdentity activity (a regular
    // activity since patch rollout-no-local-activities: docs/DEVELOPMENT.md, "Local activities and replay").
    expect(await eventsContaining(handle, aliceToken)).toEqual([
      'activityTaskScheduledEventAttributes',
      'workflowExecutionStartedEventAttributes',
      'workflowExecutionUpdateAcceptedEventAttributes',
    ]);
    expect(await eventsContaining(handle, daveToken)).toEqual([
      'activityTaskScheduledEventAttributes',
      'workflowExecutionUpdateAcceptedEventAttributes',
    ]);
  } finally {
    traffic.stop();
  }
});

/** The CLI in-process (as test/cli.test.ts runs it): exit code and output. */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  const l = jest.spyOn(console, 'log').mockImplementation((...a) => void (out += `${a.join(' ')}\n`));
  process.exitCode = undefined;
  try {
    return { code: await main(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
    process.exitCode = undefined;
  }
}

test('the CLI: --token and ROLLGATE_TOKEN carry the token; refusals exit 1 with the reason', async () => {
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
  const spec = gatedSpec('id-cli');
  const file = join(h.workDir, 'id-cli.json');
  writeFileSync(file, JSON.stringify(spec));
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  const id = 'rollout-id-cli';
  try {
    // A start with an expired token: refused, and `start` says so.
    const expired = await cli('start', file, '--task-queue', h.taskQueue, '--token', await idp.token('alice', { expiresIn: -60 }));
    expect(expired).toMatchObject({ code: 1, err: expect.stringMatching(/was not started: start refused: the token has expired/) });
    expect(await cli('start', file, '--task-queue', h.taskQueue, '--token', await idp.token('alice'))).toMatchObject({
      code: 0,
      out: `${id}\n`,
    });
    const handle = h.client.workflow.getHandle(id);
    await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 90_000, 'approval wait');
    expect(await cli('approve', id, '--by', 'bob', '--token', await idp.forge('bob'))).toMatchObject({
      code: 1,
      err: expect.stringMatching(/refused: approve refused: the token's signature does not verify/),
    });
    expect(await cli('pause', id, '--by', 'bob', '--token', await idp.token('bob', { audience: 'x' }))).toMatchObject({
      code: 1,
      err: expect.stringMatching(/refused: pause refused: the token is for another audience/),
    });
    process.env.ROLLGATE_TOKEN = await idp.token('bob');
    try {
      expect(await cli('pause', id, '--reason', 'lunch')).toMatchObject({ code: 0, out: `${id}: paused\n` });
      expect(await cli('resume', id)).toMatchObject({ code: 0, out: `${id}: resumed\n` });
      expect(await cli('approve', id)).toMatchObject({ code: 0, out: `${id}: approved wave wave-1 (1 of 2 approvals)\n` });
    } finally {
      delete process.env.ROLLGATE_TOKEN;
    }
    // Without a token the CLI sends the old signal, which this rollout ignores (and records).
    expect(await cli('abort', id, '--by', 'mallory')).toMatchObject({ code: 0, out: `${id}: abort sent\n` });
    await waitForStatus(handle, (s) => s.history.some((e) => e.text.startsWith('ignored a abort signal from mallory')), 20_000, 'ignored');
    expect(await cli('abort', id, '--token', await idp.token('dave', { groups: ['release-managers'] }), '--reason', 'done')).toMatchObject({
      code: 0,
      out: `${id}: abort requested\n`,
    });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('aborted');
    expect(res.reason).toMatch(/aborted by dave: done/);
    expect(res.status.history.map((e) => e.text)).toEqual(
      expect.arrayContaining(['started by alice', 'paused by bob: lunch', 'resumed by bob', 'abort requested by dave: done']),
    );
  } finally {
    traffic.stop();
  }
});

test('without a verifier (the default) --by still works and status, history and alerts mark each identity unverified', async () => {
  const plain = await createHarness('identity-plain');
  await plain.startWorker();
  try {
    const base = lambdaSpec(plain, 'id-plain', { approvers: ['bob', 'group:release-managers'] }, 2);
    const spec = { ...base, waves: base.waves.map((w) => ({ ...w, approval: true })) };
    await createFunctions(plain, spec);
    const traffic = simulateTraffic(plain, spec);
    try {
      const handle = await startRollout(plain.client, spec, { startedBy: 'carol', taskQueue: plain.taskQueue });
      await waitForStatus(handle, (s) => s.awaitingApproval === 'wave-1', 90_000, 'approval wait');
      // A group entry never matches a name nobody checked.
      expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'release-managers' }] }))).toMatch(
        /release-managers is not an approver of id-plain \(approvers: bob, group:release-managers; groups need a verified token\)/,
      );
      expect(await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'no' }] })).toBe('rejected wave wave-1');
      const alert = await waitForAlert(plain, spec.service, 30_000);
      expect(alert.body.text).toMatch(/wave wave-1 rejected by bob: no \(bob: identity unverified\)\. Reverted/);
      const s = await waitForStatus(handle, (x) => x.state === 'paused' && x.pausedAfterRollback === true, 30_000, 'paused');
      expect(s.starter).toEqual({ name: 'carol', verified: false });
      expect(s.approvals).toEqual([{ wave: 'wave-1', by: 'bob', decision: 'rejected', reason: 'no' }]);
      expect(s.history.map((e) => e.text)).toEqual(
        expect.arrayContaining(['started by carol (unverified)', 'bob rejected wave wave-1: no (unverified)']),
      );
      await handle.signal(abortSignal, { by: 'carol' });
      const res = (await handle.result()) as RolloutResult;
      expect(res.status.history.map((e) => e.text)).toContain('abort requested by carol (unverified)');
    } finally {
      traffic.stop();
    }
  } finally {
    await plain.close();
  }
});
