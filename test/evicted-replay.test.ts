/**
 * Evicted rollouts replay correctly (issue 12 item 3's safety net; the TMPRL1100 of
 * docs/DEVELOPMENT.md "Pitfalls met (session 4)"). The worker caches four workflows for the five
 * that run here (`maxCachedWorkflows: 4`): nearly every workflow task and status query replays the
 * whole history, as an evicted parked rollout does when it wakes or is queried. Real rollouts go through every
 * stage (verified identities, the message nonce, a shared-dependency lock and its queue, approvals
 * with min_approvals, pause/resume, a breach with its saga and a resume, continue-as-new, an abort,
 * freeze checks)
 * while status and lock queries hammer them. The first message nonce and the lock's first holder
 * check are slow (8.5 s): with the local activities of the code before patch
 * `rollout-no-local-activities`, queries answered meanwhile split their markers from the code
 * after them (docs/DEVELOPMENT.md, "Local activities and replay"); new runs check in regular
 * activities. Outcomes are read from moto; every run's history is then replayed again.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { createActivities } from '../src/activities';
import { startRollout } from '../src/client';
import { createIdentityVerifier, verifierConfigFromEnv } from '../src/identity/verifier';
import type { LambdaTargetSpec, RolloutSpec, RolloutSpecInput } from '../src/spec/schema';
import { noopSinks } from '../src/worker';
import {
  abortUpdate,
  approveUpdate,
  dependencyLockWorkflowId,
  lockStateQuery,
  pauseUpdate,
  resumeUpdate,
  statusQuery,
} from '../src/contract';
import { aliasState } from './support/lambda';
import { uniqueDep } from './support/locks';
import { issuerEnv, startTestIssuer, type TestIssuer } from './support/oidc';
import { createFunctions, createHarness, lambdaSpec, resultWithin, simulateTraffic, waitForStatus, type Harness } from './support/harness';

let h: Harness;
let idp: TestIssuer;
/** Past 80 % of the 10 s workflow task timeout: core heartbeats the task and answers queries meanwhile. */
const SLOW_LOCAL_ACTIVITY_MS = 8_500;
const slowOnce = new Set<string>();

