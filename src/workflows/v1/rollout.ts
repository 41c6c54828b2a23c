/**
 * FROZEN: the rollout workflow as released in v1 (the code that recorded test/histories/happy-path.json and
 * breach-resume.json). Runs started before the `rollout-v2` patch finish on this code; never change
 * what it does (see docs/DEVELOPMENT.md, Versioning). New behaviour goes into ../rollout.ts.
 *
 * One durable workflow per release of a service. Reads top to bottom like the pipeline:
 * build → test → migrate → deploy canary revision → verify → canary → region waves → promote.
 * A breach, failed stage, rejection or abort runs the compensation saga (every touched target back
 * to 100 % on its previous version), then the service's pipeline pauses until `resume` (retry from
 * the deploy stage) or `abort` (close as rolled back).
 */
import { CancellationScope, condition, isCancellation, workflowInfo } from '@temporalio/workflow';
import type { RolloutSpec, TargetSpec, WaveSpec } from '../../spec/schema';
import { mustDurationMs } from '../../spec/duration';
import type { ReleaseContract } from '../../providers/types';
import type { RolloutInput, RolloutResult, RolloutState } from '../../contract';
import { RolloutRun, RolloutStop, type RolloutTarget } from './rollout-state';
import { Saga, failureMessage } from './saga';
import { emitRolloutEvent } from '../../observability/workflow-sink';
import { acts, commands, compensations } from './activity-options';
import { alertOperator, awaitApproval, bakeAndAnalyze, holdForFreezeWindows, releaseDependencyLocks, withDependencyLocks } from './steps';

export async function rolloutWorkflowV1(input: RolloutInput): Promise<RolloutResult> {
  const run = new RolloutRun(input);
  run.installHandlers();
  run.publish();
  const { spec } = input;
  emitRolloutEvent({ kind: 'started', service: spec.service, release: spec.release });

  // A scheduled analysis found the promoted release worse: revert it first (see revertPromoted).
  let pendingStop = input.revertPromoted ? loadPromotedRelease(run, input.revertPromoted) : undefined;

  // Stages 1-3 deploy nothing: a failure (or an abort) here ends the rollout without a saga.
  const early = new CancellationScope();
  run.onAbort = () => early.cancel();
  try {
    if (!pendingStop)
      await early.run(async () => {
        await runStage(run, 'build', 'building the artifact once', () => build(run));
        if (spec.test) await runStage(run, 'test', `running ${spec.test.command}`, () => runTests(spec));
        if (spec.migration) await runStage(run, 'migrate', 'migrating the schema before any traffic moves', () => migrate(run));
      });
  } catch (err) {
    if (run.abortRequested) return finish(run, 'aborted', 'aborted by operator before anything was deployed');
    run.failedStage = run.stage;
    const reason = failureMessage(err);
    await alertOperator(
      run,
      'failed',
      `rollgate: ${spec.service} ${spec.release} failed in stage ${run.stage} before anything was deployed: ${reason}`,
      {
        reason,
      },
    );
    return finish(run, 'failed', reason);
  }

  // Stages 4-8. `resume` after a rollback comes back here and retries from the deploy stage;
  // deploys are idempotent, so the same version is found again rather than published twice.
  for (;;) {
    const saga = new Saga();
    const scope = new CancellationScope();
    run.onAbort = () => scope.cancel();
    try {
      if (run.abortRequested) throw new RolloutStop('aborted', 'aborted by operator');
      if (pendingStop) {
        for (const t of run.targets.values()) pushRevert(run, saga, t);
        const stop = pendingStop;
        pendingStop = undefined;
        throw stop;
      }
      await scope.run(async () => {
        await runStage(run, 'deploy', 'publishing the new revision with 0 % traffic', () => deployCanaryRevisions(run, saga));
        await runStage(run, 'verify', 'probes, deployment contract and env drift', () => verify(run));
        await withDependencyLocks(run, async () => {
          await runStage(run, 'canary', `shifting ${spec.canary.weight} % to the canary`, () => canary(run));
          for (const wave of spec.waves) await runStage(run, `wave:${wave.name}`, `wave ${wave.name}`, () => regionWave(run, wave));
          await runStage(run, 'promote', 'all traffic to the new version', () => promote(run));
        });
      });
      return finish(run, 'succeeded', `release ${spec.release} promoted on ${spec.targets.length} target(s)`);
    } catch (err) {
      const stop = toStop(run, err);
      let outcome = await rollback(run, saga, stop);
      // A failed compensation escalates (alert, state rollback-failed) and waits for the operator:
      // `resume` retries the failed reverts, `abort` closes the rollout as rollback-failed.
      while (outcome === 'rollback-failed') {
        if ((await waitForOperator(run, 'rollback-failed')) === 'abort') {
          await releaseDependencyLocks(run);
          return finish(run, 'rollback-failed', run.rollbackReason);
        }
        outcome = await rollback(run, saga, stop);
      }
      await releaseDependencyLocks(run);
      // An abort while the pipeline ran closes the rollout after reverting.
      if (stop.kind === 'aborted') return finish(run, 'aborted', stop.message);
      if ((await waitForOperator(run, 'paused')) === 'abort') return finish(run, 'rolled-back', run.rollbackReason);
    } finally {
      run.onAbort = undefined;
    }
  }
}

