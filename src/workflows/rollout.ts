/**
 * One durable workflow per release of a service. Reads top to bottom like the pipeline:
 * preflight → build → test → migrate → deploy canary revision → verify → canary → region waves →
 * promote. Every stage returns the Stop it ran into (breach, rejection, abort, failure) or nothing;
 * a Stop after the deploy runs the compensation saga (every touched target back to 100 % on its
 * stable version), then the service's pipeline pauses until `resume` (retry from the deploy stage)
 * or `abort` (close as rolled back). What this guarantees is written in README, "What rollgate
 * guarantees"; test/fault-schedules.test.ts checks it in the emulators.
 */
import {
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  workflowInfo,
} from '@temporalio/workflow';
import type { RolloutSpec, TargetSpec, WaveSpec } from '../spec/schema';
import { mustDurationMs } from '../spec/duration';
import type { ArtifactRef } from '../providers/types';
import { digestsOf, pinMismatch } from './release-records';
import type { ContinuedRollout, PipelinePosition, RolloutInput, RolloutResult, RolloutState } from '../contract';
import { RolloutRun, type RolloutTarget } from './rollout-state';
import { stopOf, type Stop } from './gate';
import { Saga, failureMessage } from './saga';
import { settleAll } from './parallel';
import { emitRolloutEvent } from '../observability/workflow-sink';
import { activitiesFor, checks, commands, commandsOn, local } from './activity-options';
import { buildInput, stageCommandInput } from '../spec/commands';
import { imageDigest, RUNNER_TASK_QUEUE, releaseContract, type ReleaseContract } from '../contract';
import { bakeAndAnalyze, holdWhilePaused, takePendingStop } from './bake';
import { awaitApproval, holdForFreezeWindows } from './waits';
import { alertOperator } from './alert';
import { releaseDependencyLocks, withDependencyLocks } from './steps';
import { rolloutWorkflowV1 } from './v1/rollout';
import { checksStarter } from './identity';
import { TrainLink, trainMembershipOf } from './train-member';

/** Marks runs of this code; runs without it (started before) finish on the frozen v1 code. */
export const ROLLOUT_V2_PATCH = 'rollout-v2';
/** Marks runs that continue as new in long waits and bakes (and wait without timers when nothing serves new traffic). */
export const CONTINUE_AS_NEW_PATCH = 'rollout-continue-as-new';
/** Marks runs that accept scheduled verdicts and lock grants only with their message nonce (see MessageNonce). */
export const MESSAGE_NONCES_PATCH = 'rollout-message-nonces';

/**
 * Marks runs that call no local activity (message nonce, identity checks, freeze windows: regular
 * activities instead). Decided once at the start, before any handler or local activity runs. Why:
 * when core answers a query while a local activity's result is pending it completes the workflow
 * task with the activity's marker and hands the result to the workflow in the next task; a replay
 * hands it over before that next task's events, so the code after it runs at another point of the
 * history (an abort's cancel of an activity scheduled in the same task then drops that activity's
 * command: TMPRL1100 "Update machine does not handle this event: ActivityTaskScheduled").
 * docs/DEVELOPMENT.md, "Local activities and replay".
 */
export const NO_LOCAL_ACTIVITIES_PATCH = 'rollout-no-local-activities';

/** Marks runs that know the release registry (src/workflows/release-registry.ts): veto check, pins, rollback to a release, close announced. */
export const RELEASE_REGISTRY_PATCH = 'release-registry';
/**
 * Marks runs that ask the registry's gate (veto, and for a promotion the pin against what the
 * environment before verified) before every deploy pass, a resume's included, and before a
 * rollback to a release routes. Decided at the start with the other run-wide patches.
 */
export const RELEASE_GATES_PATCH = 'release-gates-every-pass';

/** Marks runs whose activities have short heartbeat timeouts (src/workflows/activity-options.ts, FAST_FAILOVER). */
export const FAST_FAILOVER_PATCH = 'rollgate-fast-failover';

/** Marks runs that hand over to a new run before a long wait, to park on a short history (RolloutRun.shouldHandOverBeforeParking). */
export const PARK_HANDOVER_PATCH = 'rollout-park-handover';

export async function rolloutWorkflow(input: RolloutInput): Promise<RolloutResult> {
  if (!patched(ROLLOUT_V2_PATCH)) return rolloutWorkflowV1(input);
  const run = new RolloutRun(input);
  const result = await runPipeline(run, input);
  // A pipeline rollout tells its service's registry that it closed; the registry reads the outcome itself.
  if (run.usesReleaseRegistry && input.environment) await announceClose(run);
  return result;
}

