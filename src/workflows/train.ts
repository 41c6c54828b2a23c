/**
 * A release train: one parent workflow, a child rollout per service. Reads like the pipeline:
 * check the starter → start members in dependency order (a member starts once what it depends on
 * is promoted and held; independent ones in parallel; in lockstep all at once, moving stage by
 * stage together) → every member promoted: release them all. A member that breaches or fails stops
 * the train: the others are reverted in reverse dependency order (dependents first), each with its
 * own saga, then the train pauses with one alert naming that member, until `resume` (the whole
 * train again) or `abort` (close). An operator's `abort` of the train reverts every member the same
 * way and closes it.
 */
import { condition, getExternalWorkflowHandle, ParentClosePolicy, startChild, workflowInfo } from '@temporalio/workflow';
import type { rolloutWorkflow } from './rollout';
import { SA, type RolloutInput, type RolloutResult } from '../contract';
import { trainDecisionSignal, type TrainDecision, type TrainInput, type TrainResult, type TrainState } from '../contract';
import { TrainRun, type TrainMember, type TrainStop } from './train-state';
import { revertOrder } from './train-order';
import { alerts, local } from './activity-options';
import { failureMessage } from './saga';

export async function trainWorkflow(input: TrainInput): Promise<TrainResult> {
  const train = new TrainRun(input);
  train.installHandlers();
  train.publish();
  train.nonce = await local.newMessageNonce();
  const refused = await train.checkStarter();
  if (refused) return finish(train, 'failed', refused);
  train.record(
    'decision',
    `release order: ${train.order.join(' -> ')}${train.spec.lockstep ? ' (lockstep: every member moves stage by stage together)' : ''}`,
  );
  for (;;) {
    const stop = await runMembers(train);
    if (!stop) return releaseAll(train);
    await revertMembers(train, stop);
    if (stop.aborted || train.abort)
      return finish(train, 'aborted', `${stop.message}; reverted: ${train.reverted.join(', ') || 'nothing'}`);
    await pauseAfterRollback(train, stop);
    if ((await train.awaitOperator()) === 'abort') return finish(train, 'rolled-back', train.reason);
    train.pass++;
    train.pausedAfterRollback = false;
    train.state = 'running';
    train.resetMembers();
    train.record('operator', `retrying the train (pass ${train.pass})`);
    train.changed();
  }
}

// ---- members in order (or lockstep), until every one is promoted and held ----------------------

async function runMembers(train: TrainRun): Promise<TrainStop | undefined> {
  train.setDetail(train.spec.lockstep ? 'members moving in lockstep' : 'members starting in dependency order');
  for (;;) {
    // Taken before acting: a report that arrives while a `go` is being sent wakes the next round.
    const seen = train.version;
    const stop = train.stopToActOn();
    if (stop) return stop;
    if (train.allHeld()) return undefined;
    if (!train.paused) {
      for (const m of train.startableMembers()) void runMember(train, m);
      if (train.spec.lockstep) await advanceLockstep(train);
    }
    await condition(() => train.version !== seen);
  }
}

/** Start one member rollout as a child, then follow it to its close. */
async function runMember(train: TrainRun, m: TrainMember): Promise<void> {
  m.state = 'starting';
  m.startedAtMs = Date.now();
  train.record('decision', `starting ${m.rolloutId} (${m.release})${m.dependsOn.length ? `: ${m.dependsOn.join(', ')} promoted` : ''}`);
  train.changed();
  let handle;
  try {
    handle = await startChild<typeof rolloutWorkflow>('rolloutWorkflow', {
      workflowId: m.rolloutId,
      args: [memberInput(train, m)],
      // A member is never cut off mid-traffic by what happens to its train (a terminate): it keeps
      // holding or running, and an operator's `abort` of it still reverts it.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: SA.service, value: m.service },
        { key: SA.release, value: m.release },
        { key: SA.stage, value: 'pending' },
        { key: SA.state, value: 'running' },
        { key: SA.providers, value: [...new Set(m.spec.targets.map((t) => t.provider))] },
        { key: SA.train, value: train.spec.train },
      ],
      staticSummary: `train ${train.spec.train}: rollout ${m.service} ${m.release}`,
    });
  } catch (err) {
    m.state = 'failed';
    m.reason = `could not start ${m.rolloutId} (a rollout of ${m.service} may be open): ${failureMessage(err)}`;
    m.closedAtMs = Date.now();
    train.record('decision', m.reason);
    return train.changed();
  }
  m.runId = handle.firstExecutionRunId;
  if (m.state === 'starting') m.state = 'running';
  train.changed();
  try {
    const r = (await handle.result()) as RolloutResult;
    m.state = r.state;
    m.reason = r.reason;
  } catch (err) {
    m.state = 'failed';
    m.reason = `the member workflow did not complete: ${failureMessage(err)}`;
  }
  m.closedAtMs = Date.now();
  train.record('decision', `${m.service} closed ${m.state}${m.reason ? `: ${m.reason}` : ''}`);
  train.changed();
}

function memberInput(train: TrainRun, m: TrainMember): RolloutInput {
  return {
    spec: m.spec,
    startedBy: train.input.startedBy,
    ...(train.input.startToken ? { startToken: train.input.startToken } : {}),
    ...(train.input.runnerTaskQueue ? { runnerTaskQueue: train.input.runnerTaskQueue } : {}),
    train: { id: workflowInfo().workflowId, name: train.spec.train, nonce: train.nonce, lockstep: train.spec.lockstep },
  };
}

/**
 * Lockstep: the next traffic stage begins when every member that has it is ready for it (a member
 * with fewer stages is promoted and held meanwhile). A member that reports ready for a stage the
 * train already began (it continued as new and asks again) is told `go` again.
 */
