/**
 * Runs one fault schedule end to end: generate the spec and the schedule from the seed, seed the
 * emulators, arm the provider faults, start the rollout, fire the timed events, play the operator
 * (approvals, the decision after a rollback), then check the invariant in the emulators.
 */
import { randomBytes } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { startRollout } from '../../src/client';
import type { RolloutSpec } from '../../src/spec/schema';
import {
  abortSignal,
  approveUpdate,
  externalVerdictSignal,
  messageNonceQuery,
  pauseSignal,
  rejectUpdate,
  resumeSignal,
  type RolloutResult,
  type RolloutStatus,
} from '../../src/contract';
import { Rng } from './prng';
import { generateSpec } from './spec-gen';
import { describeSchedule, generateSchedule, serverRestartEvent, type FaultSchedule, type TimedEvent } from './fault-gen';
import { FAULTS_WEBHOOK_ENV, ScheduleEnv, type Shared } from './env';
import { fireEnvironmentEvent, type EventContext } from './env-events';
import { DriverBase, pollUntil, sleep } from './driver-base';
import { queryStatus, withDeadline } from './deadline';
import { armProviderFaults } from './provider-faults';
import { checkAlerts, checkOneVersion, checkPromoted, checkStable, describeTarget, type Violation } from './invariants';

export interface RunOptions {
  /** Worker in a child process, SIGKILLed at random moments (slower: one process per schedule). */
  kills: boolean;
  /** No progress for this long while running (not on a human decision) is a stall. */
  stallMs: number;
  /** Hard limit for one schedule. */
  timeoutMs: number;
  /** Wait this long after a stop before re-reading the emulators (late writes). */
  recheckMs: number;
  /** Restart the Temporal dev server once per schedule at a random moment (needs `shared.restartServer`). */
  restarts?: boolean;
  log?: (line: string) => void;
}

export const DEFAULT_RUN_OPTIONS: RunOptions = { kills: false, stallMs: 60_000, timeoutMs: 240_000, recheckMs: 2_000 };

export interface ScheduleResult {
  seed: number;
  service: string;
  shape: string;
  faults: string;
  /** The rollout's final state (or how the execution ended). */
  outcome: string;
  durationMs: number;
  violations: Violation[];
  /** What the operator/checker did, in order. */
  trace: string[];
}

export { queryStatus, withDeadline } from './deadline';

export async function runSchedule(seed: number, shared: Shared, opts: RunOptions = DEFAULT_RUN_OPTIONS): Promise<ScheduleResult> {
  const t0 = Date.now();
  const rng = new Rng(seed);
  // Names must be unique on the shared dev server and moto; the token does not touch the PRNG.
  const service = `fz${seed}-${randomBytes(2).toString('hex')}`;
  const env = new ScheduleEnv(shared, `faults-${service}`, opts.kills);
  const result: ScheduleResult = { seed, service, shape: '', faults: '', outcome: 'not started', durationMs: 0, violations: [], trace: [] };
  try {
    await env.start();
    const { spec, shape } = generateSpec(rng, { service, webhookEnv: FAULTS_WEBHOOK_ENV, workDir: env.workDir });
    const schedule = generateSchedule(rng, spec, { kills: opts.kills });
    // Half the schedules hand over to new runs (continue-as-new) every few analyses. A PRNG of its
    // own, so the spec and faults of a seed are what they were before this existed.
    const handover = new Rng(seed ^ 0x5ca1ab1e);
    const continueAsNewAfterEvents = handover.chance(0.5) ? handover.int(60, 160) : undefined;
    // Half hand over before parking in every wait or bake slice of a second or more (off by default), again
    // from a PRNG of its own so that nothing drawn before changes.
    const park = new Rng(seed ^ 0x9a4c0ff);
    const parkHandoverAfterMs = park.chance(0.5) ? park.int(300, 1000) : undefined;
    if (opts.restarts) {
      if (!shared.restartServer) throw new Error('--restarts needs a dev server this process started (not --temporal)');
      schedule.events.push(serverRestartEvent(new Rng(seed ^ 0x5e7e5)));
    }
    result.faults = describeSchedule(schedule) || 'no faults';
    result.shape = [
      shape,
      ...(continueAsNewAfterEvents ? [`continue-as-new after ${continueAsNewAfterEvents} events`] : []),
      ...(parkHandoverAfterMs ? [`hand over before waits of ${parkHandoverAfterMs} ms`] : []),
    ].join(', ');
    await env.seed(spec);
    armProviderFaults(env, spec, schedule.providerFaults);
    if (schedule.webhookFaults) env.webhook.failNext(schedule.webhookFaults.n, schedule.webhookFaults.status);
    env.startTraffic(spec);
    await env.startWorker();
    const handle = await startRollout(shared.client, spec, {
      startedBy: 'carol',
      taskQueue: env.taskQueue,
      runnerTaskQueue: env.runnerTaskQueue,
      continueAsNewAfterEvents,
      parkHandoverAfterMs,
    });
    await new Driver(env, spec, schedule, handle, opts, result).run();
  } catch (err) {
    result.violations.push({ invariant: 'harness', detail: `schedule could not run: ${(err as Error).stack ?? err}`.slice(0, 800) });
  } finally {
    await env.close().catch(() => undefined);
    result.durationMs = Date.now() - t0;
  }
  return result;
}

