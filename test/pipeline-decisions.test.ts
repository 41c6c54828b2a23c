/**
 * Pipeline decisions with mocked activities: the real workflow code on the suite's dev server, its
 * activities replaced by an in-memory fleet (typed from createActivities/createRunnerActivities, so
 * a changed activity signature fails to compile here). No cloud, no emulator, one second bakes:
 * each test checks one decision of the workflow, cheaply. End to end, the same decisions are
 * tested against moto and the Cloud Run fake (rollback, operator, baseline, invariant tests).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities, type Activities } from '../src/activities';
import { abortRollout, resumeRollout, startRollout } from '../src/client';
import { statusQuery, type RolloutResult, type RolloutStatus, type Verdict } from '../src/contract';
import { validateSpec } from '../src/spec/validate';
import type { RolloutSpec, TargetSpec } from '../src/spec/schema';
import { noopSinks } from '../src/worker';

type Call = { activity: string; target?: string; input: unknown };
type AnalyzeInput = Parameters<Activities['analyzeCanary']>[0];

/** Targets in memory: each serves `stable` and `next` at `weight` %, every activity call recorded. */
class Fleet {
  readonly calls: Call[] = [];
  readonly traffic = new Map<string, { stable: string; next?: string; weight: number }>();
  /** The verdict of each analysis (default: pass). */
  judge: (input: AnalyzeInput) => Verdict['verdict'] = () => 'pass';
  /** Whether a revert of this target fails (every attempt, while it says so). */
  revertFails: (target: string) => boolean = () => false;

  constructor(targets: TargetSpec[]) {
    for (const t of targets) this.traffic.set(t.name, { stable: '1', weight: 0 });
  }

  of(activity: string): Call[] {
    return this.calls.filter((c) => c.activity === activity);
  }

  private record(activity: string, target: TargetSpec | undefined, input: unknown): void {
    this.calls.push({ activity, target: target?.name, input });
  }

  /** What the worker runs: the real activities, with every one that reaches a target, a metric, a webhook or a runner replaced. */
  activities(stateDir: string): Activities {
    const real = createActivities({ providers: {}, metrics: [], stateDir, hashKey: 'pipeline-test' });
    const fakes = {
      readTraffic: async ({ target }) => {
        this.record('readTraffic', target, undefined);
        const s = this.traffic.get(target.name)!;
        return { stableVersion: s.stable, newVersion: s.next, newWeight: s.weight };
      },
      checkParity: async ({ targets }) => ({ reports: [], compared: targets.length, unchecked: [] }),
      buildArtifact: async () => ({ digest: 'd'.repeat(64), path: '/nonexistent/fn.zip' }),
      runStageCommand: async () => ({ exitCode: 0, tail: '', durationMs: 1 }),
      readSchemaRev: async () => '7',
      deployRevision: async (input) => {
        this.record('deployRevision', input.target, input);
        this.traffic.get(input.target.name)!.next = '2';
        return { newVersion: '2', created: true };
      },
      verifyRevision: async (input) => ({
        ok: true,
        probes: [],
        contractProblems: [],
        drift: { missing: [], changed: [], added: [], secretRefsChanged: [] },
        summary: `${input.target.name}: ok`,
      }),
      preflightMetrics: async () => [],
      setTraffic: async (input) => {
        this.record('setTraffic', input.target, input);
        Object.assign(this.traffic.get(input.target.name)!, { next: input.newVersion, weight: input.percent });
        return { changed: true };
      },
      routeAll: async (input) => {
        if (input.revert && this.revertFails(input.target.name)) throw new Error(`${input.target.name}: alias update refused`);
        this.record(input.revert ? 'revert' : 'routeAll', input.target, input);
        const s = this.traffic.get(input.target.name)!;
        if (input.version === s.stable) Object.assign(s, { next: input.dropTag ? undefined : s.next, weight: 0 });
        else Object.assign(s, { stable: input.version, next: undefined, weight: 0 });
        return { changed: true };
      },
      restoreLatest: async () => ({ changed: false }),
      recordRelease: async (input) => this.record('recordRelease', input.target, input),
      analyzeCanary: async (input) => {
        this.record('analyzeCanary', undefined, input);
        const verdict = this.judge(input);
        return input.targets.map((t) => ({ verdict, reason: `${t.target.name}: ${verdict} (mocked)`, target: t.target.name }));
      },
      sendAlert: async (input) => {
        this.record('sendAlert', undefined, input);
        return { status: 200, deliveredAtMs: Date.now() };
      },
    } satisfies Partial<Activities>;
    // Typed as the worker's and the runner's activities together: a fake missing or mistyped fails to compile.
    const all: Activities = { ...real, ...fakes };
    return all;
  }
}