async function runPipeline(run: RolloutRun, input: RolloutInput): Promise<RolloutResult> {
  // Decided once per run, at its start: a run recorded before the patch keeps its old waits.
  run.continueAsNewEnabled = patched(CONTINUE_AS_NEW_PATCH);
  // Decided once too, before any handler runs: from here on unauthenticated messages are refused.
  run.authenticatesMessages = patched(MESSAGE_NONCES_PATCH);
  // A release train's member (patch asked only when the input names a train): holds once promoted.
  const membership = trainMembershipOf(input);
  if (membership) run.train = new TrainLink(membership, run);
  // Decided once too: vetoes, promotion pins, rollbacks to a release and the registry announcement.
  run.usesReleaseRegistry = patched(RELEASE_REGISTRY_PATCH);
  run.checksReleaseGates = run.usesReleaseRegistry && patched(RELEASE_GATES_PATCH);
  // Decided once too, before the first local activity: newer runs use regular activities only.
  run.localChecks = !patched(NO_LOCAL_ACTIVITIES_PATCH);
  // Decided once too, before any activity is scheduled: heartbeat timeouts of 5 s (a dead worker's
  // activity moves on in seconds); a run recorded before keeps the options it was recorded with.
  run.acts = activitiesFor(patched(FAST_FAILOVER_PATCH));
  // Decided once too: from here on a run parks in a long wait on a short history. Not a train's
  // member: its next run would wait at the train's barrier again for a stage it already began.
  run.handsOverBeforeParking = run.continueAsNewEnabled && !run.train && patched(PARK_HANDOVER_PATCH);
  // A rollback to a release has no bake to hand over from; its waits are short.
  if (run.usesReleaseRegistry && input.rollbackTo) run.continueAsNewEnabled = false;
  run.installHandlers();
  run.train?.install();
  run.publish();
  // Decided before the first local activity, not after it: a precaution, since one CI run hit
  // "patch marker encountered for change verified-identities, but there is no corresponding change
  // command" replaying a run where this patched() came right after the message-nonce local activity.
  const checkStarter = checksStarter();
  // A continued run keeps its rollout's nonce when the previous run passed it on (input, so replay decides alike).
  if (run.authenticatesMessages)
    run.messageNonce = input.continued?.messageNonce ?? (await (run.localChecks ? local : checks).newMessageNonce());
  // ---- verified identities: who started it is checked before anything runs (src/workflows/identity.ts) ----
  if (checkStarter) {
    const refused = await run.checkStarter();
    if (refused) return finish(run, 'failed', refused);
  }
  if (!input.continued) emitRolloutEvent({ kind: 'started', service: input.spec.service, release: input.spec.release });

  const saga = new Saga();
  let stop: Stop | undefined;
  if (input.continued) {
    // The previous run of this rollout handed over mid-way: rebuild the saga, go on where it stopped.
    stop = await deliverContinued(run, saga, input.continued);
  } else if (input.revertPromoted) {
    // A scheduled analysis found the promoted release worse: revert it, then pause the pipeline.
    stop = loadPromotedRelease(run, saga, input.revertPromoted);
  } else if (run.usesReleaseRegistry && input.rollbackTo) {
    // `rollgate rollback --to RELEASE`: no build, deploy or analysis; route every target back.
    const early = await checkRollbackTo(run, input.rollbackTo);
    if (early) return endBeforeDeploy(run, early);
    stop = await rollBackToRelease(run, saga, input.rollbackTo);
  } else {
    const early = await prepare(run);
    if (early) return endBeforeDeploy(run, early);
    stop = await deliver(run, saga);
  }
  for (;;) {
    if (!stop && run.train) {
      // Promoted, but the train may still revert it: hold the saga until the train decides.
      stop = await run.train.hold();
      if (!stop) await recordPromotion(run);
    }
    if (!stop) return finish(run, 'succeeded', successText(run));
    if (stop.kind === 'continue-as-new') {
      stop = await continueAsNewUnlessStopped(run);
      continue;
    }
    const closed = await rollBack(run, saga, stop);
    if (closed) return closed;
    // `resume`: retry from the deploy stage; deploys are idempotent, the same version is found again.
    // A new pass: the reverts of the last one fenced off its forward writes, not this one's.
    run.pass++;
    stop = run.usesReleaseRegistry && input.rollbackTo ? await rollBackToRelease(run, saga, input.rollbackTo) : await deliver(run, saga);
  }
}

function successText(run: RolloutRun): string {
  const { spec, input } = run;
  if (run.usesReleaseRegistry && input.rollbackTo)
    return `rolled back to release ${input.rollbackTo.release}: ${spec.targets.length} target(s) on the versions it promoted`;
  return `release ${spec.release} promoted on ${spec.targets.length} target(s)`;
}

// ---- 0-3: preflight, build, test, migrate (nothing deployed yet: no saga) --------------------

async function prepare(run: RolloutRun): Promise<Stop | undefined> {
  const { spec } = run;
  return inAbortableScope(run, async () => {
    const steps: [RolloutRun['stage'], string, () => Promise<Stop | undefined>][] = [
      ['preflight', 'reading every target before anything changes', () => preflightTargets(run)],
      ['build', 'building the artifact once', () => build(run)],
    ];
    if (spec.test) steps.push(['test', `running ${[spec.test.command].flat().join(' ')}`, () => runTests(run)]);
    if (spec.migration) steps.push(['migrate', 'migrating the schema before any traffic moves', () => migrate(run)]);
    for (const [stage, detail, body] of steps) {
      const stop = await runStage(run, stage, detail, body);
      if (stop) return stop;
    }
    return undefined;
  });
}

/** Read-only: every target exists, is reachable with the worker's credentials and is not mid-deployment. */
async function preflightTargets(run: RolloutRun): Promise<Stop | undefined> {
  const states = await settleAll([...run.targets.values()].map((t) => () => run.acts.reads.readTraffic({ target: t.spec })));
  const targets = [...run.targets.values()];
  for (const [i, traffic] of states.entries()) {
    const refusal = splitRefusal(targets[i], traffic);
    if (refusal) return refusal;
  }
  run.record('decision', `preflight: ${targets.map((t, i) => `${t.name} serves ${states[i].stableVersion}`).join(', ')}`);
  if (!patched(CANARY_PARITY_PATCH)) return undefined;
  return checkParity(
    run,
    targets.map((t, i) => ({ target: t.spec, version: states[i].stableVersion })),
  );
}

/** Marks runs whose preflight compares every target's configuration with the canary's. */
export const CANARY_PARITY_PATCH = 'canary-parity';

/**
 * The canary proves the release only for targets configured like it: each target's stable
 * configuration against the canary target of its provider (src/providers/parity.ts). `parity: fail`
 * stops here, before anything changed; `warn` (the default) records the differences for status and alerts.
 */
async function checkParity(run: RolloutRun, stable: { target: TargetSpec; version: string }[]): Promise<Stop | undefined> {
  // Specs recorded before the field existed have none: warn.
  const mode = run.spec.parity ?? 'warn';
  let check;
  try {
    check = await run.acts.reads.checkParity({ targets: stable, canary: run.spec.canary.targets });
  } catch (err) {
    // Under warn, a configuration that cannot be read (a permission the worker lacks, such as
    // lambda:GetFunctionConcurrency) is a warning like a difference, not a reason to stop.
    if (isCancellation(err) || run.gate.abort) throw err;
    if (mode === 'fail') return stopOf('stage-failed', `parity: could not read the targets' configuration: ${failureMessage(err)}`);
    const warning = `not checked: ${failureMessage(err)}`;
    run.record('decision', `parity (warn): ${warning}`);
    run.parityWarnings = [warning];
    return undefined;
  }
  const unchecked = check.unchecked.length ? `; not checked (no canary target of their provider): ${check.unchecked.join(', ')}` : '';
  if (check.reports.length === 0) {
    run.record('decision', `parity: ${check.compared} target(s) configured like the canary${unchecked}`);
    return undefined;
  }
  const messages = check.reports.map((r) => r.message);
  for (const m of messages) run.record('decision', `parity (${mode}): ${m}`);
  if (unchecked) run.record('decision', `parity${unchecked}`);
  if (mode === 'fail') return stopOf('stage-failed', `parity: ${messages.join(' | ')}`);
  run.parityWarnings = messages;
  return undefined;
}

