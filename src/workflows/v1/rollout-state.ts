/**
 * The rollout's in-memory state, its operator message handlers (approve/reject updates with
 * synchronous validators, pause/resume/abort signals, status query) and the UI-facing projections
 * (search attributes, current details). Deterministic: no I/O, time only from the workflow sandbox.
 */
import {
  ApplicationFailure,
  condition,
  setHandler,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
  log,
} from '@temporalio/workflow';
import type { TargetSpec, WaveSpec } from '../../spec/schema';
import { emitRolloutEvent } from '../../observability/workflow-sink';
import type { ArtifactRef } from '../../providers/types';
import {
  SA,
  abortSignal,
  approveUpdate,
  externalVerdictSignal,
  lockGrantedSignal,
  pauseSignal,
  rejectUpdate,
  resumeSignal,
  statusQuery,
  type HistoryEntry,
  type RolloutInput,
  type RolloutState,
  type RolloutStatus,
  type Stage,
  type TargetStatus,
  type Verdict,
} from '../../contract';

const MAX_HISTORY = 300;

/** Why the pipeline stopped before promote. */
export class RolloutStop extends Error {
  constructor(
    readonly kind: 'breach' | 'rejected' | 'aborted' | 'stage-failed' | 'no-data',
    message: string,
  ) {
    super(message);
    this.name = 'RolloutStop';
  }
}

export function targetLocation(t: TargetSpec): string {
  return t.provider === 'aws-lambda' ? `${t.region}/${t.function}:${t.alias}` : `${t.project}/${t.region}/${t.service}`;
}

export type RolloutTarget = TargetStatus & { spec: TargetSpec };

export class RolloutRun {
  readonly spec: RolloutInput['spec'];
  state: RolloutState = 'running';
  stage: Stage = 'pending';
  detail = 'starting';
  artifact?: ArtifactRef;
  targets = new Map<string, RolloutTarget>();
  lastAnalysis?: Verdict;
  bakeEndsAtMs?: number;
  awaitingApproval?: string;
  approvals: RolloutStatus['approvals'] = [];
  history: HistoryEntry[] = [];
  rollbackReason?: string;
  failedStage?: string;

  /** Operator pause (during a run) or the pipeline pause after a rollback. */
  paused = false;
  pausedAfterRollback = false;
  abortRequested?: { by?: string; reason?: string };
  resumeRequested = false;
  externalBreach?: Verdict;
  grantedLocks = new Set<string>();
  heldLocks = new Set<string>();
  /** Called when abort arrives, to cancel the running pipeline scope. */
  onAbort?: () => void;

  readonly startedAtMs: number;

  constructor(readonly input: RolloutInput) {
    this.spec = input.spec;
    this.startedAtMs = workflowInfo().runStartTime.getTime();
    for (const t of input.spec.targets)
      this.targets.set(t.name, { name: t.name, provider: t.provider, location: targetLocation(t), weight: 0, spec: t });
  }

  get id(): string {
    return workflowInfo().workflowId;
  }

  installHandlers(): void {
    setHandler(statusQuery, () => this.status());

    setHandler(
      approveUpdate,
      ({ by, comment }) => {
        const wave = this.awaitingApproval!;
        this.approvals.push({ wave, by, decision: 'approved', reason: comment });
        this.record('approval', `${by} approved wave ${wave}${comment ? `: ${comment}` : ''}`);
        this.awaitingApproval = undefined;
        return `approved wave ${wave}`;
      },
      {
        validator: ({ by }) => {
          this.checkApprover(by, 'approve');
          if (by === this.input.startedBy)
            throw ApplicationFailure.nonRetryable(`${by} started this rollout and cannot approve it (four-eyes rule)`, 'Refused');
        },
      },
    );

    setHandler(
      rejectUpdate,
      ({ by, reason }) => {
        const wave = this.awaitingApproval!;
        this.approvals.push({ wave, by, decision: 'rejected', reason });
        this.record('approval', `${by} rejected wave ${wave}: ${reason}`);
        this.awaitingApproval = undefined;
        return `rejected wave ${wave}`;
      },
      {
        validator: ({ by, reason }) => {
          // The starter may stop their own rollout; everyone else must be an approver.
          if (by !== this.input.startedBy) this.checkApprover(by, 'reject');
          else if (!this.awaitingApproval)
            throw ApplicationFailure.nonRetryable(`rollout is not waiting for an approval (stage ${this.stage})`, 'Refused');
          if (!reason || !reason.trim()) throw ApplicationFailure.nonRetryable('reject needs a reason', 'Refused');
        },
      },
    );

    setHandler(pauseSignal, (args) => {
      if (this.isFinished()) return;
      this.paused = true;
      this.state = 'paused';
      this.record('operator', `paused${args?.by ? ` by ${args.by}` : ''}${args?.reason ? `: ${args.reason}` : ''}`);
      this.publish();
    });
    setHandler(resumeSignal, (args) => {
      if (!this.paused) return;
      this.record('operator', `resumed${args?.by ? ` by ${args.by}` : ''}`);
      this.resumeRequested = true;
      this.paused = false;
      if (!this.pausedAfterRollback) this.state = 'running';
      this.publish();
    });
    setHandler(abortSignal, (args) => {
      if (this.isFinished() || this.abortRequested) return;
      this.abortRequested = args ?? {};
      this.record('operator', `abort requested${args?.by ? ` by ${args.by}` : ''}${args?.reason ? `: ${args.reason}` : ''}`);
      this.onAbort?.();
    });
    setHandler(externalVerdictSignal, (v) => {
      this.record('verdict', `external ${v.verdict}: ${v.reason}`);
      if (v.verdict === 'fail' && !this.externalBreach) this.externalBreach = v;
    });
    setHandler(lockGrantedSignal, ({ dependency }) => {
      this.grantedLocks.add(dependency);
    });
  }

