/**
 * The rollout's in-memory state (operator requests live in its OperatorGate), its operator message handlers (approve/reject updates with
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
import type { TargetSpec } from '../spec/schema';
import { emitRolloutEvent } from '../observability/workflow-sink';
import type { ArtifactRef, TrafficFence } from '../providers/types';
import { OperatorGate } from './gate';
import { BEFORE_FAST_FAILOVER, type RolloutActivities } from './activity-options';
import type { TrainLink } from './train-member';
import { checkIdentity, describeIdentity, isApprover, sameIdentity, unverified } from './identity';
import {
  SA,
  abortSignal,
  abortUpdate,
  approveUpdate,
  externalVerdictSignal,
  lockGrantedSignal,
  lockRequestQuery,
  messageNonceQuery,
  pauseSignal,
  pauseUpdate,
  rejectUpdate,
  resumeSignal,
  resumeUpdate,
  statusQuery,
  type BakeProgress,
  type Identity,
  type OperatorArgs,
  type ContinuedRollout,
  type HistoryEntry,
  type MessageNonce,
  type PipelinePosition,
  type RolloutInput,
  type RolloutState,
  type RolloutStatus,
  type Stage,
  type TargetStatus,
  type Verdict,
} from '../contract';

const MAX_HISTORY = 300;
/** A run continues as new past this many history events (the server's hard limit is 51,200). */
const DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS = 10_000;
/**
 * ...but only after this many history events of work since the run picked up the pipeline (its
 * start, or for a continued run where it went on from): the run that parks after a handover gets
 * back to the same wait in a few events (a freeze check at most), so it never hands over again
 * there, however many events its own start took.
 */
