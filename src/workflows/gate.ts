/**
 * What operators and outside verdicts ask of a running rollout, owned in one place (like Argo
 * Rollouts' pause.go): an operator pause, an abort, the approval a wave waits for, a breach reported
 * by a scheduled analysis, and `resume` after a rollback. The pipeline asks the gate at every
 * checkpoint; the gate never moves traffic itself.
 */
import { condition } from '@temporalio/workflow';
import type { Verdict } from './messages';

export type StopKind = 'breach' | 'rejected' | 'aborted' | 'stage-failed' | 'no-data';

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
  /** Set by `resume` while the pipeline waits after a rollback. */
  resumeRequested = false;
  /** Cancels the running pipeline scope when an abort arrives. */
  onAbort?: () => void;

  requestAbort(args: { by?: string; reason?: string }): void {
    if (this.abort) return;
    this.abort = args;
    this.onAbort?.();
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

  /** Paused after a rollback: wait for `resume` or `abort`; a stale outside breach does not survive `resume`. */
  async awaitOperator(): Promise<'resume' | 'abort'> {
    this.resumeRequested = false;
    await condition(() => this.resumeRequested || !!this.abort);
    if (this.abort) return 'abort';
    this.externalBreach = undefined;
    this.paused = false;
    return 'resume';
  }
}