/** The rollout took an abort in rollback-failed: it has begun the last try of its failed reverts, then it closes. */
export function closingAfterFailedRevert(s: RolloutStatus): boolean {
  return s.history.some((e) => e.kind === 'stage' && e.text.startsWith('stage rollback: closing: a last try'));
}

// ---- the driver: events, operator, checks ----------------------------------------------------

class Driver extends DriverBase<RolloutResult> {
  private readonly stageSeenAt = new Map<string, number>();
  private readonly pending: TimedEvent[];
  private readonly approvalsDone = new Set<string>();
  private readonly brokenReverts: string[] = [];
  private resumedAfterRollback = false;
  private endRequested = false;
  private endRequestedAt = 0;
  private mustTerminate = false;
  private lastStatus?: RolloutStatus;
  private lastSig = '';
  private lastProgressMs = Date.now();

  constructor(
    private readonly env: ScheduleEnv,
    private readonly spec: RolloutSpec,
    private readonly schedule: FaultSchedule,
    private readonly handle: WorkflowHandle,
    private readonly opts: RunOptions,
    private readonly result: ScheduleResult,
  ) {
    super(handle, result, opts.log, 'seed');
    this.pending = [...schedule.events];
  }

  private async status(): Promise<RolloutStatus | undefined> {
    const s = await queryStatus(this.handle);
    if (s) this.lastStatus = s;
    return s;
  }

  private send(what: string, fn: () => Promise<unknown>): Promise<void> {
    return this.sendTo(this.handle, what, fn);
  }

  /**
   * A resume meant for an operator pause. A rollout paused after a rollback takes `resume` as "retry
   * the release", so this one is sent only while the status shows no rollback pause (the checker
   * notices a stop up to a poll later than the workflow announces it).
   */
  private async resumeOperatorPause(what: string): Promise<void> {
    const s = await this.status();
    if (!s || s.pausedAfterRollback || s.state === 'rollback-failed')
      return this.trace(`(${what} not sent: the pipeline stopped meanwhile)`);
    await this.send(what, () => this.handle.signal(resumeSignal, { by: 'alice' }));
  }

  protected async drive(): Promise<void> {
    while (!this.closed) {
      if (Date.now() - this.startMs > this.opts.timeoutMs) {
        this.violate(
          'stall',
          `still open after ${this.opts.timeoutMs / 1000} s (state ${this.lastStatus?.state}, stage ${this.lastStatus?.stage}: ${this.lastStatus?.detail})`,
        );
        return this.forceClose();
      }
      const s = await this.status();
      this.env.sampleWrites();
      if (s && !this.closed) {
        this.noteStages(s);
        if (this.detectStall(s)) return this.forceClose();
        await this.operator(s);
        if (this.mustTerminate) return this.forceClose();
        if (this.endRequested && !this.endRequestedAt) this.endRequestedAt = Date.now();
        if (this.endRequestedAt && Date.now() - this.endRequestedAt > 30_000 && !this.closed) {
          this.violate('operator', `abort did not close the rollout within 30 s (state ${s.state}, stage ${s.stage}: ${s.detail})`);
          return this.forceClose();
        }
      }
      this.fireDue();
      if (!this.closed) await sleep(150);
    }
    await this.finalChecks();
  }

  private noteStages(s: RolloutStatus) {
    const now = Date.now();
    for (const e of s.history) {
      const m = e.kind === 'stage' ? /^stage (\S+?): /.exec(e.text) : null;
      if (m && !this.stageSeenAt.has(m[1])) this.stageSeenAt.set(m[1], now);
    }
    if (!this.stageSeenAt.has(s.stage)) this.stageSeenAt.set(s.stage, now);
  }