const PARK_HANDOVER_EVENTS = 60;

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
  /** The nonce each held or requested lock was requested with: its grant must carry it, and its release does. */
  lockNonces = new Map<string, string>();
  /**
   * Runs since patch `rollout-message-nonces` accept scheduled verdicts and lock grants only with
   * their nonce (see MessageNonce); `messageNonce` is set by a local activity right after the start.
   */
  authenticatesMessages = false;
  messageNonce?: string;
  /** Locks for which a grant without any nonce was refused: the lock's own state is asked before it counts. */
  grantsToConfirm = new Set<string>();

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
  /** Whether this run hands over before a long wait, to park on a short history (patch `rollout-park-handover`). */
  handsOverBeforeParking = false;
  /** The history length when this run picked up the pipeline (0, or where a continued run went on from). */
  pickedUpAtEvents = 0;
  /** Set when this run is a member of a release train (patch `rollout-train-member`). */
  train?: TrainLink;
  /** Local activities for the nonce, identity and freeze checks: only runs recorded before patch `rollout-no-local-activities`. */
  localChecks = true;
  /** Whether this run checks vetoes, honours promotion pins and rollbacks to a release, and announces its close (patch `release-registry`). */
  usesReleaseRegistry = false;
  /**
   * Whether the registry's gate (veto, promotion pin) is asked before every deploy pass, resumes
   * included, and before a rollback to a release routes (patch `release-gates-every-pass`); runs
   * before it ask only after the build, for the veto.
   */
  checksReleaseGates = false;
  /**
   * The activity proxies of this run: heartbeat timeouts of 5 s since patch `rollgate-fast-failover`
   * (src/workflows/activity-options.ts), the options of before for runs recorded before it.
   */
  acts: RolloutActivities = BEFORE_FAST_FAILOVER;

  // ---- verified identities (src/workflows/identity.ts, docs/security-identities.md) ----
  /** The starter: verified at the start when the worker has a verifier, else the `--by` name. */
  starter: Identity;
  /** Whether the starter was checked (runs recorded before verified identities never are). */
  starterChecked = false;
  /** The worker verified the start: every operator message must then carry a valid token. */
  verifiesIdentities = false;
  /** False while the start check runs: messages wait for it (a tokenless abort must not slip in first). */
  identityKnown = true;
  /** Approvals of the waiting wave short of `min_approvals` (distinct people). */
  pendingApprovals?: { wave: string; approvers: Identity[] };

  readonly startedAtMs: number;

  constructor(readonly input: RolloutInput) {
    this.spec = input.spec;
    this.startedAtMs = input.continued?.startedAtMs ?? workflowInfo().runStartTime.getTime();
    this.starter = unverified(input.startedBy);
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
      if (l.nonce) this.lockNonces.set(l.dependency, l.nonce);
    }
    this.resumedBake = c.bake;
    this.pass = c.pass ?? 1;
    if (c.starter) {
      this.starter = c.starter;
      this.starterChecked = true;
    }
    this.verifiesIdentities = c.verifiesIdentities ?? false;
    this.pendingApprovals = c.pendingApprovals;
    if (c.parityWarnings) this.parityWarnings = c.parityWarnings;
  }

  /**
   * Check who started the rollout before anything runs (a new run only; a continued run carries the
   * answer). A refusal is returned: the rollout then ends as failed with it, before the preflight.
   */
  async checkStarter(): Promise<string | undefined> {
    if (this.input.continued) return undefined;
    this.identityKnown = false;
    // A train member (patch rollout-train-member-v2) started by its train: the train checked the starter.
    const fromTrain = this.train?.trainStarter(this.input.startToken !== undefined);
    try {
      const r = await checkIdentity(
        {
          action: 'start',
          token: this.input.startToken,
          claimedBy: this.input.startedBy,
          // A revert started by a scheduled analysis has no person behind it to check.
          requireToken: !this.input.revertPromoted && !fromTrain,
        },
        this.localChecks,
      );
      this.verifiesIdentities = r.verifier;
      if (fromTrain && r.verifier && !fromTrain.verified)
        throw new Error(
          `start refused: this rollout's worker verifies identities, and train ${this.train!.membership.name} did not verify its starter`,
        );
      this.starter = fromTrain ?? (r.identity.verified ? r.identity : unverified(this.input.startedBy));
      this.starterChecked = true;
      this.record('operator', `started by ${describeIdentity(this.starter)}`);
      return undefined;
    } catch (err) {
      this.verifiesIdentities = true;
      return (err as Error).message;
    } finally {
      this.identityKnown = true;
    }
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

  /**
   * True before a wait of `waitMs` (undefined: until a message) when this run should hand over so
   * that it parks on a short history: an evicted parked run replays its whole history for every
   * query, signal and timer that wakes it (about 110 events and 50-76 ms for a rollout in its
   * canary bake, measured at 10,000 parked; docs/DEVELOPMENT.md "Parking on a short history").
   */
  shouldHandOverBeforeParking(waitMs: number | undefined): boolean {
    if (!this.handsOverBeforeParking || !this.continueAsNewEnabled || this.position === undefined) return false;
    // Opt-in (the start's `parkHandoverAfterMs`): a continued run loses the UI's static summary and
    // details, and the UI lists each handover as a closed run.
    const longest = this.input.parkHandoverAfterMs;
    if (longest === undefined || (waitMs !== undefined && waitMs < longest)) return false;
    return workflowInfo().historyLength - this.pickedUpAtEvents >= PARK_HANDOVER_EVENTS;
  }

  /** Remember where the pipeline is now, for the handover to the next run. */
  markHandover(): void {
    // A continued run that hands over again before its first bake took up the carried one (paused
    // at the stage's start, say) passes that bake on, not a fresh one.
    const bake = this.bake ?? this.resumedBake;
    this.handoverAt = { position: { ...this.position! }, ...(bake ? { bake: { ...bake } } : {}) };
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
      ...(this.starterChecked ? { starter: this.starter } : {}),
      verifiesIdentities: this.verifiesIdentities,
      ...(this.pendingApprovals ? { pendingApprovals: this.pendingApprovals } : {}),
      ...(this.messageNonce !== undefined ? { messageNonce: this.messageNonce } : {}),
      locks: [...this.heldLocks]
        .filter((d) => this.grantedLocks.has(d))
        .map((dependency) => {
          const nonce = this.lockNonces.get(dependency);
          return { dependency, runId: this.lockRunIds.get(dependency) ?? workflowInfo().runId, ...(nonce ? { nonce } : {}) };
        }),
      runs: (this.input.continued?.runs ?? 0) + 1,
      pass: this.pass,
      ...(this.parityWarnings ? { parityWarnings: this.parityWarnings } : {}),
      ...(this.train?.detachedToCarry ? { trainDetached: true } : {}),
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

    // Approve/reject: the validator refuses what it can tell synchronously; a token is checked in
    // the handler (a local activity), and the rules are checked again on the verified identity.
    setHandler(
      approveUpdate,
      async ({ by, comment, token, wave }) => {
        const who = await this.identify('approve', by, token);
        this.checkApprover(who, 'approve', wave);
        this.checkNotStarter(who);
        return this.approve(who, comment);
      },
      {
        validator: ({ by, token, wave }) => {
          this.checkTokenPresent('approve', token);
          if (token) return this.checkAwaiting(wave);
          this.checkApprover(unverified(by), 'approve', wave, by);
          this.checkNotStarter(unverified(by));
        },
      },
    );

    setHandler(
      rejectUpdate,
      async ({ by, reason, token, wave }) => {
        const who = await this.identify('reject', by, token);
        this.checkRejecter(who, wave);
        return this.decide({ wave: gate.awaitingApproval!, by: who.name, decision: 'rejected', reason }, who);
      },
      {
        validator: ({ by, reason, token, wave }) => {
          this.checkTokenPresent('reject', token);
          if (token) this.checkAwaiting(wave);
          else this.checkRejecter(unverified(by), wave, by);
          if (!reason || !reason.trim()) throw ApplicationFailure.nonRetryable('reject needs a reason', 'Refused');
        },
      },
    );

    // pause/resume/abort: signals (older clients, no token) and updates (a token, an answer).
    setHandler(pauseSignal, (args) => this.viaSignal('pause', args, (who) => this.pause(who, args?.reason)));
    setHandler(resumeSignal, (args) => this.viaSignal('resume', args, (who) => this.resume(who)));
    // Accepted in every open state, rollback-failed included (it closes the rollout there).
    setHandler(abortSignal, (args) => this.viaSignal('abort', args, (who) => this.abort(who, args?.by, args?.reason)));
    const operatorUpdate = (action: string, act: (who: Identity, args: OperatorArgs) => string) =>
      [
        async (args: OperatorArgs) => act(await this.identify(action, args?.by, args?.token), args ?? {}),
        { validator: (args: OperatorArgs) => this.checkTokenPresent(action, args?.token) },
      ] as const;
    setHandler(pauseUpdate, ...operatorUpdate('pause', (who, a) => this.pause(who, a.reason)));
    setHandler(resumeUpdate, ...operatorUpdate('resume', (who) => this.resume(who)));
    setHandler(abortUpdate, ...operatorUpdate('abort', (who, a) => this.abort(who, who.name, a.reason)));
    setHandler(messageNonceQuery, () => this.messageNonce);
    setHandler(lockRequestQuery, (q) => this.requested(q));
    setHandler(externalVerdictSignal, (message) => {
      if (this.authenticatesMessages) {
        const refusal = this.verdictRefusal(message);
        if (refusal) return this.record('verdict', refusal);
      }
      const { nonce: _nonce, ...v } = message; // the nonce never reaches status or history entries
      if (v.release !== undefined && v.release !== this.spec.release) {
        this.record('verdict', `ignored an external ${v.verdict} about release ${v.release} (this rollout is ${this.spec.release})`);
        return;
      }
      // A scheduled analysis reads the status, judges, then signals: a rollback and a resume in
      // between make its verdict one about the previous pass's traffic. No patch: verdicts carry
      // `pass` only since this check exists, so no recorded history reaches this branch.
      if (v.pass !== undefined && v.pass !== this.pass) {
        this.record('verdict', `ignored an external ${v.verdict} about pass ${v.pass} (this rollout is on pass ${this.pass}): ${v.reason}`);
        return;
      }
      this.record('verdict', `external ${v.verdict}: ${v.reason}`);
      if (v.verdict === 'fail' && !gate.externalBreach && !this.pausedAfterRollback) gate.externalBreach = v;
    });
    setHandler(lockGrantedSignal, (message) => {
      if (this.authenticatesMessages) {
        const refusal = this.grantRefusal(message);
        if (refusal) return this.record('decision', refusal);
      }
      this.grantedLocks.add(message.dependency);
    });
  }

  /**
   * Why an outside verdict is not from rollgate's scheduled analysis (undefined: it is). Refusals
   * are recorded, never thrown: a throwing signal handler fails the workflow task.
   */
  private verdictRefusal(m: Partial<Verdict & MessageNonce> | undefined): string | undefined {
    if (
      typeof m !== 'object' ||
      m === null ||
      !['pass', 'fail', 'inconclusive'].includes(m.verdict as string) ||
      typeof m.reason !== 'string'
    )
      return 'refused a malformed externalVerdict';
    if (this.messageNonce === undefined || m.nonce !== this.messageNonce)
      return `refused an external ${m.verdict}: it does not carry this run's message nonce, so rollgate's scheduled analysis did not send it`;
    return undefined;
  }

  /** Whether this run requested (and still holds or waits for) the lock, with this nonce if it uses one. */
  private requested(q: Partial<{ dependency: string } & MessageNonce> | undefined): boolean {
    if (typeof q !== 'object' || q === null || typeof q.dependency !== 'string' || !this.heldLocks.has(q.dependency)) return false;
    const nonce = this.lockNonces.get(q.dependency);
    return nonce === undefined ? q.nonce === undefined : q.nonce === nonce;
  }

  /**
   * Why a lockGranted is not the grant of this run's request by its lock workflow (undefined: it may
   * be; the lock confirms it). A refused one without any nonce is also queued for that confirmation.
   */
  private grantRefusal(m: Partial<{ dependency: string } & MessageNonce> | undefined): string | undefined {
    if (typeof m !== 'object' || m === null || typeof m.dependency !== 'string') return 'refused a malformed lockGranted';
    const dependency = m.dependency.slice(0, 100);
    const expected = this.lockNonces.get(m.dependency);
    if (expected === undefined)
      return `refused a lockGranted for ${dependency}: this run has not requested that lock (a late grant or a forgery)`;
    if (m.nonce === undefined) {
      // A lock worker from before the nonces grants without one: only its lockState can tell.
      this.grantsToConfirm.add(m.dependency);
      return `refused a lockGranted for ${dependency} without a nonce (a forgery, or a lock from before nonces): asking its lock workflow whether this run holds it`;
    }
    if (m.nonce !== expected)
      return `refused a lockGranted for ${dependency}: it does not carry the nonce of this run's request, so its lock workflow did not send it`;
    return undefined;
  }

  // ---- operator actions (one body for the signal and the update of each) ----

  private pause(who: Identity, reason?: string): string {
    if (this.isClosed() || this.pausedAfterRollback) return `not paused: the rollout is ${this.state}`;
    this.gate.paused = true;
    this.state = 'paused';
    this.record('operator', `paused${this.byText(who)}${reason ? `: ${reason}` : ''}`);
    this.publish();
    return 'paused';
  }

  private resume(who: Identity): string {
    if (!this.gate.paused && !this.pausedAfterRollback) return `not resumed: the rollout is ${this.state}, not paused`;
    this.record('operator', `resumed${this.byText(who)}`);
    this.gate.resumes++;
    this.gate.paused = false;
    if (!this.pausedAfterRollback) this.state = 'running';
    this.publish();
    return 'resumed';
  }

  /** `by` is what the abort's Stop names (the given name, as before verified identities). */
  private abort(who: Identity, by: string | undefined, reason?: string): string {
    if (this.isClosed()) return `not aborted: the rollout is ${this.state}`;
    this.record('operator', `abort requested${this.byText(who)}${reason ? `: ${reason}` : ''}`);
    this.gate.requestAbort({ ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) });
    return 'abort requested';
  }

  private byText(who: Identity): string {
    return who.verified || who.name !== 'unknown' ? ` by ${describeIdentity(who)}` : '';
  }

  /** A signal (no token): applied as the unverified `--by` name, unless this rollout's worker verifies identities. */
  private viaSignal(action: string, args: { by?: string } | undefined, act: (who: Identity) => void): void {
    const apply = () => {
      if (this.verifiesIdentities) {
        this.record(
          'operator',
          `ignored a ${action} signal${args?.by ? ` from ${args.by}` : ''}: this rollout verifies identities, send it with a token (rollgate ${action} --token)`,
        );
        return;
      }
      act(unverified(args?.by));
    };
    if (this.identityKnown) apply();
    else void condition(() => this.identityKnown).then(apply);
  }

  /** Who sent a message: the token's verified identity, or (no token, no verifier) the given name. */
  private async identify(action: string, by: string | undefined, token: string | undefined): Promise<Identity> {
    if (!this.identityKnown) await condition(() => this.identityKnown);
    if (!token && !this.verifiesIdentities) return unverified(by);
    const r = await checkIdentity({ action, token, claimedBy: by, requireToken: true }, this.localChecks);
    this.verifiesIdentities ||= r.verifier;
    return r.identity;
  }

  /** Synchronous: a rollout whose worker verifies identities refuses a message without a token. */
  private checkTokenPresent(action: string, token: string | undefined): void {
    if (!token && this.verifiesIdentities)
      throw ApplicationFailure.nonRetryable(
        `${action} refused: this rollout verifies identities and no token was sent (rollgate --token or ROLLGATE_TOKEN)`,
        'Refused',
      );
  }

  /** Who may not approve: the starter, and after a post-promotion revert also who released it. */
  private starters(): Identity[] {
    const releasedBy = this.releasedBy();
    return releasedBy ? [this.starter, unverified(releasedBy)] : [this.starter];
  }

  private checkNotStarter(who: Identity): void {
    if (this.starters().some((s) => sameIdentity(s, who)))
      throw ApplicationFailure.nonRetryable(`${who.name} started this rollout and cannot approve it (four-eyes rule)`, 'Refused');
  }

  /** The starter may stop their own rollout; everyone else must be an approver. */
  private checkRejecter(who: Identity, wave: string | undefined, given?: string): void {
    if (sameIdentity(who, this.starter)) this.checkAwaiting(wave);
    else this.checkApprover(who, 'reject', wave, given);
  }

  /** An approval counts once per person; the wave goes on after `min_approvals` distinct people. */
  private approve(who: Identity, comment: string | undefined): string {
    const wave = this.gate.awaitingApproval!;
    const needed = this.spec.min_approvals ?? 1;
    if (needed <= 1) return this.decide({ wave, by: who.name, decision: 'approved', reason: comment }, who);
    const pending = this.pendingApprovals?.wave === wave ? this.pendingApprovals : { wave, approvers: [] };
    if (pending.approvers.some((a) => sameIdentity(a, who)))
      throw ApplicationFailure.nonRetryable(
        `${who.name} already approved wave ${wave}: min_approvals ${needed} counts distinct people`,
        'Refused',
      );
    pending.approvers.push(who);
    if (pending.approvers.length >= needed) {
      this.pendingApprovals = undefined;
      return this.decide({ wave, by: who.name, decision: 'approved', reason: comment }, who);
    }
    this.pendingApprovals = pending;
    const n = pending.approvers.length;
    this.approvals.push({ wave, by: who.name, decision: 'approved', ...(comment ? { reason: comment } : {}), ...identityFields(who) });
    this.record('approval', `${describeIdentity(who)} approved wave ${wave} (${n} of ${needed})${comment ? `: ${comment}` : ''}`);
    this.publish();
    return `approved wave ${wave} (${n} of ${needed} approvals)`;
  }

  private decide(d: { wave: string; by: string; decision: 'approved' | 'rejected'; reason?: string }, who: Identity): string {
    this.approvals.push({ ...d, ...identityFields(who) });
    this.pendingApprovals = undefined;
    this.gate.lastDecision = { ...d, verified: who.verified };
    this.gate.awaitingApproval = undefined;
    this.record('approval', `${d.by} ${d.decision} wave ${d.wave}${d.reason ? `: ${d.reason}` : ''}${who.verified ? '' : ' (unverified)'}`);
    return `${d.decision} wave ${d.wave}`;
  }

  /** `given`: the name as sent (a validator's message says "needs --by" for an empty one). */
  private checkApprover(who: Identity, action: string, wave: string | undefined, given?: string): void {
    if (!who.verified && (given === undefined ? !who.name : !given || !given.trim()))
      throw ApplicationFailure.nonRetryable(`${action} needs --by NAME`, 'Refused');
    if (!isApprover(this.spec.approvers, who))
      throw ApplicationFailure.nonRetryable(
        `${who.name} is not an approver of ${this.spec.service} (approvers: ${this.spec.approvers.join(', ') || 'none'}${
          this.spec.approvers.some((a) => a.startsWith('group:'))
            ? who.verified
              ? `; groups in the token: ${(who.groups ?? []).join(', ') || 'none'}`
              : '; groups need a verified token'
            : ''
        })`,
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
      ...(this.starterChecked ? { starter: this.starter } : {}),
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
      ...(this.train ? { train: { id: this.train.membership.id, name: this.train.membership.name, held: this.train.held } } : {}),
      ...(this.input.environment ? { environment: this.input.environment } : {}),
      ...(this.input.rollbackTo ? { rollbackTo: this.input.rollbackTo.release } : {}),
      pass: this.pass,
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
    // Current details are answered by the SDK's metadata query, never recorded in history: their
    // text can change without a patch (replay does not see it).
    const rows = [...this.targets.values()].map((t) =>
      tableRow([t.name, t.provider, t.stableVersion ?? '-', t.newVersion ?? '-', `${t.weight} %`]),
    );
    const verdict = this.lastAnalysis ? `\n\nLast analysis: **${this.lastAnalysis.verdict}** ${this.lastAnalysis.reason}` : '';
    setCurrentDetails(
      `**${this.state}** · stage \`${this.stage}\` · ${this.detail}\n\n${tableRow(['target', 'provider', 'stable', 'new', 'weight'])}\n|---|---|---|---|---|\n${rows.join('\n')}${verdict}`,
    );
  }
}

/**
 * One row of a markdown table for the Temporal UI, which renders tables without cell padding
 * (the columns ran together: "stablenewweight"): no-break spaces after each cell keep them apart
 * (the UI shows an entity such as `&emsp;` as written, and trims ordinary spaces).
 */
function tableRow(cells: string[]): string {
  return `| ${cells.map((c) => `${c}${CELL_PAD}`).join(' | ')} |`;
}

const CELL_PAD = '\u00a0'.repeat(3);

/** What an approval entry says of the identity behind it: `verified` and `subject` when checked, nothing when not (unverified). */
function identityFields(who: Identity): { verified?: true; subject?: string } {
  return who.verified ? { verified: true, ...(who.subject ? { subject: who.subject } : {}) } : {};
}
