import { recordHistory } from './support/history';
/** Freeze windows hold traffic steps durably; services sharing a dependency never shift traffic together. */
import { startRollout } from '../src/client';
import { lambdaOp, type RecordedCall } from '../src/dev/fault-proxy';
import { abortSignal, dependencyLockWorkflowId, lockStateQuery, type LockState, type RolloutResult } from '../src/contract';
import { aliasState, watchAliasWrites } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness, resultWithin } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('coord');
  await h.startWorker();
});
afterAll(async () => h?.close());

const utcLocal = (ms: number) => new Date(ms).toISOString().slice(0, 19);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The lock workflow's own view of a dependency (holder and waiters), polled until `pred` holds. */
async function lockStateUntil(dependency: string, pred: (s: LockState) => boolean, what: string, timeoutMs = 15_000): Promise<LockState> {
  const lock = h.client.workflow.getHandle(dependencyLockWorkflowId(dependency));
  const deadline = Date.now() + timeoutMs;
  let last: LockState | undefined;
  for (;;) {
    last = await lock.query(lockStateQuery).catch(() => last);
    if (last && pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last lock state: ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

test('a rollout reaching a traffic step inside a freeze window waits, shows "frozen until", then proceeds', async () => {
  const now = Date.now();
  // Long enough that the rollout reaches its first traffic step inside the window even on a loaded machine.
  const until = Math.ceil((now + 12_000) / 1000) * 1000;
  const spec = lambdaSpec(h, 'frozen', {
    freeze_windows: [{ name: 'maintenance', timezone: 'UTC', from: utcLocal(now - 60_000), to: utcLocal(until) }],
  });
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const frozen = await waitForStatus(handle, (s) => /frozen until/.test(s.detail), 30_000, 'frozen');
    expect(frozen.detail).toBe(`frozen until ${new Date(until).toISOString()} (freeze window maintenance)`);
    expect(frozen.stage).toBe('canary');
    expect(await aliasState(h.motoUrl, spec.targets[0])).toEqual({ version: '1', weights: {} });
    const res = (await handle.result()) as RolloutResult;
    expect(res.state).toBe('succeeded');
    await recordHistory(handle, 'rollout-v2-freeze-wait');
    const firstShift = h.proxy.calls.find((c) => lambdaOp.updateAlias('frozen-fn')(c))!;
    expect(firstShift.atMs).toBeGreaterThanOrEqual(until);
  } finally {
    traffic.stop();
  }
});

test('an abort during a freeze wait ends the wait at once: closed as aborted, no traffic moved', async () => {
  const now = Date.now();
  const spec = lambdaSpec(h, 'frozen-abort', {
    freeze_windows: [{ name: 'change-freeze', timezone: 'UTC', from: utcLocal(now - 60_000), to: utcLocal(now + 10 * 60_000) }],
  });
  await createFunctions(h, spec);
  const aliases = watchAliasWrites(h.proxy);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(handle, (s) => /frozen until .* \(freeze window change-freeze\)/.test(s.detail), 60_000, 'frozen');
  await handle.signal(abortSignal, { by: 'carol' });
  // The window lasts ten more minutes: only the abort can have ended the wait.
  const res = await resultWithin(handle, 30_000);
  expect({ state: res.state, reason: res.reason }).toEqual({ state: 'aborted', reason: 'aborted by carol' });
  for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
  aliases.stop();
  expect(aliases.forward('frozen-abort-fn', '1')).toEqual([]);
});

test('an abort while queued for a dependency lock: closed, taken off the lock queue, no traffic moved', async () => {
  const a = lambdaSpec(h, 'dep-e', {
    shared_dependencies: ['inventory-db'],
    canary: { targets: ['us-east-1'], weight: 10, bake: '60 seconds' },
  });
  const b = lambdaSpec(h, 'dep-f', { shared_dependencies: ['inventory-db'] });
  await createFunctions(h, a);
  await createFunctions(h, b);
  const ta = simulateTraffic(h, a);
  const aliases = watchAliasWrites(h.proxy);
  try {
    const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(ha, (s) => s.stage === 'canary', 30_000, 'e in canary, holding the lock');
    const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(hb, (s) => /waiting for shared dependency inventory-db/.test(s.detail), 30_000, 'f waiting');
    // The lock itself has f queued behind e (so its absence below is not vacuous).
    const queued = await lockStateUntil('inventory-db', (l) => l.waiting.includes('rollout-dep-f'), 'f queued');
    expect(queued.holder).toBe('rollout-dep-e');

    await hb.signal(abortSignal, { by: 'carol' });
    const rb = await resultWithin(hb, 30_000);
    expect({ state: rb.state, reason: rb.reason }).toEqual({ state: 'aborted', reason: 'aborted by carol' });
    expect(rb.status.history.some((e) => /holding shared dependency/.test(e.text))).toBe(false);
    const after = await lockStateUntil('inventory-db', (l) => !l.waiting.includes('rollout-dep-f'), 'f off the queue');
    expect(after).toMatchObject({ holder: 'rollout-dep-e', waiting: [] });
    // Taken off by its own release (not left for the lock's liveness check to find): f's run sent lockRelease.
    const lockHistory = await h.client.workflow.getHandle(dependencyLockWorkflowId('inventory-db')).fetchHistory();
    const releases = (lockHistory.events ?? [])
      .map((e) => e.workflowExecutionSignaledEventAttributes)
      .filter((a) => a?.signalName === 'lockRelease')
      .map(
        (a) => JSON.parse(Buffer.from(a!.input!.payloads![0].data!).toString('utf8')) as { holder: string; runId?: string; nonce?: string },
      );
    // With the nonce it was queued with: the only release the lock accepts for that entry.
    expect(releases).toContainEqual({ holder: 'rollout-dep-f', runId: (await hb.describe()).runId, nonce: expect.any(String) });
    expect(aliases.forward('dep-f-fn', '1')).toEqual([]);
    expect(aliases.forward('dep-e-fn', '1')).toEqual([expect.objectContaining({ version: '1', weights: { '2': 0.1 } })]); // e's canary: seen
    for (const t of b.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });

    await ha.signal(abortSignal, { by: 'carol' });
    expect((await resultWithin(ha, 30_000)).state).toBe('aborted');
  } finally {
    aliases.stop();
    ta.stop();
  }
});

test('two services sharing a dependency: the second waits visibly until the first finishes', async () => {
  const a = lambdaSpec(h, 'dep-a', {
    shared_dependencies: ['orders-db'],
    canary: { targets: ['us-east-1'], weight: 10, bake: '3 seconds' },
  });
  const b = lambdaSpec(h, 'dep-b', { shared_dependencies: ['orders-db'] });
  await createFunctions(h, a);
  await createFunctions(h, b);
  const ta = simulateTraffic(h, a);
  const tb = simulateTraffic(h, b);
  try {
    const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(ha, (s) => s.stage === 'canary', 30_000, 'a in canary');
    const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
    const waiting = await waitForStatus(hb, (s) => /waiting for shared dependency orders-db/.test(s.detail), 30_000, 'b waiting');
    expect(waiting.state).toBe('running');
    expect(await aliasState(h.motoUrl, b.targets[0])).toEqual({ version: '1', weights: {} });

    const ra = (await ha.result()) as RolloutResult;
    const rb = (await hb.result()) as RolloutResult;
    await recordHistory(hb, 'rollout-v2-dependency-lock-wait');
    expect([ra.state, rb.state]).toEqual(['succeeded', 'succeeded']);
    const lastA = Math.max(...h.proxy.calls.filter(lambdaOp.updateAlias('dep-a-fn')).map((c) => c.atMs));
    const firstB = Math.min(...h.proxy.calls.filter(lambdaOp.updateAlias('dep-b-fn')).map((c) => c.atMs));
    expect(firstB).toBeGreaterThan(lastA);
  } finally {
    ta.stop();
    tb.stop();
  }
});

test('a rollout that rolls back releases the dependency: the next one waited, and moved traffic only after the revert', async () => {
  // One target for c: its alias writes are exactly the canary shift and the revert.
  const a = lambdaSpec(
    h,
    'dep-c',
    {
      shared_dependencies: ['queue-1'],
      canary: { targets: ['us-east-1'], weight: 10, bake: '60 seconds' },
      waves: [],
      rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' },
    },
    1,
  );
  const b = lambdaSpec(h, 'dep-d', { shared_dependencies: ['queue-1'] });
  await createFunctions(h, a);
  await createFunctions(h, b);
  let broken = false;
  const ta = simulateTraffic(h, a, (_t, v) => broken && v === '2'); // a's canary breaches once b waits
  const tb = simulateTraffic(h, b);
  // a's revert (its second alias write) takes 3 s to land: d must not move traffic meanwhile.
  let aShifts = 0;
  h.proxy.inject({ match: (c) => lambdaOp.updateAlias('dep-c-fn')(c) && ++aShifts === 2, action: { delayMs: 3_000 } });
  const answered: { atMs: number; fn: string }[] = [];
  const observer = (c: RecordedCall) => {
    if (lambdaOp.updateAlias('dep-c-fn')(c)) answered.push({ atMs: Date.now(), fn: 'dep-c-fn' });
  };
  h.proxy.observers.push(observer);
  try {
    const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(ha, (s) => s.stage === 'canary', 30_000, 'c in canary');
    const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
    const waiting = await waitForStatus(hb, (s) => /waiting for shared dependency queue-1/.test(s.detail), 30_000, 'd waiting');
    expect(waiting.state).toBe('running');
    broken = true;
    await waitForStatus(ha, (s) => s.state === 'paused', 30_000, 'c paused after breach');
    const rb = (await resultWithin(hb, 90_000)) as RolloutResult;
    expect(rb.state).toBe('succeeded');
    const text = rb.status.history.map((e) => e.text);
    expect(text.indexOf('waiting for shared dependency queue-1')).toBeGreaterThanOrEqual(0);
    expect(text.indexOf('holding shared dependency queue-1')).toBeGreaterThan(text.indexOf('waiting for shared dependency queue-1'));
    // a's alias writes: the canary shift and the (held) revert; d's first alias write comes after the revert landed.
    expect(h.proxy.calls.filter(lambdaOp.updateAlias('dep-c-fn'))).toHaveLength(2);
    expect(answered).toHaveLength(2);
    const firstB = h.proxy.calls.find(lambdaOp.updateAlias('dep-d-fn'))!;
    expect(firstB.atMs).toBeGreaterThan(answered[1].atMs);
    await ha.signal(abortSignal);
    expect(((await resultWithin(ha, 30_000)) as RolloutResult).state).toBe('rolled-back');
  } finally {
    h.proxy.observers.splice(h.proxy.observers.indexOf(observer), 1);
    h.proxy.clearFaults();
    ta.stop();
    tb.stop();
  }
});
