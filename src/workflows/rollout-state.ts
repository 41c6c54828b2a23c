/**
 * The rollout's in-memory state (operator requests live in its OperatorGate), its operator message handlers (approve/reject updates with
 * synchronous validators, pause/resume/abort signals, status query) and the UI-facing projections
 * (search attributes, current details). Deterministic: no I/O, time only from the workflow sandbox.
 */
import { ApplicationFailure, setHandler, setCurrentDetails, upsertSearchAttributes, workflowInfo, log } from '@temporalio/workflow';
import type { TargetSpec } from '../spec/schema';
import { emitRolloutEvent } from '../observability/workflow-sink';
import type { ArtifactRef, TrafficFence } from '../providers/types';
import { OperatorGate } from './gate';
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
  type BakeProgress,
  type ContinuedRollout,
  type HistoryEntry,
  type PipelinePosition,
  type RolloutInput,
  type RolloutState,
  type RolloutStatus,
  type Stage,
  type TargetStatus,
  type Verdict,
} from './messages';

const MAX_HISTORY = 300;
/** A run continues as new past this many history events (the server's hard limit is 51,200). */
const DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS = 10_000;

export function targetLocation(t: TargetSpec): string {
  return t.provider === 'aws-lambda' ? `${t.region}/${t.function}:${t.alias}` : `${t.project}/${t.region}/${t.service}`;
}

export type RolloutTarget = TargetStatus & {
  spec: TargetSpec;
  /** When the target went to 100 %: the window in which its stable version last served traffic (the baseline from then on). */
  baselineWindow?: { startMs: number; endMs: number };
};

export class RolloutRun {
  readonly spec: RolloutInput['spec'];
  state: RolloutState = 'running';
  stage: Stage = 'pending';
  detail = 'starting';
  artifact?: ArtifactRef;
  targets = new Map<string, RolloutTarget>();
  lastAnalysis?: Verdict;
  bakeEndsAtMs?: number;
  approvals: RolloutStatus['approvals'] = [];
  history: HistoryEntry[] = [];
  rollbackReason?: string;
  failedStage?: string;
  /** Paused after a rollback (or a failed one), waiting for resume/abort. */
  pausedAfterRollback = false;
  /** Operator answers counted from here on are answers to the announced wait after a rollback. */
  operatorMark = { resumes: 0, aborts: 0 };
  /** The migration ran (an abort after it says so). */
  migrated = false;
  /** Parity differences preflight found under `parity: warn` (src/providers/parity.ts), for status and alerts. */
  parityWarnings?: string[];
  readonly gate = new OperatorGate();
  grantedLocks = new Set<string>();
  heldLocks = new Set<string>();
  /** The run id each held lock was requested with (an earlier run of this rollout, after continue-as-new). */
  lockRunIds = new Map<string, string>();

  /** Where the traffic stages are (set only while they run): what a continued run starts from. */
  position?: PipelinePosition;
  /** The bake in progress, if any (kept up to date by bakeAndAnalyze). */
  bake?: BakeProgress;
  /** Where the pipeline was when it decided to continue as new (the stack unwinds before the handover). */
  handoverAt?: { position: PipelinePosition; bake?: BakeProgress };
  /** Set on a continued run: the bake to finish first, consumed by the first bake. */
  resumedBake?: BakeProgress;
  /** The pass of the pipeline: 1, then one more for each `resume` that retries the release (fencing). */
  pass = 1;
  /** Whether this run may continue as new (runs started before patch `rollout-continue-as-new` never do). */
  continueAsNewEnabled = false;

  readonly startedAtMs: number;

  constructor(readonly input: RolloutInput) {
    this.spec = input.spec;
    this.startedAtMs = input.continued?.startedAtMs ?? workflowInfo().runStartTime.getTime();
    for (const t of input.spec.targets)
      this.targets.set(t.name, { name: t.name, provider: t.provider, location: targetLocation(t), weight: 0, spec: t });
    if (input.continued) this.restore(input.continued);
  }