/** The parity differences a `warn` let through, for the alert of a rollout that later fails. */
function parityNote(run: RolloutRun): string {
  return run.parityWarnings?.length ? ` Parity warnings from preflight: ${run.parityWarnings.join(' | ')}.` : '';
}

function splitRefusal(t: RolloutTarget, traffic: { stableVersion: string; newVersion?: string; newWeight: number }): Stop | undefined {
  // A weighted alias routes between published versions only, and a revert needs one to go back to.
  if (t.provider === 'aws-lambda' && !/^\d+$/.test(traffic.stableVersion))
    return stopOf(
      'stage-failed',
      `${t.name}: alias serves ${traffic.stableVersion}, not a published version: publish one and point the alias at it first`,
    );
  if (traffic.newVersion === undefined || traffic.newWeight <= 0) return undefined;
  return stopOf(
    'stage-failed',
    `${t.name} already routes ${traffic.newWeight} % to version ${traffic.newVersion}: another deployment is in progress`,
  );
}

/** Runs started before the runner split replay their commands on the worker's own queue, with the inputs of then. */
function runnerOf(run: RolloutRun) {
  return patched('runner-task-queue') ? commandsOn(run.input.runnerTaskQueue ?? RUNNER_TASK_QUEUE) : undefined;
}

async function build(run: RolloutRun): Promise<Stop | undefined> {
  const pinned = run.usesReleaseRegistry ? run.input.pinnedArtifact : undefined;
  if (pinned) {
    // A promotion: exactly the artifact the environment before verified, never rebuilt.
    run.artifact = pinned;
    run.record('decision', `artifact sha256 ${pinned.digest} (pinned by the promotion, not rebuilt)`);
  } else {
    const runner = runnerOf(run);
    run.artifact = runner
      ? await runner.buildArtifact(buildInput(run.spec, run.id, workflowInfo().runId))
      : await commands.buildArtifact({ artifact: run.spec.artifact, rolloutId: run.id, runId: workflowInfo().runId });
    run.record('decision', `artifact sha256 ${run.artifact.digest}`);
  }
  if (run.checksReleaseGates) {
    // Before the tests and the migration: a vetoed or wrongly pinned artifact gets no further
    // (asked again at the start of every deploy pass, the first one included).
    return releaseGateStop(run);
  }
  return run.usesReleaseRegistry ? refuseVetoed(run, run.artifact) : undefined;
}

/**
 * The registry's gate before a deploy pass: the artifact is not vetoed, and a promotion deploys
 * its pin (`pinMismatch`), which must be the artifact the environment before verified for this
 * release (asked of the registry, not taken from the input).
 */
async function releaseGateStop(run: RolloutRun): Promise<Stop | undefined> {
  const artifact = run.artifact!;
  const pin = run.input.pinnedArtifact;
  const mismatch = pin ? pinMismatch(pin, artifact, run.spec.artifact) : undefined;
  if (mismatch) return stopOf('stage-failed', `promotion refused: ${mismatch}; nothing was deployed`);
  const digests = digestsOf(artifact);
  const gate = await run.acts.reads.checkReleaseGate({
    service: run.spec.service,
    release: run.spec.release,
    digests,
    ...(run.input.environment ? { environment: run.input.environment } : {}),
    ...(pin ? { pinned: true } : {}),
  });
  if (gate.veto) return vetoStop(digests, gate.veto);
  if (gate.pinRefusal) return stopOf('stage-failed', `promotion refused: ${gate.pinRefusal}; nothing was deployed`);
  return undefined;
}

/** Before a rollback to a release routes: that release (or its artifact) must not be vetoed since the start. */
async function rollbackGateStop(run: RolloutRun, to: NonNullable<RolloutInput['rollbackTo']>): Promise<Stop | undefined> {
  const a = run.spec.artifact;
  const digests = [a.sha256, imageDigest(a.image)].filter((d): d is string => d !== undefined);
  const gate = await run.acts.reads.checkReleaseGate({
    service: run.spec.service,
    release: to.release,
    digests,
    byRelease: true,
    ...(run.input.environment ? { environment: run.input.environment } : {}),
  });
  if (!gate.veto) return undefined;
  const { release, veto } = gate.veto;
  return stopOf(
    'stage-failed',
    `rollback to release ${to.release} refused: ${release === to.release ? `release ${release}` : `its artifact (release ${release})`} was vetoed by ${veto.by}${veto.verified ? '' : ' (unverified)'} (${veto.reason}); nothing was routed`,
  );
}

function vetoStop(digests: string[], found: { release: string; veto: { by: string; verified: boolean; reason: string } }): Stop {
  const { release, veto } = found;
  return stopOf(
    'stage-failed',
    `artifact ${digests.join(', ')} is vetoed: release ${release} was marked bad by ${veto.by}${veto.verified ? '' : ' (unverified)'} (${veto.reason}); nothing was deployed`,
  );
}

/** Every deploy passes here (plain starts, promotions, train members): a vetoed digest never moves traffic. */
async function refuseVetoed(run: RolloutRun, artifact: ArtifactRef): Promise<Stop | undefined> {
  const digests = digestsOf(artifact);
  const found = await run.acts.reads.findVeto({ service: run.spec.service, digests });
  return found ? vetoStop(digests, found) : undefined;
}

async function runTests(run: RolloutRun): Promise<undefined> {
  const { spec } = run;
  const runner = runnerOf(run);
  if (runner) await runner.runStageCommand(stageCommandInput(spec, 'test'));
  else await commands.runStageCommand({ stage: 'test', command: spec.test!.command, cwd: spec.test!.cwd });
  return undefined;
}