  /** (5): running, not on an announced human decision, and nothing changes for stallMs. */
  private detectStall(s: RolloutStatus): boolean {
    const sig = JSON.stringify([s.state, s.stage, s.detail, s.awaitingApproval, s.history.length, s.targets.map((t) => t.weight)]);
    const now = Date.now();
    if (sig !== this.lastSig) {
      this.lastSig = sig;
      this.lastProgressMs = now;
      return false;
    }
    const waitingOnHuman = s.state !== 'running' || !!s.awaitingApproval;
    if (!waitingOnHuman && now - this.lastProgressMs > this.opts.stallMs) {
      this.violate(
        'stall',
        `no progress for ${Math.round((now - this.lastProgressMs) / 1000)} s while running, stage ${s.stage}: ${s.detail}`,
      );
      return true;
    }
    return false;
  }

  private fireDue() {
    const now = Date.now();
    for (let i = 0; i < this.pending.length;) {
      const e = this.pending[i];
      const t = e.trigger;
      const due =
        'atMs' in t ? now - this.startMs >= t.atMs : this.stageSeenAt.has(t.stage) && now - this.stageSeenAt.get(t.stage)! >= t.delayMs;
      if (!due) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      this.fire(e);
    }
  }

  private fire(e: TimedEvent) {
    const a = e.action;
    const h = this.handle;
    if (a.kind === 'break-reverts') this.brokenReverts.push(a.target);
    if (fireEnvironmentEvent(a, this.eventContext)) return;
    switch (a.kind) {
      case 'pause':
        this.background(this.send('pause', () => h.signal(pauseSignal, { by: 'alice', reason: 'fault schedule' })));
        if (a.resumeAfterMs !== undefined) this.later(a.resumeAfterMs, () => this.resumeOperatorPause('resume (after pause)'));
        if (a.abortAfterMs !== undefined)
          this.later(a.abortAfterMs, () =>
            this.send('abort (after pause)', () => h.signal(abortSignal, { by: 'alice', reason: 'fault schedule' })),
          );
        return;
      case 'resume':
        this.background(this.resumeOperatorPause('resume'));
        return;
      case 'abort':
        this.background(this.send('abort', () => h.signal(abortSignal, { by: 'alice', reason: 'fault schedule' })));
        return;
      case 'verdict':
        // As rollgate's scheduled analysis sends it: with the run's message nonce (a forged one is
        // refused). Without an answer (a dev-server restart) it goes without one, which the run refuses.
        this.background(
          this.send('external verdict fail', async () => {
            const nonce = await h.query(messageNonceQuery).catch(() => undefined);
            return h.signal(externalVerdictSignal, {
              verdict: 'fail',
              reason: 'external check: error budget burnt (fault schedule)',
              atMs: Date.now(),
              ...(nonce ? { nonce } : {}),
            });
          }),
        );
        return;
    }
  }

  private get eventContext(): EventContext {
    return {
      env: this.env,
      trace: (line) => this.trace(line),
      survivor: (fn) => this.later(0, fn, { survivesStop: true }),
      done: () => this.done,
      target: (name) => this.spec.targets.find((x) => x.name === name)!,
    };
  }