  /** A continued run: the state the previous run had when it continued as new. */
  private restore(c: ContinuedRollout): void {
    this.artifact = c.artifact;
    this.stage = c.stage;
    this.detail = c.detail;
    for (const saved of c.targets) {
      const t = this.targets.get(saved.name);
      if (t) Object.assign(t, { ...saved, spec: t.spec, location: t.location });
    }
    this.approvals = c.approvals;
    this.history = c.history;
    this.lastAnalysis = c.lastAnalysis;
    this.gate.paused = c.paused;
    if (c.paused) this.state = 'paused';
    this.migrated = c.migrated;
    this.failedStage = c.failedStage;
    for (const l of c.locks) {
      this.heldLocks.add(l.dependency);
      this.grantedLocks.add(l.dependency);
      this.lockRunIds.set(l.dependency, l.runId);
    }
    this.resumedBake = c.bake;
    this.pass = c.pass ?? 1;
    if (c.parityWarnings) this.parityWarnings = c.parityWarnings;
  }

  /** What every traffic write of this pass carries: a revert's mark refuses later forward writes of it. */
  fence(): TrafficFence {
    return { chain: workflowInfo().firstExecutionRunId, pass: this.pass };
  }

  /** True at a moment when this run should hand over to a new one (only inside the traffic stages). */
  shouldContinueAsNew(): boolean {
    if (!this.continueAsNewEnabled || this.position === undefined) return false;
    const info = workflowInfo();
    const limit = this.input.continueAsNewAfterEvents ?? DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS;
    return info.continueAsNewSuggested || info.historyLength >= limit;
  }

  /** Remember where the pipeline is now, for the handover to the next run. */
  markHandover(): void {
    this.handoverAt = { position: { ...this.position! }, ...(this.bake ? { bake: { ...this.bake } } : {}) };
  }

  /** What the next run needs to go on exactly where `markHandover` was called. */
  snapshot(): ContinuedRollout {
    const at = this.handoverAt!;
    return {
      position: at.position,
      stage: this.stage,
      detail: this.detail,
      ...(at.bake ? { bake: at.bake } : {}),
      artifact: this.artifact!,
      targets: [...this.targets.values()].map(({ spec: _spec, ...t }) => t),
      approvals: this.approvals,
      history: this.history,
      ...(this.lastAnalysis ? { lastAnalysis: this.lastAnalysis } : {}),
      paused: this.gate.paused,
      migrated: this.migrated,
      ...(this.failedStage ? { failedStage: this.failedStage } : {}),
      startedAtMs: this.startedAtMs,
      ...(this.releasedBy() ? { releasedBy: this.releasedBy() } : {}),
      locks: [...this.heldLocks]
        .filter((d) => this.grantedLocks.has(d))
        .map((dependency) => ({ dependency, runId: this.lockRunIds.get(dependency) ?? workflowInfo().runId })),
      runs: (this.input.continued?.runs ?? 0) + 1,
      pass: this.pass,
      ...(this.parityWarnings ? { parityWarnings: this.parityWarnings } : {}),
    };
  }

  private releasedBy(): string | undefined {
    return this.input.revertPromoted?.releasedBy ?? this.input.continued?.releasedBy;
  }

  get id(): string {
    return workflowInfo().workflowId;
  }

  installHandlers(): void {
    const gate = this.gate;
    setHandler(statusQuery, () => this.status());

    setHandler(
      approveUpdate,
      ({ by, comment }) => this.decide({ wave: gate.awaitingApproval!, by, decision: 'approved', reason: comment }),
      {
        validator: ({ by, wave }) => {
          this.checkApprover(by, 'approve', wave);
          if (this.starters().includes(by))
            throw ApplicationFailure.nonRetryable(`${by} started this rollout and cannot approve it (four-eyes rule)`, 'Refused');
        },
      },
    );

    setHandler(rejectUpdate, ({ by, reason }) => this.decide({ wave: gate.awaitingApproval!, by, decision: 'rejected', reason }), {
      validator: ({ by, reason, wave }) => {
        // The starter may stop their own rollout; everyone else must be an approver.
        if (by !== this.input.startedBy) this.checkApprover(by, 'reject', wave);
        else this.checkAwaiting(wave);
        if (!reason || !reason.trim()) throw ApplicationFailure.nonRetryable('reject needs a reason', 'Refused');
      },
    });

    setHandler(pauseSignal, (args) => {
      if (this.isClosed() || this.pausedAfterRollback) return;
      gate.paused = true;
      this.state = 'paused';
      this.record('operator', `paused${args?.by ? ` by ${args.by}` : ''}${args?.reason ? `: ${args.reason}` : ''}`);
      this.publish();
    });
    setHandler(resumeSignal, (args) => {
      if (!gate.paused && !this.pausedAfterRollback) return;
      this.record('operator', `resumed${args?.by ? ` by ${args.by}` : ''}`);
      gate.resumes++;
      gate.paused = false;
      if (!this.pausedAfterRollback) this.state = 'running';
      this.publish();
    });
    // Accepted in every open state, rollback-failed included (it closes the rollout there).
    setHandler(abortSignal, (args) => {
      if (this.isClosed()) return;
      this.record('operator', `abort requested${args?.by ? ` by ${args.by}` : ''}${args?.reason ? `: ${args.reason}` : ''}`);
      gate.requestAbort(args ?? {});
    });
    setHandler(externalVerdictSignal, (v) => {
      if (v.release !== undefined && v.release !== this.spec.release) {
        this.record('verdict', `ignored an external ${v.verdict} about release ${v.release} (this rollout is ${this.spec.release})`);
        return;
      }
      this.record('verdict', `external ${v.verdict}: ${v.reason}`);
      if (v.verdict === 'fail' && !gate.externalBreach && !this.pausedAfterRollback) gate.externalBreach = v;
    });
    setHandler(lockGrantedSignal, ({ dependency }) => {
      this.grantedLocks.add(dependency);
    });
  }

