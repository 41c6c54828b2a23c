/**
 * Fleet failover of a `reads` activity (patch `rollgate-fast-failover`): the worker running
 * `recordRelease` (a TagResource held by the fault proxy) is SIGKILLed while a second worker
 * polls; the activity's retry starts on the second worker within seconds. Before the patch
 * `reads` had no heartbeat and a 2-minute start-to-close, so the retry came 2 minutes after the
 * attempt had started (fault-schedule seeds 1010, 1018, 1028, 1039).
 */
import type { ChildProcess } from 'node:child_process';
import { LambdaClient, ListTagsCommand, GetFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { temporal } from '@temporalio/proto';
import { msToNumber } from '@temporalio/common';
import { startRollout } from '../src/client';
import { FAILOVER_HEARTBEAT_TIMEOUT } from '../src/workflows/activity-options';
import type { RolloutResult } from '../src/contract';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { RecordedCall } from '../src/dev/fault-proxy';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { startChildWorker, sigkill } from './support/child-worker';
import { aliasState } from './support/lambda';
import { recordHistory } from './support/history';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, type Harness } from './support/harness';

const { EventType } = temporal.api.enums.v1;

let h: Harness;
const children: ChildProcess[] = [];
beforeAll(async () => {
  h = await createHarness('crash-reads');
});
afterEach(async () => {
  for (const c of children.splice(0)) await sigkill(c);
});
afterAll(async () => h?.close());

const workerEnv = () => ({
  ROLLGATE_TEST_TEMPORAL: process.env.ROLLGATE_TEST_TEMPORAL!,
  ROLLGATE_TASK_QUEUE: h.taskQueue,
  ROLLGATE_LAMBDA_ENDPOINT: h.proxy.url,
  ROLLGATE_STATE_DIR: h.workDir,
});

/** Lambda TagResource (POST /2017-03-31/tags/ARN): the write `recordRelease` makes after the promotion. */
const tagResource = (c: RecordedCall) => c.method === 'POST' && /\/tags\//.test(c.path);

function ms(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  return Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
}

test('SIGKILL while recordRelease (a reads activity) is in flight: its retry starts on the other worker within seconds', async () => {
  const spec = lambdaSpec(h, 'crash-reads', {}, 1);
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  // The first TagResource is held for 45 s (then forwarded): the attempt is in flight when its worker dies.
  h.proxy.inject({ match: tagResource, times: 1, action: { delayMs: 45_000 } });
  try {
    const first = await startChildWorker(workerEnv());
    children.push(first);
    const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
    const deadline = Date.now() + 90_000;
    while (h.proxy.count(tagResource) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(h.proxy.count(tagResource)).toBe(1);
    // The second worker polls before the first dies: what is measured is the server noticing, not a worker start.
    children.push(await startChildWorker(workerEnv()));
    const killedAtMs = Date.now();
    await sigkill(first);
    // Bounded and awaited (never raced: a call left running would retry on the closed channel), generous on a
    // loaded machine and well before the 2 minutes the unpatched options wait.
    const res = (await h.client.connection.withDeadline(killedAtMs + 75_000, () => handle.result())) as RolloutResult;
    expect(res.state).toBe('succeeded');

    // Target state from moto: promoted, and the release recorded on the function by the retry.
    const t = spec.targets[0] as LambdaTargetSpec;
    expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
    const lambda = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
    const arn = (await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: t.function }))).FunctionArn!;
    const tags = (await lambda.send(new ListTagsCommand({ Resource: arn.replace(/:\$LATEST$/, '') }))).Tags ?? {};
    expect(tags['rollgate:release']).toBe(spec.release);
    expect(h.proxy.count(tagResource)).toBeGreaterThanOrEqual(2);

    // From the rollout's history: the recordRelease attempt that completed is a retry, started soon after the kill.
    const events = (await handle.fetchHistory()).events ?? [];
    const scheduled = events.find(
      (e) =>
        e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
        e.activityTaskScheduledEventAttributes?.activityType?.name === 'recordRelease',
    )!;
    expect(ms(scheduled.activityTaskScheduledEventAttributes!.heartbeatTimeout)).toBe(msToNumber(FAILOVER_HEARTBEAT_TIMEOUT));
    const started = events.find(
      (e) =>
        e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED &&
        Number(e.activityTaskStartedEventAttributes?.scheduledEventId) === Number(scheduled.eventId),
    )!;
    expect(started.activityTaskStartedEventAttributes!.attempt).toBeGreaterThanOrEqual(2);
    const resumedAfterMs = ms(started.eventTime) - killedAtMs;
    console.log(`recordRelease retried ${resumedAfterMs} ms after the SIGKILL`);
    expect(resumedAfterMs).toBeLessThan(30_000);
    await recordHistory(handle, 'rollout-v2-fast-failover-reads-sigkill');
  } finally {
    traffic.stop();
  }
}, 180_000);