async function advanceLockstep(train: TrainRun): Promise<void> {
  const members = [...train.members.values()];
  if (members.some((m) => m.state === 'pending' || m.state === 'starting')) return;
  for (;;) {
    const next = train.wave + 1;
    const need = members.filter((m) => m.stages >= next);
    if (need.length === 0 || !need.every((m) => m.state === 'held' || (m.readyAt ?? 0) >= next)) break;
    train.wave = next;
    train.record(
      'decision',
      `lockstep: every member ready for traffic stage ${next} (${next === 1 ? 'the canary' : `region wave ${next - 1}`}): go`,
    );
  }
  for (const m of members) {
    if ((m.state !== 'running' && m.state !== 'starting') || m.readyAt === undefined || m.readyAt > train.wave || m.toldGo >= m.readyAt)
      continue;
    m.toldGo = m.readyAt;
    await tell(train, m, { decision: 'go', wave: m.readyAt });
  }
  train.publish();
}

async function tell(train: TrainRun, m: TrainMember, d: Omit<TrainDecision, 'nonce'>): Promise<void> {
  try {
    await getExternalWorkflowHandle(m.rolloutId).signal(trainDecisionSignal, { ...d, nonce: train.nonce });
  } catch (err) {
    // It closed meanwhile: its close is what the train acts on.
    train.record('decision', `could not send ${d.decision} to ${m.rolloutId}: ${failureMessage(err)}`);
  }
}

// ---- the end: release every member, or revert them dependents first ---------------------------

async function releaseAll(train: TrainRun): Promise<TrainResult> {
  train.setDetail('every member promoted: releasing them');
  for (const service of train.order) await tell(train, train.member(service), { decision: 'release' });
  await condition(() => [...train.members.values()].every((m) => !train.isOpen(m)));
  const failed = [...train.members.values()].filter((m) => m.state !== 'succeeded');
  if (failed.length) return finish(train, 'failed', `released, but ${failed.map((m) => `${m.service} ${m.state}`).join(', ')}`);
  return finish(train, 'succeeded', `every member promoted: ${train.order.map((s) => `${s} ${train.member(s).release}`).join(', ')}`);
}

/** One member at a time, dependents first; each reverts with its own saga and closes before the next. */
async function revertMembers(train: TrainRun, stop: TrainStop): Promise<void> {
  train.stoppedBy = stop.member;
  train.reason = stop.message;
  train.setDetail(`stopping: ${stop.message}; reverting the members, dependents first`);
  train.record('decision', `train stops: ${stop.message}`);
  for (const service of revertOrder(train.nodes)) {
    const m = train.member(service);
    if (m.state === 'starting') await condition(() => m.state !== 'starting');
    if (!train.isOpen(m)) continue;
    train.record('compensation', `reverting ${service} (${m.state})`);
    train.setDetail(`stopping: reverting ${service} (dependents first)`);
    await tell(train, m, { decision: 'revert', reason: stop.member ? `member ${stop.member} stopped the train` : stop.message });
    await condition(() => !train.isOpen(m));
    train.reverted.push(service);
    train.record('compensation', `${service}: ${m.state}${m.reason ? ` (${m.reason})` : ''}`);
    train.changed();
  }
  for (const m of train.members.values()) if (m.state === 'pending') m.state = 'not-started';
  train.changed();
}

async function pauseAfterRollback(train: TrainRun, stop: TrainStop): Promise<void> {
  const failedReverts = [...train.members.values()].filter((m) => m.state === 'rollback-failed').map((m) => m.service);
  train.state = failedReverts.length ? 'rollback-failed' : 'paused';
  train.pausedAfterRollback = true;
  const text = `rollgate: train ${train.spec.train} stopped by ${stop.member}: ${stop.message}. Reverted (dependents first): ${
    train.reverted.join(', ') || 'no other member had started'
  }${failedReverts.length ? `. REVERT FAILED for ${failedReverts.join(', ')}: fix and resume or abort each of them` : ''}. Train paused: \`rollgate resume ${train.id}\` runs the whole train again, \`rollgate abort ${train.id}\` closes it.`;
  train.setDetail(`paused after ${stop.message}`);
  train.changed();
  await alertOnce(train, stop, text);
}

/** The train's one alert: to its own notify, else to the notify of the member that stopped it. */
async function alertOnce(train: TrainRun, stop: TrainStop, text: string): Promise<void> {
  const m = stop.member ? train.member(stop.member) : undefined;
  const webhookEnv = train.spec.notify?.webhook_env ?? m?.spec.notify?.webhook_env;
  if (!webhookEnv) return train.record('alert', `train-rolled-back (no notify webhook configured): ${text}`);
  try {
    const res = await alerts.sendAlert({
      webhookEnv,
      payload: {
        text,
        rollgate: {
          rolloutId: train.id,
          service: m?.service ?? train.spec.train,
          release: m?.release ?? train.spec.train,
          event: 'train-rolled-back',
          state: train.state,
          reason: stop.message,
          next: `rollgate resume ${train.id} | rollgate abort ${train.id}`,
        },
      },
    });
    train.record('alert', `train-rolled-back alert delivered (HTTP ${res.status})`);
  } catch (err) {
    train.record('alert', `train-rolled-back alert NOT delivered: ${failureMessage(err)}`);
  }
}

function finish(train: TrainRun, state: TrainState, reason?: string): TrainResult {
  train.state = state;
  train.pausedAfterRollback = false;
  train.setDetail(`${state}${reason ? `: ${reason}` : ''}`);
  train.record('stage', `train ${state}${reason ? `: ${reason}` : ''}`);
  train.publish();
  return { state, ...(reason ? { reason } : {}), status: train.status() };
}