beforeAll(async () => {
  idp = await startTestIssuer();
  h = await createHarness('evicted');
  const deps = { ...h.deps, identityVerifier: createIdentityVerifier(verifierConfigFromEnv(issuerEnv(idp))!) };
  const base = createActivities(deps);
  // The first call of each per workflow id is slow (only the workflows named by the test).
  const slowFirst =
    <A extends unknown[], R>(name: string, fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      const wf = Context.current().info.workflowExecution?.workflowId ?? '';
      if (slowWorkflows.has(wf) && !slowOnce.has(`${name}:${wf}`)) {
        slowOnce.add(`${name}:${wf}`);
        await new Promise((r) => setTimeout(r, SLOW_LOCAL_ACTIVITY_MS));
      }
      return fn(...a);
    };
  await h.startWorker(deps, undefined, {
    workerOptions: {
      // Four cached runs for five busy workflows queried in turn: an LRU cache then misses on
      // nearly every task and query, each a full replay. Not 0: core then evicts runs with a local
      // activity in flight and drops its result ("local activities when using
      // max_cached_workflows=0 are likely to be dropped"). Not 2: the workflow task slots (at most
      // the cache size) run out while the lock's holder check queries a rollout on this worker.
      maxCachedWorkflows: 4,
      activities: {
        ...base,
        newMessageNonce: slowFirst('newMessageNonce', base.newMessageNonce),
        findClosedLockHolders: slowFirst('findClosedLockHolders', base.findClosedLockHolders),
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
  await idp?.close();
});

const slowWorkflows = new Set<string>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function twoTargets(service: string, over: Partial<RolloutSpecInput>): RolloutSpec {
  const targets: LambdaTargetSpec[] = [
    { name: 'a', provider: 'aws-lambda', region: 'us-east-1', function: `${service}-a`, alias: 'live' },
    { name: 'b', provider: 'aws-lambda', region: 'eu-west-1', function: `${service}-b`, alias: 'live' },
  ];
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  return lambdaSpec(h, service, {
    targets,
    canary: { targets: ['a'], weight: 10, bake: '3 seconds' },
    waves: [{ name: 'wave-1', targets: ['b'], steps: [100], bake: '1 second' }],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, interval: '1 second' },
    // Not active: the freeze check (a local activity) runs before every traffic step and lets it through.
    freeze_windows: [{ name: 'later', timezone: 'UTC', from: `${tomorrow}T00:00:00`, to: `${tomorrow}T01:00:00` }],
    ...over,
  });
}

/** Queries in a loop until stopped; every failure is kept with its message. */
function hammer(name: string, query: () => Promise<unknown>) {
  const failures: string[] = [];
  let ok = 0;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      try {
        await query();
        ok++;
      } catch (err) {
        if (!(ok === 0 && err instanceof WorkflowNotFoundError)) failures.push(`${name}: ${(err as Error).message}`);
      }
      await sleep(40);
    }
  })();
  return {
    failures,
    get ok() {
      return ok;
    },
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

/** The runs of one workflow id from its first run (the chain of continue-as-new), each with its history. */
async function runChain(client: Client, workflowId: string, firstRunId: string) {
  const runs: { runId: string; history: History }[] = [];
  for (let runId: string | undefined = firstRunId; runId;) {
    const history: History = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    runs.push({ runId, history });
    const events: NonNullable<History['events']> = history.events ?? [];
    runId = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

/** Local-activity markers that closed their workflow task: the code after them ran in the next task. */
function splitMarkers(history: History, activityTypes: string[]): number {
  const events = history.events ?? [];
  let n = 0;
  for (let i = 0; i + 1 < events.length; i++) {
    const m = events[i].markerRecordedEventAttributes;
    if (!m || m.markerName !== 'core_local_activity') continue;
    const data = m.details?.data?.payloads?.[0]?.data;
    const type = data ? (JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string }).activity_type : undefined;
    if (type && activityTypes.includes(type) && events[i + 1].workflowTaskScheduledEventAttributes) n++;
  }
  return n;
}

const failedTasks = (history: History) =>
  (history.events ?? [])
    .filter((e) => e.workflowTaskFailedEventAttributes)
    .map((e) => e.workflowTaskFailedEventAttributes!.failure?.message);

/**
 * Opt-in (ROLLGATE_EVICTION_STRESS=1): ~2 minutes with its servers, and on SDK 1.24 it still fails
 * now and then (2 of 6 runs in session 6) with an update reordered on replay, an SDK matter that
 * workflow code cannot fix (docs/DEVELOPMENT.md, "Updates reordered on replay"). The local
 * activities it used to trip over are gone (test/replay-failures.test.ts keeps both kinds).
 */
const stress = process.env.ROLLGATE_EVICTION_STRESS === '1' ? test : test.skip;

const replay = (history: History, name: string) =>
  Worker.runReplayHistory({ workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks }, history, name);

stress(
  'with a four-run workflow cache, rollouts through every stage answer every status query and replay',
  async () => {
    const dep = uniqueDep('evicted-db');
    // (1) approvals by two verified people, paused and resumed while it waits, continuing as new.
    const gated = twoTargets('evicted-gated', {
      shared_dependencies: [dep],
      approvers: ['bob', 'group:release-managers'],
      min_approvals: 2,
      waves: [{ name: 'wave-1', targets: ['b'], steps: [100], bake: '1 second', approval: true }],
    });
    // (2) waits for the lock, breaches at the canary, is reverted, resumed with healthy traffic, promoted.
    const breach = twoTargets('evicted-breach', { shared_dependencies: [dep] });
    // (3) aborted mid-bake; its first message-nonce local activity is slow.
    const aborted = twoTargets('evicted-abort', { canary: { targets: ['a'], weight: 10, bake: '30 seconds' } });
    // (4) hands over to new runs during its canary bake (a history limit of 60 events), then promotes.
    const continued = twoTargets('evicted-can', { canary: { targets: ['a'], weight: 10, bake: '8 seconds' } });
    for (const s of [gated, breach, aborted, continued]) await createFunctions(h, s);
    let breachBad = true;
    const traffic = [
      simulateTraffic(h, gated),
      simulateTraffic(h, breach, (_t, v) => breachBad && v !== '1'),
      simulateTraffic(h, aborted),
      simulateTraffic(h, continued),
    ];
    slowWorkflows.add('rollout-evicted-abort');
    slowWorkflows.add(dependencyLockWorkflowId(dep));
    const hammers: ReturnType<typeof hammer>[] = [];
    try {
      const start = async (s: RolloutSpec, who: string, over: { continueAsNewAfterEvents?: number } = {}) =>
        startRollout(h.client, s, {
          startedBy: who,
          taskQueue: h.taskQueue,
          token: await idp.token(who, { expiresIn: 600 }),
          ...over,
        });
      const lock = h.client.workflow.getHandle(dependencyLockWorkflowId(dep));
      hammers.push(hammer('lock', () => lock.query(lockStateQuery)));
      const gatedH = await start(gated, 'alice');
      const abortH = await start(aborted, 'alice');
      const canH = await start(continued, 'erin', { continueAsNewAfterEvents: 60 });
      for (const handle of [gatedH, abortH, canH]) {
        const latest = h.client.workflow.getHandle(handle.workflowId); // follows continue-as-new
        hammers.push(hammer(handle.workflowId, () => latest.query(statusQuery)));
      }
      // The gated rollout holds the lock through its approval wait: the breach rollout queues behind it.
      await waitForStatus(gatedH, (s) => s.stage === 'canary' || s.stage.startsWith('wave:'), 60_000, 'gated rollout past its lock');
      const breachH = await start(breach, 'carol');
      const breachLatest = h.client.workflow.getHandle(breachH.workflowId);
      hammers.push(hammer(breachH.workflowId, () => breachLatest.query(statusQuery)));

      // (3) abort mid-bake.
      await waitForStatus(abortH, (s) => s.stage === 'canary' && s.bakeEndsAtMs !== undefined, 60_000, 'aborted rollout baking');
      const abortToken = await idp.token('dave', { groups: ['release-managers'] });
      expect(await abortH.executeUpdate(abortUpdate, { args: [{ reason: 'evicted test', token: abortToken }] })).toBe('abort requested');

      // (1) approvals, pause and resume while the wave waits.
      const gatedLatest = h.client.workflow.getHandle(gatedH.workflowId);
      await waitForStatus(gatedLatest, (s) => s.awaitingApproval === 'wave-1', 60_000, 'approval wait');
      const dave = await idp.token('dave', { groups: ['release-managers'] });
      expect(await gatedLatest.executeUpdate(approveUpdate, { args: [{ by: 'bob', token: await idp.token('bob') }] })).toBe(
        'approved wave wave-1 (1 of 2 approvals)',
      );
      expect(await gatedLatest.executeUpdate(pauseUpdate, { args: [{ reason: 'looking', token: dave }] })).toBe('paused');
      await sleep(2500); // paused with new traffic on the canary: analyses (and handovers) go on
      expect(await gatedLatest.executeUpdate(resumeUpdate, { args: [{ token: dave }] })).toBe('resumed');
      expect(await gatedLatest.executeUpdate(approveUpdate, { args: [{ by: 'dave', token: dave }] })).toBe('approved wave wave-1');
      const gatedResult = await resultWithin(gatedLatest, 150_000);
      expect(gatedResult.state).toBe('succeeded');

      // (2) breach, saga, paused pipeline: every target back on version 1 in moto; then resume.
      const paused = await waitForStatus(breachLatest, (s) => s.pausedAfterRollback === true, 90_000, 'breach rolled back');
      expect(paused.rollbackReason).toMatch(/error rate/);
      for (const t of breach.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
      breachBad = false;
      expect(await breachLatest.executeUpdate(resumeUpdate, { args: [{ token: await idp.token('carol') }] })).toBe('resumed');
      const breachResult = await resultWithin(breachLatest, 150_000);
      expect(breachResult.state).toBe('succeeded');

      const abortResult = await resultWithin(abortH, 60_000);
      expect(abortResult.state).toBe('aborted');
      const canResult = await resultWithin(h.client.workflow.getHandle(canH.workflowId), 60_000);
      expect(canResult.state).toBe('succeeded');

      // In moto: promoted ones serve their new version alone, the aborted one its stable version alone.
      for (const [s, r] of [
        [gated, gatedResult],
        [breach, breachResult],
        [continued, canResult],
      ] as const)
        for (const t of s.targets) {
          const newVersion = r.status.targets.find((x) => x.name === t.name)!.newVersion!;
          expect(newVersion).not.toBe('1');
          expect(await aliasState(h.motoUrl, t)).toEqual({ version: newVersion, weights: {} });
        }
      for (const t of aborted.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });

      await sleep(1000); // queries of the closed runs replay them too
      for (const x of hammers) await x.stop();
      const failures = hammers.flatMap((x) => x.failures);
      const answered = hammers.reduce((n, x) => n + x.ok, 0);
      expect(failures).toEqual([]);
      expect(answered).toBeGreaterThan(100);

      // Every run of every workflow: no failed workflow task, and its history replays again.
      const chains = [
        ...(await runChain(h.client, gatedH.workflowId, gatedH.firstExecutionRunId)),
        ...(await runChain(h.client, breachH.workflowId, breachH.firstExecutionRunId)),
        ...(await runChain(h.client, abortH.workflowId, abortH.firstExecutionRunId)),
      ];
      const canRuns = await runChain(h.client, canH.workflowId, canH.firstExecutionRunId);
      expect(canRuns.length).toBeGreaterThan(1);
      chains.push(...canRuns);
      const lockInfo = await lock.describe();
      const lockRuns = await runChain(h.client, lock.workflowId, lockInfo.runId);
      let splits = 0;
      for (const [i, { history }] of [...chains, ...lockRuns].entries()) {
        expect(failedTasks(history)).toEqual([]);
        splits += splitMarkers(history, ['newMessageNonce', 'findClosedLockHolders']);
        await replay(history, `evicted-${i}`);
      }
      console.log(
        `evicted replay: ${answered} queries answered by full replays, ${chains.length} rollout runs (${canRuns.length} in the continued chain), ` +
          `${lockRuns.length} lock run(s), ${splits} local-activity marker(s) that closed their workflow task`,
      );
    } finally {
      for (const x of hammers) await x.stop();
      for (const t of traffic) t.stop();
      await keepHistories([
        'rollout-evicted-gated',
        'rollout-evicted-breach',
        'rollout-evicted-abort',
        'rollout-evicted-can',
        dependencyLockWorkflowId(dep),
      ]);
    }
  },
  600_000,
);

/** Every run's history, in the file's state dir: a failing run is kept to be replayed (docs/DEVELOPMENT.md). */
async function keepHistories(workflowIds: string[]): Promise<void> {
  const dir = join(h.workDir, 'histories');
  mkdirSync(dir, { recursive: true });
  for (const id of workflowIds) {
    for await (const w of h.client.workflow.list({ query: `WorkflowId = '${id}'` })) {
      const history = await h.client.workflow.getHandle(id, w.runId).fetchHistory();
      // Proto JSON, as `temporal workflow show -o json` writes it: test/histories takes these as they are.
      writeFileSync(join(dir, `${id}-${w.runId}.json`), JSON.stringify(JSON.parse(historyToJSON(history)), null, 1));
    }
  }
}