  private checkApprover(by: string, action: string): void {
    if (!by || !by.trim()) throw ApplicationFailure.nonRetryable(`${action} needs --by NAME`, 'Refused');
    if (!this.spec.approvers.includes(by))
      throw ApplicationFailure.nonRetryable(
        `${by} is not an approver of ${this.spec.service} (approvers: ${this.spec.approvers.join(', ') || 'none'})`,
        'Refused',
      );
    if (!this.awaitingApproval)
      throw ApplicationFailure.nonRetryable(`rollout is not waiting for an approval (stage ${this.stage}, state ${this.state})`, 'Refused');
  }

  isFinished(): boolean {
    return !['running', 'paused'].includes(this.state);
  }

  record(kind: HistoryEntry['kind'], text: string): void {
    this.history.push({ atMs: Date.now(), kind, text });
    if (this.history.length > MAX_HISTORY) this.history.splice(0, this.history.length - MAX_HISTORY);
    log.info(text, { rolloutId: this.id, service: this.spec.service, release: this.spec.release, stage: this.stage });
  }

  enterStage(stage: Stage, detail: string): void {
    this.stage = stage;
    this.detail = detail;
    this.record('stage', `stage ${stage}: ${detail}`);
    this.publish();
  }

  setDetail(detail: string): void {
    this.detail = detail;
    this.publish();
  }

  setWeight(name: string, weight: number): void {
    this.targets.get(name)!.weight = weight;
    this.publish();
  }

  /** Wait while an operator pause holds the pipeline. Abort cancels this wait through the scope. */
  async holdWhilePaused(): Promise<void> {
    if (!this.paused) return;
    const before = this.detail;
    this.setDetail(`paused by operator (was: ${before})`);
    await condition(() => !this.paused);
    this.setDetail(before);
  }

  throwIfExternalBreach(): void {
    if (this.externalBreach) {
      const v = this.externalBreach;
      emitRolloutEvent({ kind: 'breach', service: this.spec.service, metric: 'external', target: v.target });
      this.externalBreach = undefined;
      this.lastAnalysis = v;
      throw new RolloutStop('breach', v.reason);
    }
  }

  waveTargets(wave: WaveSpec) {
    return wave.targets.map((n) => this.targets.get(n)!);
  }

  status(): RolloutStatus {
    return {
      id: this.id,
      service: this.spec.service,
      release: this.spec.release,
      state: this.state,
      stage: this.stage,
      detail: this.detail,
      startedBy: this.input.startedBy,
      artifactDigest: this.artifact?.digest,
      targets: [...this.targets.values()].map(({ spec: _spec, ...t }) => t),
      lastAnalysis: this.lastAnalysis,
      bakeEndsAtMs: this.bakeEndsAtMs,
      awaitingApproval: this.awaitingApproval,
      approvals: this.approvals,
      history: this.history,
      rollbackReason: this.rollbackReason,
      failedStage: this.failedStage,
      spec: this.spec,
      startedAtMs: this.startedAtMs,
    };
  }

  /** Search attributes (for the UI's list filters) and current details (a small markdown table). */
  private publishedSA = '';
  private publishedPaused = false;
  publish(): void {
    // Upsert only on change: each upsert is a history event.
    const sa = `${this.stage}|${this.state}`;
    const paused = this.state === 'paused' || this.state === 'rollback-failed';
    if (paused !== this.publishedPaused) {
      this.publishedPaused = paused;
      emitRolloutEvent({ kind: 'paused', service: this.spec.service, paused });
    }
    if (sa !== this.publishedSA) {
      this.publishedSA = sa;
      upsertSearchAttributes([
        { key: SA.stage, value: this.stage },
        { key: SA.state, value: this.state },
      ]);
    }
    const rows = [...this.targets.values()].map(
      (t) => `| ${t.name} | ${t.provider} | ${t.stableVersion ?? '-'} | ${t.newVersion ?? '-'} | ${t.weight} % |`,
    );
    const verdict = this.lastAnalysis ? `\n\nLast analysis: **${this.lastAnalysis.verdict}** ${this.lastAnalysis.reason}` : '';
    setCurrentDetails(
      `**${this.state}** · stage \`${this.stage}\` · ${this.detail}\n\n| target | provider | stable | new | weight |\n|---|---|---|---|---|\n${rows.join('\n')}${verdict}`,
    );
  }
}