async function runStage(run: RolloutRun, stage: RolloutRun['stage'], detail: string, body: () => Promise<void>): Promise<void> {
  await run.holdWhilePaused();
  run.enterStage(stage, detail);
  const t0 = Date.now();
  const service = run.spec.service;
  try {
    await body();
    emitRolloutEvent({ kind: 'stage', service, stage, durationMs: Date.now() - t0, outcome: 'ok' });
  } catch (err) {
    emitRolloutEvent({ kind: 'stage', service, stage, durationMs: Date.now() - t0, outcome: 'failed' });
    if (err instanceof RolloutStop || isCancellation(err)) throw err;
    throw new RolloutStop('stage-failed', `stage ${stage} failed: ${failureMessage(err)}`);
  }
}

// ---- 1-3: build, test, migrate --------------------------------------------------------------

async function build(run: RolloutRun): Promise<void> {
  run.artifact = await commands.buildArtifact({ artifact: run.spec.artifact, rolloutId: run.id, runId: workflowInfo().runId });
  run.record('decision', `artifact sha256 ${run.artifact.digest}`);
}

async function runTests(spec: RolloutSpec): Promise<void> {
  await commands.runStageCommand({ stage: 'test', command: spec.test!.command, cwd: spec.test!.cwd });
}

async function migrate(run: RolloutRun): Promise<void> {
  const m = run.spec.migration!;
  const env = { ROLLGATE_SCHEMA_REV: run.spec.schema_rev };
  await commands.runStageCommand({ stage: 'migrate', command: m.command, cwd: m.cwd, env });
  const current = await commands.readSchemaRev({ command: m.current_command, cwd: m.cwd });
  if (current !== run.spec.schema_rev)
    throw new RolloutStop('stage-failed', `migration reports schema_rev "${current}", spec expects "${run.spec.schema_rev}"`);
  run.record('decision', `schema_rev ${current} verified`);
}

// ---- 4-5: deploy the canary revision, verify it -------------------------------------------

function contractOf(spec: RolloutSpec): ReleaseContract {
  return { RELEASE_ID: spec.release, SCHEMA_REV: spec.schema_rev, ...(spec.index_hash ? { INDEX_HASH: spec.index_hash } : {}) };
}