const targets: TargetSpec[] = ['canary', 'eu', 'us', 'ap'].map((name, i) => ({
  name,
  provider: 'aws-lambda',
  region: ['us-east-1', 'eu-west-1', 'us-west-2', 'ap-southeast-2'][i],
  function: `fn-${name}`,
  alias: 'live',
}));

function pipelineSpec(service: string, over: Record<string, unknown> = {}): RolloutSpec {
  return validateSpec({
    service,
    release: 'r2',
    schema_rev: '7',
    artifact: { file: '/nonexistent/fn.zip' },
    targets,
    canary: { targets: ['canary'], weight: 10, bake: '1 second' },
    waves: [
      { name: 'eu', targets: ['eu'], steps: [50, 100], bake: '1 second' },
      { name: 'rest', targets: ['us', 'ap'], steps: [20, 100], bake: '1 second', approval: true },
    ],
    approvers: ['alice'],
    rollback: { min_requests: 1 },
    ...over,
  });
}

let nativeConnection: NativeConnection;
let client: Client;
beforeAll(async () => {
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') }); // no workflow log lines in the test output
  } catch {
    // installed already in this process
  }
  nativeConnection = await NativeConnection.connect({ address: process.env.ROLLGATE_TEST_TEMPORAL });
  client = new Client({ connection: await Connection.connect({ address: process.env.ROLLGATE_TEST_TEMPORAL }) });
});
afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
});

/** Run `body` with a worker (real workflow bundle, the fleet's activities) on a queue of its own; runner work on the same queue. */
async function withFleet<R>(fleet: Fleet, body: (taskQueue: string) => Promise<R>): Promise<R> {
  const taskQueue = `pipeline-${randomBytes(4).toString('hex')}`;
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! },
    activities: fleet.activities(mkdtempSync(join(tmpdir(), 'rollgate-pipeline-'))),
    sinks: noopSinks,
  });
  return worker.runUntil(() => body(taskQueue));
}

async function start(spec: RolloutSpec, taskQueue: string): Promise<WorkflowHandle> {
  const handle = await startRollout(client, spec, { startedBy: 'carol', taskQueue, runnerTaskQueue: taskQueue });
  return client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId);
}

