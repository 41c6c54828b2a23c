/**
 * A rollout's side of its release train (RolloutInput.train, only when patch `rollout-train-member`
 * is on: plain rollouts and every recorded history never reach this file). The member owns its
 * saga to the end: promoted, it does not close but holds, and the train decides: `release` (finish
 * as succeeded) or `revert` (run the saga, close as rolled back; the train pauses, not the member).
 * In lockstep it also waits before each traffic stage until the train says `go`.
 */
import { condition, getExternalWorkflowHandle, patched, setHandler } from '@temporalio/workflow';
import { stopOf, type Stop } from './gate';
import type { RolloutRun } from './rollout-state';
import { failureMessage } from './saga';
import { trainDecisionSignal, trainReportSignal, type TrainDecision, type TrainMembership, type TrainReport } from '../contract';

/** Marks runs that act as train members; asked only when the input names a train. */
export const TRAIN_MEMBER_PATCH = 'rollout-train-member';

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

  constructor(
    readonly membership: TrainMembership,
    private readonly run: RolloutRun,
  ) {}

  get lockstep(): boolean {
    return this.membership.lockstep;
  }

  install(): void {
    setHandler(trainDecisionSignal, (m) => this.receive(m));
  }

  /** Refusals are recorded, never thrown: a throwing signal handler fails the workflow task. */
  private receive(m: Partial<TrainDecision> | undefined): void {
    if (typeof m !== 'object' || m === null || !['go', 'release', 'revert'].includes(m.decision as string))
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
    if (this.decision) return; // the first decision stands
    const reason = typeof m.reason === 'string' ? m.reason.slice(0, 500) : `decided by train ${this.membership.name}`;
    this.decision = { kind: m.decision as 'release' | 'revert', reason };
    this.run.record('decision', `train ${this.membership.name}: ${m.decision}${m.reason ? ` (${reason})` : ''}`);
    // A member still moving is stopped like an abort: its scope is cancelled, then its saga runs.
    if (m.decision === 'revert' && !this.held) this.run.gate.requestAbort({ by: `train ${this.membership.name}`, reason });
  }

  /** Lockstep: say "at traffic stage `wave`, ready", wait for the train's `go` (or a stop of our own). */
  async barrier(wave: number): Promise<Stop | undefined> {
    if (!this.lockstep) return undefined;
    const before = this.run.detail;
    this.run.setDetail(`lockstep: ready for traffic stage ${wave}, waiting for train ${this.membership.name}`);
    await this.report({ kind: 'ready', wave });
    await condition(() => this.go >= wave || this.run.gate.pendingStop() !== undefined);
    this.run.setDetail(before);
    return this.run.gate.pendingStop();
  }

  /** Promoted: keep the saga, say so, and wait for the train. Undefined = released (finish as succeeded). */
  async hold(): Promise<Stop | undefined> {
    this.held = true;
    this.run.setDetail(`promoted, held by train ${this.membership.name}: waiting for it to release or revert this release`);
    await this.report({ kind: 'held' });
    await condition(() => this.decision !== undefined || this.run.gate.pendingStop() !== undefined);
    this.held = false;
    if (this.decision?.kind === 'release') return undefined;
    if (this.decision?.kind === 'revert')
      return stopOf('train-revert', `train ${this.membership.name} reverts it: ${this.decision.reason}`);
    // Our own stop while held (an operator's abort, an outside breach): the saga runs, the train hears it when we close.
    return this.run.gate.pendingStop();
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