/** A migration is never cut off half-way: an abort waits for it, then closes the rollout. */
async function migrate(run: RolloutRun): Promise<Stop | undefined> {
  const m = run.spec.migration!;
  const env = { ROLLGATE_SCHEMA_REV: run.spec.schema_rev };
  const runner = runnerOf(run);
  const current = await CancellationScope.nonCancellable(async () => {
    if (runner) await runner.runStageCommand(stageCommandInput(run.spec, 'migrate'));
    else await commands.runStageCommand({ stage: 'migrate', command: m.command, cwd: m.cwd, env });
    run.migrated = true;
    return runner
      ? runner.readSchemaRev(stageCommandInput(run.spec, 'schema-rev'))
      : commands.readSchemaRev({ command: m.current_command, cwd: m.cwd });
  });
  if (current !== run.spec.schema_rev)
    return stopOf('stage-failed', `migration reports schema_rev "${current}", spec expects "${run.spec.schema_rev}"`);
  run.record('decision', `schema_rev ${current} verified`);
  return takePendingStop(run);
}

async function endBeforeDeploy(run: RolloutRun, stop: Stop): Promise<RolloutResult> {
  const migrated = run.migrated ? `after the migration to schema_rev ${run.spec.schema_rev} completed; ` : '';
  if (stop.kind === 'aborted') return finish(run, 'aborted', `${stop.message}: ${migrated}nothing was deployed`);
  run.failedStage = run.stage;
  const { service, release } = run.spec;
  // A train member: the train stops, reverts the others and sends the one alert.
  if (run.train) return finish(run, 'failed', stop.message);
  await alertOperator(
    run,
    'failed',
    `rollgate: ${service} ${release} failed in stage ${run.stage} before anything was deployed: ${stop.message}${parityNote(run)}`,
    {
      reason: stop.message,
    },
  );
  return finish(run, 'failed', stop.message);
}

// ---- rollback to a release: preflight, locks, freeze windows, approval, route back --------------

/**
 * `rollgate rollback --to RELEASE`: every target back on the version that release promoted. No
 * build, deploy or canary analysis; the spec's locks, freeze windows and pause/abort still apply,
 * and one approval when the environment asks for it. Each target's revert (to what serves now) is
 * pushed before its route, so a failure midway puts back everything already moved.
 */
async function rollBackToRelease(run: RolloutRun, saga: Saga, to: NonNullable<RolloutInput['rollbackTo']>): Promise<Stop | undefined> {
  return inAbortableScope(run, async () => {
    const pending = takePendingStop(run);
    if (pending) return pending;
    return withLocks(run, () =>
      runStage(run, 'promote', `every target to the versions release ${to.release} promoted`, () => routeBack(run, saga, to)),
    );
  });
}

/** Nothing has changed yet: a refusal here closes the rollout as failed, like a preflight refusal of a release. */
async function checkRollbackTo(run: RolloutRun, to: NonNullable<RolloutInput['rollbackTo']>): Promise<Stop | undefined> {
  return inAbortableScope(run, () =>
    runStage(run, 'preflight', `reading every target before going back to release ${to.release}`, () => preflightRollbackTo(run, to)),
  );
}

/** Read-only: each target has a recorded version that still exists, and no deployment in progress. */
async function preflightRollbackTo(run: RolloutRun, to: NonNullable<RolloutInput['rollbackTo']>): Promise<Stop | undefined> {
  const targets = [...run.targets.values()];
  const unrecorded = targets.filter((t) => !to.versions.some((v) => v.name === t.name)).map((t) => t.name);
  if (unrecorded.length) return stopOf('stage-failed', `release ${to.release} recorded no version for ${unrecorded.join(', ')}`);
  const states = await settleAll(targets.map((t) => () => run.acts.reads.readTraffic({ target: t.spec })));
  for (const [i, t] of targets.entries()) {
    const refusal = splitRefusal(t, states[i]);
    if (refusal) return refusal;
    t.stableVersion = states[i].stableVersion;
    t.newVersion = to.versions.find((v) => v.name === t.name)!.version;
  }
  const missing = await run.acts.reads.findMissingVersions({ targets: targets.map((t) => ({ target: t.spec, version: t.newVersion! })) });
  if (missing.length) return stopOf('stage-failed', `cannot go back to release ${to.release}: ${missing.join('; ')}`);
  run.record('decision', `rollback to ${to.release}: ${targets.map((t) => `${t.name} ${t.stableVersion} → ${t.newVersion}`).join(', ')}`);
  run.publish();
  return undefined;
}

async function routeBack(run: RolloutRun, saga: Saga, to: NonNullable<RolloutInput['rollbackTo']>): Promise<Stop | undefined> {
  if (to.approval) {
    const stop = await awaitApproval(run, {
      name: 'rollback',
      targets: run.spec.targets.map((t) => t.name),
      steps: [100],
      bake: '0s',
      approval: true,
    });
    if (stop) return stop;
  }
  const stop = await checkpoint(run);
  if (stop) return stop;
  // After the approval and any freeze window, right before the first route: a veto since the start counts.
  if (run.checksReleaseGates) {
    const vetoed = await rollbackGateStop(run, to);
    if (vetoed) return vetoed;
  }
  await settleAll(
    [...run.targets.values()].map((t) => async () => {
      if (t.newVersion === t.stableVersion) return run.record('decision', `${t.name} already serves version ${t.newVersion}`);
      pushRevert(run, saga, t);
      await run.acts.changes.routeAll({ target: t.spec, version: t.newVersion!, fence: run.fence() });
      run.setWeight(t.name, 100);
    }),
  );
  run.record('decision', `every target on the versions release ${to.release} promoted`);
  return undefined;
}

/** Best effort: a registry that misses this close can be told again (`rollgate releases SERVICE --record RUN`). */
async function announceClose(run: RolloutRun): Promise<void> {
  try {
    await run.acts.reads.announceRolloutClosed({
      service: run.spec.service,
      taskQueue: workflowInfo().taskQueue,
      workflowId: run.id,
      runId: workflowInfo().runId,
    });
  } catch (err) {
    run.record('decision', `could not tell the release registry that this rollout closed: ${failureMessage(err)}`);
  }
}

// ---- 4-8: deploy, verify, canary, region waves, promote -------------------------------------

