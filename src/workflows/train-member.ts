/**
 * A rollout's side of its release train (RolloutInput.train, only when patch `rollout-train-member`
 * is on: plain rollouts and every recorded history never reach this file). The member owns its
 * saga to the end: promoted, it does not close but holds, and the train decides: `release` (finish
 * as succeeded) or `revert` (run the saga, close as rolled back; the train pauses, not the member).
 * In lockstep it also waits before each traffic stage until the train says `go`.
 */
import { condition, getExternalWorkflowHandle, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import { stopOf, type Stop } from './gate';
import type { RolloutRun } from './rollout-state';
import { failureMessage } from './saga';
import { analyze, continueAsNewNow, holdWhilePaused, takePendingStop } from './bake';
import { alertOperator } from './alert';
import { checks, local } from './activity-options';
import { mustDurationMs } from '../spec/duration';
import { trainDecisionSignal, trainReportSignal, type TrainDecision, type TrainMembership, type TrainReport } from '../contract';

/** Marks runs that act as train members; asked only when the input names a train. */
export const TRAIN_MEMBER_PATCH = 'rollout-train-member';
/**
 * Train members that (decided once, at the start, right after TRAIN_MEMBER_PATCH): check on a timer
 * that their train is still open while held or at a lockstep barrier, and fall back to their own
 * pause with an alert when it is not; keep analysing while they wait; accept `release` only when
 * held (a `revert` overrides an unfinished one); stop moving on `freeze`; do not take a train's
 * `revert` as the operator's abort while their own revert failed; and, for trains that confirm
 * releases, report their own stop while held instead of acting on it (the train decides).
 */
export const TRAIN_MEMBER_V2_PATCH = 'rollout-train-member-v2';
/**
 * Train members that (decided once, at the start, right after TRAIN_MEMBER_V2_PATCH) carry "the
 * train is gone, this member goes on alone" over continue-as-new: before it, a member paused
 * after its `train-gone` alert that continued as new waited at its barrier again in the new run,
 * found the train gone again and sent a second alert (and after `resume` paused once more).
 */
export const TRAIN_MEMBER_DETACHED_CARRIED_PATCH = 'rollout-train-member-detached-carried';
/** How often a held or waiting member checks that its train is open, when the train does not say. */
const DEFAULT_PARENT_CHECK_MS = 60_000;

/** The membership of this run, or undefined for a plain rollout (the patch is asked only for train members). */
export function trainMembershipOf(input: { train?: TrainMembership }): TrainMembership | undefined {
  return input.train && patched(TRAIN_MEMBER_PATCH) ? input.train : undefined;
}

export class TrainLink {
  /** The last traffic stage the train said `go` to (lockstep). */
  private go = 0;
  private decision?: { kind: 'release' | 'revert'; reason: string };
  /** Promoted and waiting for the train. */
  held = false;
  /** Patch TRAIN_MEMBER_V2_PATCH. */
  readonly v2: boolean;
  /** `commit` received while held (trains that confirm releases). */
  private committed = false;
  /** The train is gone and an operator let this member go on alone: no more barriers, no hold. */
  private detached = false;
  private parentCheckFailed = false;
  /** Patch TRAIN_MEMBER_DETACHED_CARRIED_PATCH: `detached` is handed over to the next run. */
  private readonly carriesDetached: boolean;

  constructor(
    readonly membership: TrainMembership,
    private readonly run: RolloutRun,
  ) {
    this.v2 = patched(TRAIN_MEMBER_V2_PATCH);
    this.carriesDetached = this.v2 && patched(TRAIN_MEMBER_DETACHED_CARRIED_PATCH);
    // A continued run of a member that already found its train gone (and alerted): still alone.
    if (this.carriesDetached && run.input.continued?.trainDetached === true) this.detached = true;
  }

  /** For the next run's input (continue-as-new): the train is gone and this member goes on alone. */
  get detachedToCarry(): boolean {
    return this.carriesDetached && this.detached;
  }

  /**
   * The starter its train verified, when this run may take it instead of checking a token: patch
   * v2, no token of its own, and the train named in the input is this run's parent workflow (a
   * client cannot start a run with a parent; only trainWorkflow starts rollouts as children).
   */
  trainStarter(hasToken: boolean): TrainMembership['starter'] {
    const starter = this.membership.starter;
    if (!this.v2 || hasToken || !starter) return undefined;
    const parent = workflowInfo().parent;
    return parent?.workflowId === this.membership.id && (!this.membership.runId || parent.runId === this.membership.runId)
      ? starter
      : undefined;
  }

  get lockstep(): boolean {
    return this.membership.lockstep;
  }

  install(): void {
    setHandler(trainDecisionSignal, (m) => this.receive(m));
  }

  /** Refusals are recorded, never thrown: a throwing signal handler fails the workflow task. */
  private receive(m: Partial<TrainDecision> | undefined): void {
    const kinds = this.v2 ? ['go', 'release', 'revert', 'commit', 'freeze'] : ['go', 'release', 'revert'];
    if (typeof m !== 'object' || m === null || !kinds.includes(m.decision as string))
      return this.run.record('decision', 'refused a malformed trainDecision');
    if (m.nonce !== this.membership.nonce)
      return this.run.record(
        'decision',
        `refused a trainDecision ${m.decision}: it does not carry the nonce of train ${this.membership.name}, so the train did not send it`,
      );
    if (m.decision === 'go') {
      if (typeof m.wave === 'number') this.go = Math.max(this.go, m.wave);
      return;
    }
    const reason = typeof m.reason === 'string' ? m.reason.slice(0, 500) : `decided by train ${this.membership.name}`;
    if (this.v2) return this.receiveV2(m.decision as 'release' | 'revert' | 'commit' | 'freeze', reason, m.reason !== undefined);
    if (this.decision) return; // the first decision stands
    this.decision = { kind: m.decision as 'release' | 'revert', reason };
    this.run.record('decision', `train ${this.membership.name}: ${m.decision}${m.reason ? ` (${reason})` : ''}`);
    // A member still moving is stopped like an abort: its scope is cancelled, then its saga runs.
    if (m.decision === 'revert' && !this.held) this.run.gate.requestAbort({ by: `train ${this.membership.name}`, reason });
  }

  private receiveV2(kind: 'release' | 'revert' | 'commit' | 'freeze', reason: string, withReason: boolean): void {
    const train = `train ${this.membership.name}`;
    if (kind === 'freeze') {
      // Held ones do not move; one already reverting (or whose revert failed) is not paused either.
      const run = this.run;
      if (this.held || run.gate.paused || run.isClosed() || run.stage === 'rollback' || run.state === 'rollback-failed') return;
      // The train stops: nothing moves forward until its revert comes (dependents are reverted first).
      run.gate.paused = true;
      run.record('decision', `${train} stops: no traffic step moves until it reverts this member (${reason})`);
      return run.publish();
    }
    if (kind === 'release' || kind === 'commit') {
      // Only a held member can be released: one sent earlier (replayed, or from another pass) is dropped.
      if (!this.held) return this.run.record('decision', `refused a trainDecision ${kind}: not promoted and held by the train`);
      if (this.decision?.kind === 'revert') return;
      if (kind === 'commit') {
        this.committed = true;
        return this.run.record('decision', `${train}: commit (the release stands)`);
      }
      if (this.decision) return;
      this.decision = { kind: 'release', reason };
      return this.run.record('decision', `${train}: release`);
    }
    // revert: overrides a release not committed yet.
    if (this.decision?.kind === 'revert' || this.committed) return;
    if (this.run.state === 'rollback-failed') {
      // Its own revert failed and waits for its operator: the train's revert is not that operator's abort.
      this.run.record(
        'decision',
        `${train} asks to revert it: its revert already failed; it keeps waiting for its operator (\`rollgate resume ${this.run.id}\` retries the revert)`,
      );
      void this.report({ kind: 'rollback-failed' });
      return;
    }
    this.decision = { kind: 'revert', reason };
    this.run.record('decision', `${train}: revert${withReason ? ` (${reason})` : ''}`);
    if (!this.held) this.run.gate.requestAbort({ by: train, reason });
  }

  /** Lockstep: say "at traffic stage `wave`, ready", wait for the train's `go` (or a stop of our own). */
  async barrier(wave: number): Promise<Stop | undefined> {
    if (!this.lockstep || this.detached) return undefined;
    const before = this.run.detail;
    this.run.setDetail(`lockstep: ready for traffic stage ${wave}, waiting for train ${this.membership.name}`);
    await this.report({ kind: 'ready', wave });
    if (this.v2) {
      const r = await this.waitForTrain(() => this.go >= wave, true);
      if (r === 'gone') return this.trainGone(`waits at traffic stage ${wave} for it`, 'goes on without the train');
      this.run.setDetail(before);
      return r;
    }
    await condition(() => this.go >= wave || this.run.gate.pendingStop() !== undefined);
    this.run.setDetail(before);
    return this.run.gate.pendingStop();
  }

  /** Promoted: keep the saga, say so, and wait for the train. Undefined = released (finish as succeeded). */
  async hold(): Promise<Stop | undefined> {
    if (this.detached) return undefined;
    this.held = true;
    this.run.setDetail(`promoted, held by train ${this.membership.name}: waiting for it to release or revert this release`);
    await this.report({ kind: 'held' });
    if (this.v2) return this.holdV2();
    await condition(() => this.decision !== undefined || this.run.gate.pendingStop() !== undefined);
    this.held = false;
    if (this.decision?.kind === 'release') return undefined;
    if (this.decision?.kind === 'revert')
      return stopOf('train-revert', `train ${this.membership.name} reverts it: ${this.decision.reason}`);
    // Our own stop while held (an operator's abort, an outside breach): the saga runs, the train hears it when we close.
    return this.run.gate.pendingStop();
  }

  /**
   * Held (patch v2), analysing the promoted targets and checking that the train is open. A train
   * that confirms releases decides for every member at once: our own stop (a breach, an abort) is
   * reported to it and we wait for its `revert`; once it has sent `commit`, the release stands.
   */
  private async holdV2(): Promise<Stop | undefined> {
    const confirms = this.membership.confirmsRelease === true;
    let reported: Stop | undefined;
    let confirmed = false;
    // No hand-over to a new run while held: the held position is not one a continued run restarts at.
    const canWas = this.run.continueAsNewEnabled;
    this.run.continueAsNewEnabled = false;
    try {
      for (;;) {
        if (this.decision?.kind === 'revert')
          return stopOf('train-revert', `train ${this.membership.name} reverts it: ${this.decision.reason}`);
        if (this.committed || (!confirms && this.decision?.kind === 'release')) {
          if (reported)
            this.run.record(
              'decision',
              `released by train ${this.membership.name} before it heard of: ${reported.message} (the release stands)`,
            );
          return undefined;
        }
        if (reported) {
          // Waiting for the train's answer to our stop; it may be gone.
          const answered = await condition(() => this.decision?.kind === 'revert' || this.committed, this.parentCheckMs());
          const gone = answered ? undefined : await this.trainClosed();
          if (gone) {
            // Nobody will answer: revert on our own, and say so (the train's alert will never come).
            const text = `rollgate: ${this.run.spec.service} ${this.run.spec.release}: train ${this.membership.name} is ${gone.toLowerCase()}; this held member stopped (${reported.message}) and reverts on its own.`;
            this.run.record('alert', `train ${this.membership.name} is ${gone.toLowerCase()}: reverting on its own`);
            await alertOperator(this.run, 'train-gone', text, { reason: reported.message });
            return reported;
          }
          continue;
        }
        if (confirms && this.decision?.kind === 'release' && !confirmed) {
          confirmed = true;
          await this.report({ kind: 'confirmed' });
          continue;
        }
        const r = await this.waitForTrain(
          () => this.decision?.kind === 'revert' || this.committed || (this.decision?.kind === 'release' && !confirmed),
          false,
        );
        if (r === 'gone') {
          // Nobody will release or revert this member: an operator decides (resume keeps it, abort reverts it).
          return await this.trainGone('is promoted and held by it', 'keeps the release (finishes as succeeded)');
        }
        if (r === undefined) continue;
        if (!confirms) return r; // a train that does not confirm releases: act on it ourselves, as before
        reported = r;
        this.run.record('decision', `held: ${r.message}; train ${this.membership.name} decides (reported to it)`);
        this.run.setDetail(`held, stopped (${r.message}): waiting for train ${this.membership.name} to revert it`);
        await this.report({ kind: 'stop', reason: r.message.slice(0, 500) });
      }
    } finally {
      this.held = false;
      this.run.continueAsNewEnabled = canWas;
    }
  }

  /**
   * Wait until `ready()`, analysing the targets that serve new traffic at `rollback.interval` (1
   * minute when unset) and checking that the train is open on a timer. A stop (abort, outside
   * breach, failing analysis) ends the wait; 'gone' = the train closed.
   */
  private async waitForTrain(ready: () => boolean, allowHandover: boolean): Promise<Stop | undefined | 'gone'> {
    const run = this.run;
    const intervalMs = mustDurationMs(run.spec.rollback.interval ?? '1 minute');
    const checkMs = this.parentCheckMs();
    const startMs = Date.now();
    let nextAnalysis = startMs + intervalMs;
    let nextCheck = startMs + checkMs;
    for (;;) {
      const woken = await run.gate.waitFor(ready, Math.max(1, Math.min(nextAnalysis, nextCheck) - Date.now()));
      const stop = takePendingStop(run);
      if (stop) return stop;
      if (woken || ready()) return undefined;
      const now = Date.now();
      if (now >= nextAnalysis) {
        nextAnalysis = now + intervalMs;
        const live = run.targetsWithNewTraffic();
        if (live.length) {
          const v = await analyze(run, live, Math.max(startMs, now - 2 * intervalMs));
          if (v.verdict === 'fail') return stopOf('breach', v.reason);
        }
        if (allowHandover) {
          const handover = continueAsNewNow(run);
          if (handover) return handover;
        }
      }
      if (now >= nextCheck) {
        nextCheck = Date.now() + checkMs;
        if (await this.trainClosed()) return 'gone';
      }
    }
  }

  private parentCheckMs(): number {
    const ms = this.membership.parentCheckMs;
    return typeof ms === 'number' && ms >= 1000 ? ms : DEFAULT_PARENT_CHECK_MS;
  }

  /** Whether the train's run has closed (completed, terminated, ...). Unknown (no client, server down) = open. */
  private async trainClosed(): Promise<string | undefined> {
    const runId = this.membership.runId ?? workflowInfo().parent?.runId;
    try {
      // A regular activity in runs that use no local activities (docs/DEVELOPMENT.md, "Local activities and replay").
      const closed = await (this.run.localChecks ? local : checks).findClosedLockHolders({
        holders: [{ holder: this.membership.id, ...(runId ? { runId } : {}) }],
      });
      return closed[0]?.status;
    } catch (err) {
      if (!this.parentCheckFailed)
        this.run.record(
          'decision',
          `could not check that train ${this.membership.name} is open (asking again later): ${failureMessage(err)}`,
        );
      this.parentCheckFailed = true;
      return undefined;
    }
  }

  /** The train is gone: alert on our own notify and pause; `resume` goes on alone, `abort` reverts. */
  private async trainGone(where: string, resumeDoes: string): Promise<Stop | undefined> {
    const run = this.run;
    const status = (await this.trainClosed()) ?? 'closed';
    this.detached = true;
    run.gate.paused = true;
    run.state = 'paused';
    const reason = `train ${this.membership.name} (${this.membership.id}) is ${status.toLowerCase()}`;
    run.record('alert', `${reason} while this member ${where}: paused for an operator`);
    run.setDetail(`paused: ${reason}; \`rollgate resume ${run.id}\` ${resumeDoes}, \`rollgate abort ${run.id}\` reverts it`);
    await alertOperator(
      run,
      'train-gone',
      `rollgate: ${run.spec.service} ${run.spec.release}: ${reason} while this member ${where}. Paused: \`rollgate resume ${run.id}\` ${resumeDoes}, \`rollgate abort ${run.id}\` reverts it.`,
      { reason },
    );
    const stop = await holdWhilePaused(run);
    if (!stop) run.record('operator', `going on without train ${this.membership.name}`);
    return stop;
  }

  /** A revert that failed: the member escalates on its own, and tells the train not to wait for it. */
  async reportRollbackFailed(): Promise<void> {
    await this.report({ kind: 'rollback-failed' });
  }

  private async report(r: Omit<TrainReport, 'service' | 'nonce'>): Promise<void> {
    try {
      await getExternalWorkflowHandle(this.membership.id).signal(trainReportSignal, {
        ...r,
        service: this.run.spec.service,
        nonce: this.membership.nonce,
      });
    } catch (err) {
      // The train closed (terminated): nothing waits for the report; the member goes on holding or waiting.
      this.run.record('decision', `could not report ${r.kind} to train ${this.membership.name}: ${failureMessage(err)}`);
    }
  }
}