async function until(handle: WorkflowHandle, pred: (s: RolloutStatus) => boolean, what: string): Promise<RolloutStatus> {
  const deadline = Date.now() + 90_000;
  let last: RolloutStatus | undefined;
  while (Date.now() < deadline) {
    last = await handle.query(statusQuery).catch(() => last);
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(
    `timed out waiting for ${what}; last: ${JSON.stringify(last && { state: last.state, stage: last.stage, detail: last.detail })}`,
  );
}

test('a breach during a wave reverts every deployed target, not only the wave, and then waits with the pipeline paused', async () => {
  const fleet = new Fleet(targets);
  // Fail the first analysis of wave eu at 50 %: the canary (10 %) and eu (50 %) serve the new version.
  fleet.judge = (input) => (input.targets.some((t) => t.target.name === 'eu') ? 'fail' : 'pass');
  await withFleet(fleet, async (taskQueue) => {
    const handle = await start(pipelineSpec('breach-in-wave'), taskQueue);
    const s = await until(handle, (x) => x.state === 'paused' && x.pausedAfterRollback === true, 'the pipeline paused after the rollback');
    expect(s.rollbackReason).toContain('eu: fail (mocked)');
    // Every target was deployed in the deploy stage (all of them carry a new version), so every one is reverted, each once.
    expect(fleet.of('deployRevision').map((c) => c.target)).toEqual(expect.arrayContaining(targets.map((t) => t.name)));
    expect(
      fleet
        .of('revert')
        .map((c) => c.target)
        .sort(),
    ).toEqual(targets.map((t) => t.name).sort());
    for (const c of fleet.of('revert')) expect(c.input).toMatchObject({ version: '1', dropTag: true, revert: true });
    // Traffic moved on the canary and eu only; the approval-gated wave never got any.
    expect(fleet.of('setTraffic').map((c) => `${c.target} ${(c.input as { percent: number }).percent}`)).toEqual(['canary 10', 'eu 50']);
    for (const [name, t] of fleet.traffic) expect({ name, weight: t.weight, stable: t.stable }).toEqual({ name, weight: 0, stable: '1' });
    expect(fleet.of('routeAll')).toEqual([]); // nothing promoted
    await abortRollout(client, handle.workflowId, { by: 'carol', reason: 'test over' });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('rolled-back');
    expect(fleet.of('revert').length).toBeGreaterThanOrEqual(targets.length); // an abort after a rollback may revert again, never forward
  });
});

test('an abort while the rollout awaits an approval reverts every deployed target and closes it as aborted', async () => {
  const fleet = new Fleet(targets);
  await withFleet(fleet, async (taskQueue) => {
    const handle = await start(pipelineSpec('abort-at-gate'), taskQueue);
    await until(handle, (x) => x.awaitingApproval === 'rest', 'the approval gate of wave rest');
    expect(fleet.of('revert')).toEqual([]);
    await abortRollout(client, handle.workflowId, { by: 'carol', reason: 'changed my mind' });
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('aborted');
    expect(
      fleet
        .of('revert')
        .map((c) => c.target)
        .sort(),
    ).toEqual(targets.map((t) => t.name).sort());
    // The gated wave's targets never got traffic; the canary and eu went back to their stable version.
    expect(fleet.of('setTraffic').filter((c) => c.target === 'us' || c.target === 'ap')).toEqual([]);
    for (const t of fleet.traffic.values()) expect(t).toMatchObject({ stable: '1', weight: 0 });
    expect(result.status.history.some((e) => e.kind === 'operator' && /abort/.test(e.text))).toBe(true);
  });
});

test('the 100 % step is judged against the window before the shift, never against an empty current baseline', async () => {
  const fleet = new Fleet(targets);
  await withFleet(fleet, async (taskQueue) => {
    const spec = pipelineSpec('baseline-at-100', {
      waves: [{ name: 'eu', targets: ['eu'], steps: [50, 100], bake: '1 second' }],
      targets: targets.slice(0, 2),
    });
    const handle = await start(spec, taskQueue);
    const result = (await handle.result()) as RolloutResult;
    expect(result.state).toBe('succeeded');
    const analyses = fleet.of('analyzeCanary').map((c) => c.input as AnalyzeInput);
    const eu = analyses.flatMap((a) => a.targets.filter((t) => t.target.name === 'eu').map((t) => ({ t, startMs: a.startMs })));
    const at50 = eu.filter(({ t }) => !t.baselineWindow);
    const at100 = eu.filter(({ t }) => t.baselineWindow);
    expect(at50.length).toBeGreaterThan(0);
    expect(at100.length).toBeGreaterThan(0);
    // At 100 % the stable version serves nothing now: its window ends at the shift to 100 %, before
    // the analysis window starts, and is at least a minute long (the bake is shorter).
    const shiftTo100 = fleet.of('setTraffic').find((c) => c.target === 'eu' && (c.input as { percent: number }).percent === 100)!;
    expect(shiftTo100).toBeDefined();
    for (const { t, startMs } of at100) {
      expect(t.baselineWindow!.endMs).toBeLessThanOrEqual(startMs);
      expect(t.baselineWindow!.endMs - t.baselineWindow!.startMs).toBeGreaterThanOrEqual(60_000);
    }
    // Below 100 % the canary is judged against the stable version serving beside it (no window of its own).
    for (const { t } of at50) expect(t.baselineWindow).toBeUndefined();
    expect(fleet.of('routeAll').map((c) => c.target)).toEqual(expect.arrayContaining(['canary', 'eu']));
  });
});

test('a revert that fails stays on the saga: rollback-failed, and resume retries only that target', async () => {
  const fleet = new Fleet(targets.slice(0, 2));
  fleet.judge = () => 'fail'; // the canary's first analysis breaches
  let euBroken = true; // until the operator fixes it: every attempt fails (the activity's retries included)
  fleet.revertFails = (name) => name === 'eu' && euBroken;
  await withFleet(fleet, async (taskQueue) => {
    const spec = pipelineSpec('failed-revert', {
      targets: targets.slice(0, 2),
      waves: [{ name: 'eu', targets: ['eu'], steps: [100], bake: '1 second' }],
      rollback: { min_requests: 1, revert_retry_for: '5 seconds' },
    });
    const handle = await start(spec, taskQueue);
    const failed = await until(handle, (x) => x.state === 'rollback-failed', 'rollback-failed');
    expect(failed.detail).toMatch(/eu/);
    expect(fleet.traffic.get('canary')).toMatchObject({ weight: 0, stable: '1' });
    const canaryReverts = fleet.of('revert').filter((c) => c.target === 'canary').length;
    expect(canaryReverts).toBe(1);
    euBroken = false; // the operator fixed the target
    await resumeRollout(client, handle.workflowId, { by: 'carol' });
    await until(handle, (x) => x.state === 'paused' && x.pausedAfterRollback === true, 'the pipeline paused after the retried revert');
    expect(fleet.of('revert').filter((c) => c.target === 'eu')).toHaveLength(1);
    expect(fleet.of('revert').filter((c) => c.target === 'canary')).toHaveLength(canaryReverts); // not reverted again
    await abortRollout(client, handle.workflowId, { by: 'carol' });
    expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
    expect(fleet.traffic.get('eu')).toMatchObject({ weight: 0, stable: '1' });
  });
});