async function deliver(run: RolloutRun, saga: Saga): Promise<Stop | undefined> {
  return inAbortableScope(run, async () => {
    const pending = takePendingStop(run);
    if (pending) return pending;
    // Every deploy pass asks the gate first (after the tests and migration, and on every `resume`
    // after a rollback: a veto may have come since). Runs from before the patch keep their exact body.
    const deployBody = run.checksReleaseGates
      ? async () => (await releaseGateStop(run)) ?? deployCanaryRevisions(run, saga)
      : () => deployCanaryRevisions(run, saga);
    const deployed = await runStage(run, 'deploy', 'publishing the new revision with 0 % traffic', deployBody);
    if (deployed) return deployed;
    const verified = await runStage(run, 'verify', 'probes, deployment contract and env drift', () => verify(run));
    if (verified) return verified;
    return withLocks(run, () => shiftAndPromote(run));
  });
}

/** The traffic stages, from the start or (a continued run) from where the previous run stopped. */
async function shiftAndPromote(run: RolloutRun, from?: PipelinePosition): Promise<Stop | undefined> {
  try {
    return await trafficStages(run, from);
  } finally {
    run.position = undefined;
  }
}

async function trafficStages(run: RolloutRun, from: PipelinePosition | undefined): Promise<Stop | undefined> {
  const { spec } = run;
  const at = (wave: number) => (from?.wave === wave ? from : undefined);
  // The position is set before each stage starts: a pause at the stage's start hands over from there.
  if (!from || from.wave < 0) {
    run.position = at(-1) ?? { wave: -1, step: 0, shifted: false, approved: true };
    const stop = await afterTrainBarrier(run, 1, () =>
      runStage(run, 'canary', `shifting ${spec.canary.weight} % to the canary`, () => canary(run, at(-1))),
    );
    if (stop) return stop;
  }
  for (const [i, wave] of spec.waves.entries()) {
    if (from && i < from.wave) continue;
    run.position = at(i) ?? { wave: i, step: 0, shifted: false, approved: false };
    // Lockstep trains: traffic stage 1 is the canary, 2 the first region wave, and so on.
    const stop = await afterTrainBarrier(run, i + 2, () =>
      runStage(run, `wave:${wave.name}`, `wave ${wave.name}`, () => regionWave(run, i, wave, at(i))),
    );
    if (stop) return stop;
  }
  run.position = { wave: spec.waves.length, step: 0, shifted: false, approved: true };
  return runStage(run, 'promote', 'all traffic to the new version', () => promote(run));
}

/**
 * Lockstep train members wait for their train before each traffic stage (1 = the canary). Every
 * other rollout runs the stage directly: no extra await, so its commands and timings are unchanged.
 */
function afterTrainBarrier(run: RolloutRun, stage: number, body: () => Promise<Stop | undefined>): Promise<Stop | undefined> {
  const train = run.train;
  if (!train?.lockstep) return body();
  return train.barrier(stage).then((stop) => stop ?? body());
}

/** A continued run: the targets are deployed and verified, the locks held; the saga is rebuilt from the targets. */
async function deliverContinued(run: RolloutRun, saga: Saga, c: ContinuedRollout): Promise<Stop | undefined> {
  for (const t of run.targets.values()) if (t.newVersion !== undefined && t.stableVersion !== undefined) pushRevert(run, saga, t);
  run.record('decision', `continued as new run ${c.runs} at ${positionText(run, c.position)}`);
  // Work before this point (the run's start, its nonce and checks) is the same in every continued run.
  run.pickedUpAtEvents = workflowInfo().historyLength;
  return inAbortableScope(run, async () => {
    const pending = takePendingStop(run);
    if (pending) return pending;
    return withLocks(run, () => shiftAndPromote(run, c.position));
  });
}

function positionText(run: RolloutRun, p: PipelinePosition): string {
  if (p.wave < 0) return 'the canary';
  if (p.wave >= run.spec.waves.length) return 'promote';
  const wave = run.spec.waves[p.wave];
  return `wave ${wave.name}, step ${wave.steps[p.step] ?? wave.steps[0]} %${p.shifted ? ' (shifted)' : ''}`;
}

/**
 * Hand over to a new run (same workflow id) with everything needed to go on here. An abort or
 * breach that arrived first is returned instead, for this run to act on.
 */
async function continueAsNewUnlessStopped(run: RolloutRun): Promise<Stop> {
  if (!allHandlersFinished()) await condition(allHandlersFinished);
  const pending = takePendingStop(run);
  if (pending) {
    run.handoverAt = undefined;
    return pending;
  }
  const next = run.snapshot();
  run.record('decision', `continuing as new (run ${next.runs}) after ${workflowInfo().historyLength} history events`);
  return continueAsNew<typeof rolloutWorkflow>({
    spec: run.spec,
    startedBy: run.input.startedBy,
    continued: next,
    ...(run.input.train ? { train: run.input.train } : {}),
    ...(run.input.environment ? { environment: run.input.environment } : {}),
    // The gate re-checks the pin on a later resume of the continued run (runs before the patch carried no pin).
    ...(run.checksReleaseGates && run.input.pinnedArtifact ? { pinnedArtifact: run.input.pinnedArtifact } : {}),
    ...(run.input.continueAsNewAfterEvents !== undefined ? { continueAsNewAfterEvents: run.input.continueAsNewAfterEvents } : {}),
    ...(run.input.parkHandoverAfterMs !== undefined ? { parkHandoverAfterMs: run.input.parkHandoverAfterMs } : {}),
  });
}

function contractOf(spec: RolloutSpec): ReleaseContract {
  return releaseContract(spec);
}

async function deployCanaryRevisions(run: RolloutRun, saga: Saga): Promise<Stop | undefined> {
  const stops = await settleAll(
    [...run.targets.values()].map((t) => async (): Promise<Stop | undefined> => {
      if (t.stableVersion === undefined) {
        const traffic = await run.acts.reads.readTraffic({ target: t.spec });
        const refusal = splitRefusal(t, traffic);
        if (refusal) return refusal;
        t.stableVersion = traffic.stableVersion;
      }
      // Pushed before the deploy: a deploy that fails or is cancelled part-way may already have
      // tagged a revision; the undo (100 % on stable, tag dropped) is harmless when nothing changed.
      pushRevert(run, saga, t);
      const res = await run.acts.changes.deployRevision({
        target: t.spec,
        artifact: run.artifact!,
        contract: contractOf(run.spec),
        rolloutId: run.id,
        fence: run.fence(),
      });
      t.newVersion = res.newVersion;
      run.record(
        'decision',
        `${t.name}: ${res.created ? 'published' : 'found already published'} version ${res.newVersion} (stable ${t.stableVersion})`,
      );
      if (t.newVersion === t.stableVersion)
        return stopOf('stage-failed', `${t.name} already serves release ${run.spec.release} (version ${t.newVersion})`);
      return undefined;
    }),
  );
  run.publish();
  return stops.find((s) => s !== undefined);
}