  /** Who may not approve: the starter, and after a post-promotion revert also who released it. */
  private starters(): string[] {
    const releasedBy = this.releasedBy();
    return releasedBy ? [this.input.startedBy, releasedBy] : [this.input.startedBy];
  }

  private decide(d: { wave: string; by: string; decision: 'approved' | 'rejected'; reason?: string }): string {
    this.approvals.push(d);
    this.gate.lastDecision = d;
    this.gate.awaitingApproval = undefined;
    this.record('approval', `${d.by} ${d.decision} wave ${d.wave}${d.reason ? `: ${d.reason}` : ''}`);
    return `${d.decision} wave ${d.wave}`;
  }

  private checkApprover(by: string, action: string, wave: string | undefined): void {
    if (!by || !by.trim()) throw ApplicationFailure.nonRetryable(`${action} needs --by NAME`, 'Refused');
    if (!this.spec.approvers.includes(by))
      throw ApplicationFailure.nonRetryable(
        `${by} is not an approver of ${this.spec.service} (approvers: ${this.spec.approvers.join(', ') || 'none'})`,
        'Refused',
      );
    this.checkAwaiting(wave);
  }

  private checkAwaiting(wave: string | undefined): void {
    const waiting = this.gate.awaitingApproval;
    if (!waiting)
      throw ApplicationFailure.nonRetryable(`rollout is not waiting for an approval (stage ${this.stage}, state ${this.state})`, 'Refused');
    if (wave !== undefined && wave !== waiting)
      throw ApplicationFailure.nonRetryable(`the rollout waits for an approval of wave ${waiting}, not ${wave}`, 'Refused');
  }

  /** Closed for good: nothing an operator sends changes it any more. */
  isClosed(): boolean {
    return !['running', 'paused', 'rollback-failed'].includes(this.state);
  }

  record(kind: HistoryEntry['kind'], text: string): void {
    this.history.push({ atMs: Date.now(), kind, text });
    // Bounded, but alert deliveries (and their failures) are never the ones dropped.
    if (this.history.length > MAX_HISTORY) {
      const oldest = this.history.findIndex((e) => e.kind !== 'alert');
      if (oldest >= 0) this.history.splice(oldest, 1);
    }
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

  /** Targets that serve some of the new version right now, for analyses while the pipeline waits. */
  targetsWithNewTraffic(): TargetSpec[] {
    return [...this.targets.values()].filter((t) => t.weight > 0 && t.newVersion !== undefined).map((t) => t.spec);
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
      targets: [...this.targets.values()].map(({ spec: _spec, baselineWindow: _w, ...t }) => t),
      lastAnalysis: this.lastAnalysis,
      bakeEndsAtMs: this.bakeEndsAtMs,
      awaitingApproval: this.gate.awaitingApproval,
      approvals: this.approvals,
      history: this.history,
      rollbackReason: this.rollbackReason,
      pausedAfterRollback: this.pausedAfterRollback,
      failedStage: this.failedStage,
      ...(this.parityWarnings ? { parityWarnings: this.parityWarnings } : {}),
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
