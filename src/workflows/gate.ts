/**
 * What operators and outside verdicts ask of a running rollout, owned in one place (like Argo
 * Rollouts' pause.go): an operator pause, an abort, the approval a wave waits for, a breach reported
 * by a scheduled analysis, and `resume` after a rollback. The pipeline asks the gate at every
 * checkpoint; the gate never moves traffic itself.
 */
import { condition } from '@temporalio/workflow';
import type { Verdict } from '../contract';

/**
 * `continue-as-new` is not a failure: the run hands over to a new run at this point (rollout.ts).
 * `train-revert`: a promoted train member reverted because its train stopped (train-member.ts).
 */
export type StopKind = 'breach' | 'rejected' | 'aborted' | 'stage-failed' | 'no-data' | 'continue-as-new' | 'train-revert';

/** Why the pipeline stopped before promote. Returned by stages, not thrown. */
export interface Stop {
  kind: StopKind;
  message: string;
}

export const stopOf = (kind: StopKind, message: string): Stop => ({ kind, message });

export interface Decision {
  wave: string;
  by: string;
  decision: 'approved' | 'rejected';
  reason?: string;
  /** Whether `by` was verified (a token); unverified names are marked so in the alert. */
  verified?: boolean;
}

export class OperatorGate {
  /** An operator pause during a run (not the pause after a rollback, see `awaitOperator`). */
  paused = false;
  abort?: { by?: string; reason?: string };
  /** The wave waiting for an approval, if any. */
  awaitingApproval?: string;
  /** The decision on the wave that waited last. */
  lastDecision?: Decision;
  /** A failing verdict from outside (scheduled analysis) not acted on yet. */
  externalBreach?: Verdict;
  /** `resume` and `abort` signals received so far: a wait after a rollback answers only to later ones. */
  resumes = 0;
  aborts = 0;
  /** Cancels the running pipeline scope when an abort arrives. */
  onAbort?: () => void;

  requestAbort(args: { by?: string; reason?: string }): void {
    this.aborts++;
    if (this.abort) return;
    this.abort = args;
    this.onAbort?.();
  }

  /** Where the operator's answers are counted from: taken when a wait after a rollback is announced. */
  mark(): { resumes: number; aborts: number } {
    return { resumes: this.resumes, aborts: this.aborts };
  }

  abortStop(): Stop {
    const a = this.abort ?? {};
    return stopOf('aborted', `aborted${a.by ? ` by ${a.by}` : ''}${a.reason ? `: ${a.reason}` : ''}`);
  }

  /** An abort or an outside breach, if one waits to be acted on. An abort wins. */
  pendingStop(): Stop | undefined {
    if (this.abort) return this.abortStop();
    if (this.externalBreach) return stopOf('breach', this.externalBreach.reason);
    return undefined;
  }

  /** Wait until `ready()` or a stop is pending, at most `timeoutMs` (undefined = no limit). True when woken. */
  async waitFor(ready: () => boolean, timeoutMs?: number): Promise<boolean> {
    const wake = () => ready() || this.pendingStop() !== undefined;
    return timeoutMs === undefined ? (await condition(wake), true) : condition(wake, timeoutMs);
  }

  /**
   * Paused after a rollback: wait for a `resume` or `abort` sent since `since` (the moment the wait
   * was announced, so one sent during the alert counts and one sent before it does not). A stale
   * outside breach does not survive `resume`.
   */
  async awaitOperator(since: { resumes: number; aborts: number }): Promise<'resume' | 'abort'> {
    await condition(() => this.resumes > since.resumes || this.aborts > since.aborts);
    if (this.aborts > since.aborts) return 'abort';
    this.externalBreach = undefined;
    this.paused = false;
    return 'resume';
  }
}