/** Undo for everything a target goes through: 100 % back on its stable version (and its tag dropped). */
function pushRevert(run: RolloutRun, saga: Saga, t: RolloutTarget): void {
  const stable = t.stableVersion!;
  saga.push(`revert ${t.name}`, 'revert-targets', async () => {
    // The revert marks the target: a forward write of this pass still in flight is refused after it.
    await run.acts
      .compensationsFor(run.spec)
      .routeAll({ target: t.spec, version: stable, dropTag: true, fence: run.fence(), revert: true });
    run.setWeight(t.name, 0);
    run.record('compensation', `${t.name}: 100 % back on version ${stable}`);
  });
}

/** Revert mode: the targets run the promoted release at 100 %; the saga puts them back. */
function loadPromotedRelease(run: RolloutRun, saga: Saga, r: NonNullable<RolloutInput['revertPromoted']>): Stop {
  run.artifact = r.artifact;
  for (const p of r.targets) {
    const t = run.targets.get(p.name);
    if (!t) continue;
    t.stableVersion = p.stableVersion;
    t.newVersion = p.newVersion;
    t.weight = 100;
    pushRevert(run, saga, t);
  }
  run.record('decision', `post-promotion analysis failed: reverting release ${run.spec.release} on every target`);
  return stopOf('breach', `no increase in error rate after rollout: ${r.reason}`);
}