async function deployCanaryRevisions(run: RolloutRun, saga: Saga): Promise<void> {
  // allSettled, not all: when one target fails, the others still finish and push their undo.
  const results = await Promise.allSettled(
    [...run.targets.values()].map(async (t) => {
      if (t.stableVersion === undefined) {
        const traffic = await acts.readTraffic({ target: t.spec });
        if (traffic.newVersion !== undefined && traffic.newWeight > 0)
          throw new RolloutStop(
            'stage-failed',
            `${t.name} already routes ${traffic.newWeight} % to version ${traffic.newVersion}: another deployment is in progress`,
          );
        t.stableVersion = traffic.stableVersion;
      }
      const res = await acts.deployRevision({ target: t.spec, artifact: run.artifact!, contract: contractOf(run.spec), rolloutId: run.id });
      t.newVersion = res.newVersion;
      run.record(
        'decision',
        `${t.name}: ${res.created ? 'published' : 'found already published'} version ${res.newVersion} (stable ${t.stableVersion})`,
      );
      if (t.newVersion === t.stableVersion)
        throw new RolloutStop('stage-failed', `${t.name} already serves release ${run.spec.release} (version ${t.newVersion})`);
      pushRevert(run, saga, t);
    }),
  );
  run.publish();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Undo for everything a target goes through: 100 % back on its stable version (and its tag dropped). */
function pushRevert(run: RolloutRun, saga: Saga, t: RolloutTarget): void {
  const stable = t.stableVersion!;
  saga.push(`revert ${t.name}`, 'revert-targets', async () => {
    await compensations.routeAll({ target: t.spec, version: stable, dropTag: true });
    run.setWeight(t.name, 0);
    run.record('compensation', `${t.name}: 100 % back on version ${stable}`);
  });
}

/** Revert mode: the targets run the promoted release at 100 %; the saga puts them back. */
function loadPromotedRelease(run: RolloutRun, r: NonNullable<RolloutInput['revertPromoted']>): RolloutStop {
  run.artifact = r.artifact;
  for (const p of r.targets) {
    const t = run.targets.get(p.name);
    if (!t) continue;
    t.stableVersion = p.stableVersion;
    t.newVersion = p.newVersion;
    t.weight = 100;
  }
  run.record('decision', `post-promotion analysis failed: reverting release ${run.spec.release} on every target`);
  return new RolloutStop('breach', `no increase in error rate after rollout: ${r.reason}`);
}

async function verify(run: RolloutRun): Promise<void> {
  const reports = await Promise.all(
    [...run.targets.values()].map((t) =>
      acts.verifyRevision({
        target: t.spec,
        stableVersion: t.stableVersion!,
        newVersion: t.newVersion!,
        probes: run.spec.probes,
        contract: contractOf(run.spec),
      }),
    ),
  );
  for (const r of reports) run.record('decision', `verify ${r.summary}`);
  const failed = reports.filter((r) => !r.ok);
  if (failed.length) throw new RolloutStop('stage-failed', `verify failed: ${failed.map((r) => r.summary).join(' | ')}`);
  const all = [...run.targets.values()].map((t) => t.spec);
  await acts.preflightMetrics({ targets: analysisTargets(run, all), rule: run.spec.rollback });
}

// ---- 6-8: canary, region waves, promote ---------------------------------------------------

async function canary(run: RolloutRun): Promise<void> {
  const targets = run.spec.canary.targets.map((n) => run.targets.get(n)!.spec);
  await shiftTraffic(run, targets, run.spec.canary.weight);
  await bakeAndAnalyze(run, targets, mustDurationMs(run.spec.canary.bake), `canary ${run.spec.canary.weight} %`);
}

async function regionWave(run: RolloutRun, wave: WaveSpec): Promise<void> {
  if (wave.approval) await awaitApproval(run, wave);
  const targets = wave.targets.map((n) => run.targets.get(n)!.spec);
  for (const step of wave.steps) {
    await shiftTraffic(run, targets, step);
    await bakeAndAnalyze(run, targets, mustDurationMs(wave.bake), `wave ${wave.name} at ${step} %`);
  }
}

/** One traffic step on several targets in parallel, after pause and freeze checks. */
async function shiftTraffic(run: RolloutRun, targets: TargetSpec[], percent: number): Promise<void> {
  await run.holdWhilePaused();
  await holdForFreezeWindows(run);
  await Promise.all(
    targets.map(async (spec) => {
      const t = run.targets.get(spec.name)!;
      await acts.setTraffic({ target: spec, stableVersion: t.stableVersion!, newVersion: t.newVersion!, percent });
      run.setWeight(t.name, percent);
    }),
  );
  run.record('decision', `${targets.map((t) => t.name).join(', ')} at ${percent} %`);
}

async function promote(run: RolloutRun): Promise<void> {
  await run.holdWhilePaused();
  await holdForFreezeWindows(run);
  await Promise.all(
    [...run.targets.values()].map(async (t) => {
      await acts.routeAll({ target: t.spec, version: t.newVersion! });
      run.setWeight(t.name, 100);
      await acts.recordRelease({ target: t.spec, version: t.newVersion!, release: run.spec.release, digest: run.artifact!.digest });
    }),
  );
}

export function analysisTargets(run: RolloutRun, targets: TargetSpec[]) {
  return targets.map((spec) => {
    const t = run.targets.get(spec.name)!;
    return { target: spec, stableVersion: t.stableVersion!, newVersion: t.newVersion! };
  });
}

// ---- saga, pause, finish ---------------------------------------------------------------------

function toStop(run: RolloutRun, err: unknown): RolloutStop {
  if (err instanceof RolloutStop) return err;
  if (isCancellation(err) || run.abortRequested)
    return new RolloutStop(
      'aborted',
      `aborted${run.abortRequested?.by ? ` by ${run.abortRequested.by}` : ''}${run.abortRequested?.reason ? `: ${run.abortRequested.reason}` : ''}`,
    );
  return new RolloutStop('stage-failed', failureMessage(err));
}

async function rollback(run: RolloutRun, saga: Saga, stop: RolloutStop): Promise<'reverted' | 'rollback-failed'> {
  run.rollbackReason = stop.message;
  const stageAtStop = run.stage;
  if (stop.kind !== 'aborted') run.failedStage = stageAtStop;
  run.enterStage('rollback', `${stop.kind}: ${stop.message}`);
  const outcomes = await saga.compensate();
  const failed = outcomes.filter((o) => !o.ok);
  const reverted = outcomes.filter((o) => o.ok && o.label.startsWith('revert ')).map((o) => o.label.slice(7));
  for (const f of failed) emitRolloutEvent({ kind: 'compensation-failed', service: run.spec.service, step: f.label });
  if (failed.length) {
    run.state = 'rollback-failed';
    run.record('alert', `escalating: ${failed.length} compensation(s) failed after retries`);
    const text = `ROLLBACK FAILED for ${run.spec.service} ${run.spec.release} after ${stop.kind} in ${stageAtStop}: ${failed
      .map((f) => `${f.label}: ${f.error}`)
      .join('; ')}. Fix the target, then \`rollgate resume ${run.id}\` to retry the revert.`;
    run.setDetail(text);
    await alertOperator(run, 'rollback-failed', text, { reason: stop.message, revertedTargets: reverted });
    return 'rollback-failed';
  }
  if (stop.kind !== 'aborted') {
    run.state = 'paused';
    run.paused = true;
    run.pausedAfterRollback = true;
    const text = `rollgate: ${run.spec.service} ${run.spec.release} rolled back after ${stop.kind} in ${stageAtStop}: ${stop.message}. Reverted: ${
      reverted.join(', ') || 'nothing had been deployed'
    }. Pipeline paused: \`rollgate resume ${run.id}\` retries from the canary, \`rollgate abort ${run.id}\` closes it.`;
    run.setDetail(`pipeline paused after ${stop.kind}: ${stop.message}`);
    await alertOperator(run, 'rolled-back', text, { reason: stop.message, revertedTargets: reverted });
  }
  return 'reverted';
}

/** Paused after a rollback (or a failed one): wait for `resume` (retry) or `abort` (close). */
async function waitForOperator(run: RolloutRun, state: RolloutState): Promise<'resume' | 'abort'> {
  run.state = state;
  run.paused = true;
  run.pausedAfterRollback = true;
  run.resumeRequested = false;
  run.publish();
  await condition(() => run.resumeRequested || !!run.abortRequested);
  if (run.abortRequested) return 'abort';
  run.state = 'running';
  run.paused = false;
  run.pausedAfterRollback = false;
  run.rollbackReason = undefined;
  run.lastAnalysis = undefined;
  run.publish();
  return 'resume';
}

function finish(run: RolloutRun, state: RolloutState, reason?: string): RolloutResult {
  run.state = state;
  run.bakeEndsAtMs = undefined;
  run.awaitingApproval = undefined;
  run.enterStage('done', `${state}${reason ? `: ${reason}` : ''}`);
  emitRolloutEvent({ kind: 'finished', service: run.spec.service, release: run.spec.release, state });
  return { state, reason, status: run.status() };
}