  /** The operator: approvals, the decision after a rollback, fixing a failed rollback, and the end. */
  private async operator(s: RolloutStatus): Promise<void> {
    const h = this.handle;
    if (s.awaitingApproval && !this.approvalsDone.has(s.awaitingApproval)) {
      const wave = s.awaitingApproval;
      this.approvalsDone.add(wave);
      const policy = this.schedule.approvals[wave] ?? { decision: 'approve', afterMs: 0 };
      if (policy.decision === 'approve')
        this.later(policy.afterMs, () => this.send(`approve ${wave}`, () => h.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] })));
      else if (policy.decision === 'reject')
        this.later(policy.afterMs, () =>
          this.send(`reject ${wave}`, () => h.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'fault schedule says no' }] })),
        );
      else this.trace(`leave ${wave} waiting for approval`);
      return;
    }
    // An abort sent before a revert failed is not the answer to the escalation (README): handle it.
    const escalated = s.state === 'rollback-failed' && !closingAfterFailedRevert(s);
    if (this.endRequested && !escalated) return;
    // The saga has finished (an operator pause during the saga also shows "paused" at stage rollback).
    const afterRollback = s.state === 'paused' && s.stage === 'rollback' && s.detail.startsWith('pipeline paused after');
    if (afterRollback) return this.pausedAfterRollback();
    if (escalated) return this.rollbackFailed();
    // A human decision nobody will take (operator pause without resume, approval left): close it.
    const humanWait = (s.state === 'paused' || !!s.awaitingApproval) && this.timers === 0;
    if (humanWait && !this.pending.some((e) => 'atMs' in e.trigger)) {
      this.endRequested = true;
      this.pending.length = 0;
      await this.send(`abort (${s.awaitingApproval ? `left awaiting approval of ${s.awaitingApproval}` : 'left paused'})`, () =>
        h.signal(abortSignal, { by: 'checker', reason: 'end of fault schedule' }),
      );
    }
  }

  private alertsSeen = 0;
  private checkerAbortedRollbackFailed = false;
  /**
   * An operator reacts to the alert: wait until the rollout records one more alert (delivered or
   * not) than when we last acted. A missing alert is checked at the end (invariant 4).
   */
  private async waitForAlert(): Promise<void> {
    const records = (s?: RolloutStatus) =>
      (s?.history ?? []).filter((e) => e.kind === 'alert' && /^\S+ alert (delivered|NOT delivered)/.test(e.text)).length;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !this.closed) {
      const n = records(await this.status());
      if (n > this.alertsSeen) {
        this.alertsSeen = n;
        return;
      }
      await sleep(150);
    }
    this.trace('no alert recorded within 20 s');
  }

  /** Paused after a rollback: every target on stable, and it stays so; then resume once or close. */
  private async pausedAfterRollback(): Promise<void> {
    this.epoch++;
    this.trace(`paused after rollback: ${this.lastStatus?.rollbackReason ?? ''}`);
    await this.waitForAlert();
    const now = await this.status();
    if (now?.state === 'rollback-failed') return this.rollbackFailed();
    await this.checkStableTwice('paused after rollback');
    if (this.schedule.afterRollback.resumeOnce && !this.resumedAfterRollback) {
      this.resumedAfterRollback = true;
      if (this.schedule.afterRollback.clearBreach) {
        this.env.breaching.clear();
        this.env.clearFaults();
        this.trace('breach and faults cleared');
      }
      await this.send('resume (retry the release)', () => this.handle.signal(resumeSignal, { by: 'alice' }));
      await this.waitLeave((s) => !(s.state === 'paused' && s.stage === 'rollback'), 15_000);
      return;
    }
    this.endRequested = true;
    this.pending.length = 0;
    await this.send('abort (close the paused pipeline)', () =>
      this.handle.signal(abortSignal, { by: 'alice', reason: 'end of fault schedule' }),
    );
  }

  /** Rollback-failed: fix the target (faults cleared), then abort (must close) or resume (must retry the reverts). */
  private async rollbackFailed(): Promise<void> {
    this.epoch++;
    this.endRequested = false; // an earlier abort does not answer the escalation: answer it now
    this.endRequestedAt = 0;
    this.trace(`rollback-failed: ${this.lastStatus?.detail.slice(0, 200) ?? ''}`);
    await this.waitForAlert();
    this.pending.length = 0;
    this.env.clearFaults();
    this.env.breaching.clear();
    this.trace('targets fixed (faults cleared)');
    if (this.schedule.afterRollbackFailed === 'abort') {
      this.checkerAbortedRollbackFailed = true;
      await this.send('abort (in rollback-failed)', () => this.handle.signal(abortSignal, { by: 'alice', reason: 'fixed by hand' }));
      // Taken when the rollout records the last try of its reverts (its state stays rollback-failed
      // until that try and the alert are done: 19 s on a loaded machine, seed 1003); it must still close.
      const taken = await this.waitLeave((s) => s.state !== 'rollback-failed' || closingAfterFailedRevert(s), 10_000);
      if (taken || this.closed) {
        this.endRequested = true;
        return;
      }
      this.violate('operator', 'abort in state rollback-failed was ignored: the rollout stayed open in rollback-failed');
    }
    await this.send('resume (retry the failed reverts)', () => this.handle.signal(resumeSignal, { by: 'alice' }));
    const left = await this.waitLeave((s) => s.state !== 'rollback-failed', 30_000);
    if (!left && !this.closed) {
      this.violate('operator', 'resume in state rollback-failed did not retry the reverts (still rollback-failed after 30 s)');
      this.mustTerminate = true;
    }
  }

  /** Poll until `pred` holds or the workflow closes; false on timeout. */
  private async waitLeave(pred: (s: RolloutStatus) => boolean, ms: number): Promise<boolean> {
    const read = async () => {
      const s = await this.status();
      this.env.sampleWrites();
      return s;
    };
    const { ok } = await pollUntil(read, pred, ms, () => !!this.closed);
    return ok || !!this.closed;
  }

  /** Until the workflow has no pending activity (a retry in flight could still write), then no write for a second. */
  private async quiesce(maxMs = 60_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      let pending = 0;
      if (!this.closed) {
        try {
          const d = await withDeadline(this.handle, 5_000, () => this.handle.describe());
          pending = d.raw.pendingActivities?.length ?? 0;
          if (d.status.name !== 'RUNNING') pending = 0;
        } catch {
          pending = 0;
        }
      }
      this.env.sampleWrites();
      if (pending === 0 && Date.now() - this.env.lastWriteMs() > 1_000) return;
      await sleep(250);
    }
    this.trace(`activities still pending after ${maxMs / 1000} s`);
  }

  /** (1) now, then (1) again after the in-flight work settled: a failure only the second time is a late write. */
  private async checkStableTwice(phase: string): Promise<void> {
    const first = await checkStable(this.env, this.spec);
    for (const p of first) this.violate('stable', `${phase}: ${p}`);
    await sleep(this.opts.recheckMs);
    await this.quiesce();
    const second = await checkStable(this.env, this.spec);
    for (const p of second) {
      const target = p.split(':')[0];
      if (first.some((f) => f.split(':')[0] === target)) continue;
      this.violate('late-write', `${phase}: a write landed after the revert: ${p}`);
    }
  }

  private async forceClose(): Promise<void> {
    this.result.outcome = `stalled (terminated by the checker in state ${this.lastStatus?.state}, stage ${this.lastStatus?.stage})`;
    try {
      await withDeadline(this.handle, 10_000, () => this.handle.terminate('fault schedule checker: stalled'));
    } catch {
      // already closed
    }
    await this.env.stopWorker();
  }

  private async finalChecks(): Promise<void> {
    const c = this.closed!;
    let finalState: string;
    if (c.ok) finalState = c.result.state;
    else {
      finalState = 'execution-failed';
      this.violate(
        'workflow-failed',
        `the rollout execution ended without a result: ${c.error.message.split('\n')[0]}${c.error.cause ? `: ${(c.error.cause as Error).message}` : ''}`,
      );
    }
    this.result.outcome = finalState;
    if (this.schedule.calm && finalState !== 'succeeded')
      this.trace(`note: a calm schedule (no stop planned) ended ${finalState}: ${c.ok ? (c.result.reason ?? '') : ''}`);
    this.trace(`closed: ${finalState}${c.ok && c.result.reason ? ` (${c.result.reason.slice(0, 160)})` : ''}`);
    const handovers = c.ok ? c.result.status.history.filter((e) => e.text.startsWith('continuing as new')).length : 0;
    if (handovers) this.trace(`continued as new ${handovers} time(s)`);
    const stopped = ['rolled-back', 'aborted', 'failed', 'rollback-failed', 'execution-failed'].includes(finalState);
    const phase = `closed ${finalState}${
      finalState !== 'rollback-failed'
        ? ''
        : this.checkerAbortedRollbackFailed
          ? ' (the checker fixed the target, then sent abort)'
          : ' (closed without waiting for the operator: the failed revert was never retried)'
    }`;
    const first = stopped
      ? await checkStable(this.env, this.spec)
      : finalState === 'succeeded'
        ? await checkPromoted(this.env, this.spec)
        : [];
    for (const p of first) this.violate(stopped ? 'stable' : 'promoted', `${phase}: ${p}`);
    // Drain: in-flight activities finish (a graceful worker stop waits for them), then re-read.
    await sleep(this.opts.recheckMs);
    await this.env.stopWorker();
    await this.quiesce(10_000);
    const second = stopped
      ? await checkStable(this.env, this.spec)
      : finalState === 'succeeded'
        ? await checkPromoted(this.env, this.spec)
        : [];
    for (const p of second) {
      const target = p.split(':')[0];
      if (first.some((f) => f.split(':')[0] === target)) continue;
      this.violate(stopped ? 'late-write' : 'promoted', `${phase}: a write landed after the workflow closed: ${p}`);
    }
    for (const p of await checkOneVersion(this.env, this.spec)) this.violate('one-version', p);
    if (c.ok) {
      // Alerts are sent right after the state changes: give a late one a moment.
      await sleep(500);
      for (const p of checkAlerts(this.env, c.result.status.history, { finalState, brokenReverts: this.brokenReverts }))
        this.violate('alerts', p);
    }
    if (this.result.violations.some((v) => v.invariant === 'stable' || v.invariant === 'late-write' || v.invariant === 'promoted'))
      for (const t of this.spec.targets) this.trace(`  ${t.name}: ${await describeTarget(this.env, t)}`);
  }
}