async function verify(run: RolloutRun): Promise<Stop | undefined> {
  const reports = await settleAll(
    [...run.targets.values()].map(
      (t) => () =>
        run.acts.watched.verifyRevision({
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
  if (failed.length) return stopOf('stage-failed', `verify failed: ${failed.map((r) => r.summary).join(' | ')}`);
  const all = [...run.targets.values()].map((t) => t.spec);
  await run.acts.watched.preflightMetrics({ targets: analysisTargets(run, all), rule: run.spec.rollback });
  return undefined;
}

async function canary(run: RolloutRun, from?: PipelinePosition): Promise<Stop | undefined> {
  const { canary } = run.spec;
  const targets = canary.targets.map((n) => run.targets.get(n)!.spec);
  const bakeMs = mustDurationMs(canary.bake);
  run.position = { wave: -1, step: 0, shifted: from?.shifted ?? false, approved: true };
  if (!run.position.shifted) {
    const stop = await shiftTraffic(run, targets, canary.weight, 0);
    if (stop) return stop;
    run.position.shifted = true;
  }
  return bakeAndAnalyze(run, targets, bakeMs, `canary ${canary.weight} %`);
}

async function regionWave(run: RolloutRun, index: number, wave: WaveSpec, from?: PipelinePosition): Promise<Stop | undefined> {
  run.position = { wave: index, step: from?.step ?? 0, shifted: from?.shifted ?? false, approved: from?.approved ?? false };
  if (wave.approval && !run.position.approved) {
    const stop = await awaitApproval(run, wave);
    if (stop) return stop;
  }
  run.position.approved = true;
  const targets = wave.targets.map((n) => run.targets.get(n)!.spec);
  const bakeMs = mustDurationMs(wave.bake);
  for (let i = from?.step ?? 0; i < wave.steps.length; i++) {
    const step = wave.steps[i];
    // A continued run whose previous run had made this shift goes straight on to the bake.
    const shifted = from !== undefined && i === from.step && from.shifted;
    run.position = { wave: index, step: i, shifted, approved: true };
    if (!shifted) {
      const stop = await shiftTraffic(run, targets, step, bakeMs);
      if (stop) return stop;
      run.position.shifted = true;
    }
    const stop = await bakeAndAnalyze(run, targets, bakeMs, `wave ${wave.name} at ${step} %`);
    if (stop) return stop;
  }
  return undefined;
}

/** Before any traffic moves: an operator pause, a freeze window, an abort or a known breach comes first. */
async function checkpoint(run: RolloutRun): Promise<Stop | undefined> {
  return (await holdWhilePaused(run)) ?? (await holdForFreezeWindows(run)) ?? takePendingStop(run);
}

/** One traffic step on several targets; every sibling settles before a failure is acted on. */
async function shiftTraffic(run: RolloutRun, targets: TargetSpec[], percent: number, bakeMs: number): Promise<Stop | undefined> {
  const stop = await checkpoint(run);
  if (stop) return stop;
  await settleAll(
    targets.map((spec) => async () => {
      const t = run.targets.get(spec.name)!;
      const shiftAtMs = Date.now();
      await run.acts.changes.setTraffic({
        target: spec,
        stableVersion: t.stableVersion!,
        newVersion: t.newVersion!,
        percent,
        fence: run.fence(),
      });
      if (percent >= 100 && t.weight < 100) t.baselineWindow = baselineBefore(shiftAtMs, bakeMs);
      run.setWeight(t.name, percent);
    }),
  );
  run.record('decision', `${targets.map((t) => t.name).join(', ')} at ${percent} %`);
  return undefined;
}

/** The window in which the stable version last served traffic, before a shift to 100 %: its last bake, at least a minute. */
function baselineBefore(shiftAtMs: number, bakeMs: number): { startMs: number; endMs: number } {
  return { startMs: shiftAtMs - Math.max(bakeMs, 60_000), endMs: shiftAtMs };
}

async function promote(run: RolloutRun): Promise<Stop | undefined> {
  const stop = await checkpoint(run);
  if (stop) return stop;
  const targets = [...run.targets.values()];
  await settleAll(
    targets.map((t) => async () => {
      if (t.weight < 100) t.baselineWindow = baselineBefore(Date.now(), 0);
      await run.acts.changes.routeAll({ target: t.spec, version: t.newVersion!, fence: run.fence() });
      run.setWeight(t.name, 100);
    }),
  );
  // A train member records the release once its train releases it (it may still be reverted).
  if (!run.train) await recordPromotion(run);
  if (run.gate.abort && !run.train) run.record('operator', 'abort arrived after every target was promoted: the release stays promoted');
  return undefined;
}

/** Promoted. Bookkeeping from here on never reverts a healthy release: a failure is recorded. */
async function recordPromotion(run: RolloutRun): Promise<void> {
  const targets = [...run.targets.values()];
  await CancellationScope.nonCancellable(() =>
    Promise.all(
      targets.map(async (t) => {
        try {
          await run.acts.reads.recordRelease({
            target: t.spec,
            version: t.newVersion!,
            release: run.spec.release,
            digest: run.artifact!.digest,
          });
        } catch (err) {
          run.record('decision', `${t.name}: release promoted, but recording it on the target failed: ${failureMessage(err)}`);
        }
      }),
    ),
  );
}

export function analysisTargets(run: RolloutRun, targets: TargetSpec[]) {
  return targets.map((spec) => {
    const t = run.targets.get(spec.name)!;
    return { target: spec, stableVersion: t.stableVersion!, newVersion: t.newVersion! };
  });
}

// ---- stages, locks, saga, pause, finish -------------------------------------------------------

/** Runs `body` in a scope that an abort cancels (waits end, cancellable activities stop). */
async function inAbortableScope(run: RolloutRun, body: () => Promise<Stop | undefined>): Promise<Stop | undefined> {
  const scope = new CancellationScope();
  run.gate.onAbort = () => scope.cancel();
  try {
    return await scope.run(body);
  } catch (err) {
    if (isCancellation(err) || run.gate.abort) return run.gate.abortStop();
    throw err;
  } finally {
    run.gate.onAbort = undefined;
  }
}

/** The one place where failures of a stage become a Stop: activity errors, cancellations by an abort. */
async function runStage(
  run: RolloutRun,
  stage: RolloutRun['stage'],
  detail: string,
  body: () => Promise<Stop | undefined>,
): Promise<Stop | undefined> {
  const t0 = Date.now();
  const service = run.spec.service;
  let stop: Stop | undefined;
  try {
    stop = await holdWhilePaused(run);
    if (stop) return stop;
    run.enterStage(stage, detail);
    stop = await body();
  } catch (err) {
    stop =
      isCancellation(err) || run.gate.abort
        ? run.gate.abortStop()
        : stopOf('stage-failed', `stage ${stage} failed: ${failureMessage(err)}`);
  }
  // A handover to the next run is not the end of the stage: that run reports it.
  if (stop?.kind !== 'continue-as-new')
    emitRolloutEvent({ kind: 'stage', service, stage, durationMs: Date.now() - t0, outcome: stop ? 'failed' : 'ok' });
  return stop;
}

/** Signals that `body` stopped inside the locks: the locks stay held until the saga has reverted. */
class StoppedHoldingLocks extends Error {
  constructor(readonly stop: Stop) {
    super(stop.message);
  }
}

async function withLocks(run: RolloutRun, body: () => Promise<Stop | undefined>): Promise<Stop | undefined> {
  let promoted = false;
  try {
    await withDependencyLocks(run, async () => {
      const stop = await body();
      if (stop) throw new StoppedHoldingLocks(stop);
      promoted = true;
    });
    return undefined;
  } catch (err) {
    if (err instanceof StoppedHoldingLocks) return err.stop;
    if (promoted) {
      // The release is promoted; the lock workflow drops a holder that has closed.
      run.record('decision', `could not release shared dependency locks: ${failureMessage(err)}`);
      return undefined;
    }
    if (isCancellation(err) || run.gate.abort) return run.gate.abortStop();
    return stopOf('stage-failed', `shared dependency lock: ${failureMessage(err)}`);
  }
}

async function releaseLocks(run: RolloutRun): Promise<void> {
  try {
    await releaseDependencyLocks(run);
  } catch (err) {
    run.record('decision', `could not release shared dependency locks: ${failureMessage(err)}`);
  }
}

/** The saga, the alert, and the wait for an operator. A result when the rollout closes, undefined on `resume`. */
async function rollBack(run: RolloutRun, saga: Saga, stop: Stop): Promise<RolloutResult | undefined> {
  let outcome = await compensate(run, saga, stop);
  // A failed compensation escalates (alert, state rollback-failed) and waits for the operator:
  // `resume` retries the failed reverts, `abort` tries them once more and closes the rollout.
  while (outcome === 'rollback-failed') {
    if ((await waitForOperator(run, 'rollback-failed')) === 'abort') return closeAfterFailedRevert(run, saga, stop);
    outcome = await compensate(run, saga, stop);
  }
  await restoreLatestVersions(run);
  await releaseLocks(run);
  if (stop.kind === 'aborted') return finish(run, 'aborted', stop.message);
  // A train member closes once reverted: the train pauses (and alerts) for the whole train.
  if (run.train) return finish(run, 'rolled-back', stop.message);
  if ((await waitForOperator(run, 'paused')) === 'abort') return finish(run, 'rolled-back', run.rollbackReason);
  return undefined;
}

/** Marks runs that put Lambda `$LATEST` back on the stable version after the reverts. */
export const RESTORE_LATEST_PATCH = 'lambda-restore-latest';

/**
 * The deploy changed each Lambda function's `$LATEST` (code and environment) before publishing; a
 * revert moves only the alias. Once every target serves its stable version again, `$LATEST` is put
 * back too, so an unqualified invoke and the next deploy start from the stable code. Best effort:
 * a failure is recorded, the traffic is already safe.
 */
async function restoreLatestVersions(run: RolloutRun): Promise<void> {
  const lambdas = [...run.targets.values()].filter(
    // A deploy cancelled part-way may have changed $LATEST without publishing: every deployed-to target.
    (t) => t.provider === 'aws-lambda' && t.stableVersion !== undefined && t.weight === 0,
  );
  if (lambdas.length === 0 || !patched(RESTORE_LATEST_PATCH)) return;
  await CancellationScope.nonCancellable(() =>
    Promise.all(
      lambdas.map(async (t) => {
        try {
          const { changed } = await run.acts.housekeeping.restoreLatest({ target: t.spec, version: t.stableVersion! });
          if (changed) run.record('compensation', `${t.name}: $LATEST back on the code and environment of version ${t.stableVersion}`);
        } catch (err) {
          run.record('decision', `${t.name}: could not put $LATEST back on version ${t.stableVersion}: ${failureMessage(err)}`);
        }
      }),
    ),
  );
}

/** `abort` in rollback-failed: the operator may have fixed the target, so the reverts get one last try. */
async function closeAfterFailedRevert(run: RolloutRun, saga: Saga, stop: Stop): Promise<RolloutResult> {
  run.enterStage('rollback', `closing: a last try of the failed revert(s) after ${stop.kind}`);
  const failed = (await saga.compensate()).filter((o) => !o.ok);
  if (failed.length === 0) await restoreLatestVersions(run);
  await releaseLocks(run);
  const reason = run.rollbackReason;
  if (failed.length === 0) {
    const text = `rollgate: ${run.spec.service} ${run.spec.release}: the failed revert(s) succeeded on a last try; every target is back on its stable version and the rollout is closed.`;
    await alertOperator(run, 'rolled-back', text, { reason: stop.message });
    return finish(run, stop.kind === 'aborted' ? 'aborted' : 'rolled-back', `${reason}; reverted when closed by abort`);
  }
  run.state = 'rollback-failed';
  const text = `rollgate: ${run.spec.service} ${run.spec.release} closed by abort while its revert still fails: ${failed
    .map((f) => `${f.label}: ${f.error}`)
    .join('; ')}. These targets may still serve the new version: put them back by hand${
    run.spec.shared_dependencies.length ? ` (the shared dependency locks ${run.spec.shared_dependencies.join(', ')} were released)` : ''
  }.`;
  await alertOperator(run, 'closed-rollback-failed', text, { reason: stop.message });
  return finish(run, 'rollback-failed', reason);
}

async function compensate(run: RolloutRun, saga: Saga, stop: Stop): Promise<'reverted' | 'rollback-failed'> {
  run.rollbackReason = stop.message;
  const stageAtStop = run.stage === 'rollback' ? (run.failedStage ?? run.stage) : run.stage;
  if (stop.kind !== 'aborted') run.failedStage = stageAtStop;
  run.enterStage('rollback', `${stop.kind}: ${stop.message}`);
  const outcomes = await saga.compensate();
  const failed = outcomes.filter((o) => !o.ok);
  const reverted = outcomes.filter((o) => o.ok && o.label.startsWith('revert ')).map((o) => o.label.slice(7));
  for (const f of failed) emitRolloutEvent({ kind: 'compensation-failed', service: run.spec.service, step: f.label });
  if (failed.length) {
    run.operatorMark = run.gate.mark(); // an abort sent before the escalation is not the answer to it
    run.state = 'rollback-failed';
    run.pausedAfterRollback = true;
    run.record('alert', `escalating: ${failed.length} compensation(s) failed after retries`);
    const text = `ROLLBACK FAILED for ${run.spec.service} ${run.spec.release} after ${stop.kind} in ${stageAtStop}: ${failed
      .map((f) => `${f.label}: ${f.error}`)
      .join(
        '; ',
      )}. Fix the target, then \`rollgate resume ${run.id}\` to retry the revert (\`rollgate abort ${run.id}\` closes the rollout).${parityNote(run)}`;
    run.setDetail(text);
    await alertOperator(run, 'rollback-failed', text, { reason: stop.message, revertedTargets: reverted });
    if (run.train) await run.train.reportRollbackFailed();
    return 'rollback-failed';
  }
  if (run.train) {
    run.setDetail(`reverted after ${stop.kind}: ${stop.message}; train ${run.train.membership.name} decides what happens next`);
    run.record('compensation', `reverted: ${reverted.join(', ') || 'nothing had been deployed'} (the train sends the alert)`);
  } else if (stop.kind !== 'aborted') {
    // An abort that came before the pause still closes it (the reverts are done); a resume must come after.
    run.operatorMark = { resumes: run.gate.resumes, aborts: run.gate.abort ? run.gate.aborts - 1 : run.gate.aborts };
    run.state = 'paused';
    run.pausedAfterRollback = true;
    const text = `rollgate: ${run.spec.service} ${run.spec.release} rolled back after ${stop.kind} in ${stageAtStop}: ${stop.message}${unverifiedNote(run, stop)}. Reverted: ${
      reverted.join(', ') || 'nothing had been deployed'
    }. Pipeline paused: \`rollgate resume ${run.id}\` retries from the canary, \`rollgate abort ${run.id}\` closes it.${parityNote(run)}`;
    run.setDetail(`pipeline paused after ${stop.kind}: ${stop.message}`);
    await alertOperator(run, 'rolled-back', text, { reason: stop.message, revertedTargets: reverted });
  }
  return 'reverted';
}

/** Verified identities: an alert says when the person who rejected was not verified (no token checked). */
function unverifiedNote(run: RolloutRun, stop: Stop): string {
  const d = run.gate.lastDecision;
  return stop.kind === 'rejected' && d && !d.verified ? ` (${d.by}: identity unverified)` : '';
}

/** Paused after a rollback (or a failed one): wait for `resume` (retry) or `abort` (close). */
async function waitForOperator(run: RolloutRun, state: RolloutState): Promise<'resume' | 'abort'> {
  run.state = state;
  run.pausedAfterRollback = true;
  run.publish();
  if ((await run.gate.awaitOperator(run.operatorMark)) === 'abort') return 'abort';
  run.state = 'running';
  run.pausedAfterRollback = false;
  run.rollbackReason = undefined;
  run.lastAnalysis = undefined;
  run.publish();
  return 'resume';
}

function finish(run: RolloutRun, state: RolloutState, reason?: string): RolloutResult {
  run.state = state;
  run.bakeEndsAtMs = undefined;
  run.gate.awaitingApproval = undefined;
  run.enterStage('done', `${state}${reason ? `: ${reason}` : ''}`);
  emitRolloutEvent({ kind: 'finished', service: run.spec.service, release: run.spec.release, state });
  return { state, reason, status: run.status() };
}
