import { recordHistory } from './support/history';
/** Freeze windows hold traffic steps durably; services sharing a dependency never shift traffic together. */
import { startRollout } from '../src/client';
import { lambdaOp } from '../src/dev/fault-proxy';
import type { RolloutResult } from '../src/workflows/messages';
import { aliasState } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('coord');
  await h.startWorker();
});
afterAll(async () => h?.close());

const utcLocal = (ms: number) => new Date(ms).toISOString().slice(0, 19);

test('a rollout reaching a traffic step inside a freeze window waits, shows "frozen until", then proceeds', async () => {
  const now = Date.now();
  const until = Math.ceil((now + 5000) / 1000) * 1000;
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

test('a rollout that rolls back releases the dependency for the next one', async () => {
  const a = lambdaSpec(h, 'dep-c', { shared_dependencies: ['queue-1'] });
  const b = lambdaSpec(h, 'dep-d', { shared_dependencies: ['queue-1'] });
  await createFunctions(h, a);
  await createFunctions(h, b);
  const ta = simulateTraffic(h, a, (_t, v) => v === '2'); // a's canary breaches
  const tb = simulateTraffic(h, b);
  try {
    const ha = await startRollout(h.client, a, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(ha, (s) => s.stage === 'canary', 30_000, 'c in canary');
    const hb = await startRollout(h.client, b, { startedBy: 'carol', taskQueue: h.taskQueue });
    await waitForStatus(ha, (s) => s.state === 'paused', 30_000, 'c paused after breach');
    expect(((await hb.result()) as RolloutResult).state).toBe('succeeded');
    await ha.signal('abort');
    expect(((await ha.result()) as RolloutResult).state).toBe('rolled-back');
  } finally {
    ta.stop();
    tb.stop();
  }
});
