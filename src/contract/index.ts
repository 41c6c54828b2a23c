/**
 * The contract between rollgate's workflows and everything that talks to them: the task queues,
 * workflow ids, the workflow input, the message definitions, the status and verdict shapes, the
 * search attributes, and the deployment contract (release variables, pinned image format, in
 * ./release). Defined once, outside src/workflows, imported by the workflow and by every client;
 * pure by lint rule (the workflow fence covers this folder).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { RolloutSpec } from '../spec/schema';
import type { ArtifactRef } from '../providers/types';
import type { TrainMembership } from './train';

export * from './release';
export * from './train';
export * from './releases';

export const TASK_QUEUE = 'rollgate';
/** Default task queue of `rollgate runner` (build, test, migration commands); ROLLGATE_RUNNER_TASK_QUEUE overrides it. */
export const RUNNER_TASK_QUEUE = 'rollgate-runner';

/**
 * Workflow task timeout of the workflows rollgate starts (rollouts, trains, the dependency locks,
 * the release registries): a workflow task held by a worker that died is handed to a live worker
 * after this long. Kept at the server's default, 10 s, set here explicitly so that it is one knob:
 * 2 s and 5 s were measured (docs/DEVELOPMENT.md, "Fleet failover") and made failover slower on the
 * loaded 2-core machine, not faster. A task timeout on a live worker is not a failure (the server
 * schedules the task again, the worker's late answer is refused), but the run is evicted and its
 * next attempt replays the whole history: when a dead worker's rollouts all arrive on the survivor
 * at once, each replay waits behind the others for the one workflow thread, the last ones pass 2 s
 * (or 5 s), time out and replay again (40 rollouts: stall p50 19 s at 2 s, p99 29 s at 5 s, against
 * p50 2.0 s, p99 4.8 s at 10 s). Lower it only with a measurement at 200 on an idle machine.
 * A continue-as-new inherits its run's value.
 */
export const WORKFLOW_TASK_TIMEOUT = '10 seconds';

/** One workflow per service at a time: Temporal itself refuses a second start with this id. */
export function rolloutWorkflowId(service: string): string {
  return `rollout-${service}`;
}

export interface RolloutInput {
  /** A spec already validated by validateSpec (defaults filled in). */
  spec: RolloutSpec;
  /** Who started it; may not approve it (four-eyes rule). */
  startedBy: string;
  /**
   * The starter's bearer token (OIDC/JWT), verified by the worker before anything runs when it has
   * a verifier (ROLLGATE_OIDC_*). Never copied into status, history entries or logs; see
   * docs/security-identities.md for what workflow history keeps of it.
   */
  startToken?: string;
  /**
   * Task queue of the runner that runs this rollout's build, test and migration commands (set by
   * the client from ROLLGATE_RUNNER_TASK_QUEUE; absent in runs started before the runner split:
   * RUNNER_TASK_QUEUE).
   */
  runnerTaskQueue?: string;
  /**
   * Set by a scheduled analysis that failed after a promotion: put every target back on its
   * previous version, then pause the pipeline (resume re-runs the release from the deploy stage).
   */
  revertPromoted?: {
    reason: string;
    artifact: ArtifactRef;
    targets: { name: string; stableVersion: string; newVersion: string }[];
    /** Who started the promoted release: the four-eyes rule still applies to them after the revert. */
    releasedBy?: string;
  };
  /**
   * A long rollout continues as a new run (same workflow id) before its history grows too large,
   * from a wait or a bake slice with traffic on the new version. Set only by the workflow itself.
   */
  continued?: ContinuedRollout;
  /** Continue as new past this many history events (default 10,000; the server may suggest it sooner). */
  continueAsNewAfterEvents?: number;
  /**
   * Before a wait or bake slice at least this long, a run whose history has grown past a few dozen
   * events hands over to a new run first (off when unset; patch `rollout-park-handover`): a parked
   * rollout evicted from the worker's cache then replays a short history when a query, signal or
   * its timer wakes it. Opt-in because the next run has no static summary and details in the
   * Temporal UI (the SDK's continue-as-new cannot carry them) and the UI lists each handover as a
   * closed run. Small values exercise it in tests and fault schedules.
   */
  parkHandoverAfterMs?: number;
  /**
   * Set by a release train for its members (src/workflows/train.ts): once promoted, the rollout
   * keeps its saga and waits for the train's release or revert; in lockstep it waits for the train
   * before each traffic stage. Absent in every plain rollout.
   */
  train?: TrainMembership;
  /**
   * The pipeline environment this rollout deploys to (`rollgate promote`): the rollout announces its
   * close to the service's release registry, which records the outcome there.
   */
  environment?: string;
  /**
   * A promotion deploys exactly this artifact (the one the environment before verified): no build.
   * Its digest is checked again before the deploy, as for any artifact.
   */
  pinnedArtifact?: ArtifactRef;
  /**
   * `rollgate rollback --to RELEASE`: no build, deploy or canary analysis; every target is routed to
   * the version that release promoted (read from the registry), after the spec's locks, freeze
   * windows and (`approval`) one approval. A saga puts back what served before if it fails midway.
   */
  rollbackTo?: { release: string; versions: { name: string; version: string }[]; approval: boolean };
}

/**
 * Where the traffic stages were when the run continued as new: the canary (`wave` -1), a region
 * wave (its index) or promote (`wave` = number of waves); the step within the wave, whether that
 * step's traffic shift had been made and whether the wave's approval had been given.
 */
export interface PipelinePosition {
  wave: number;
  step: number;
  shifted: boolean;
  approved: boolean;
}

/** A bake in progress: what is left of it, the analysis window's start and the no-data extensions so far. */
export interface BakeProgress {
  remainingMs: number;
  windowStartMs: number;
  extensions: number;
}

/** Everything the next run needs to go on exactly where this one stopped. */
export interface ContinuedRollout {
  position: PipelinePosition;
  /** The stage and detail shown until the new run moves on. */
  stage: Stage;
  detail: string;
  bake?: BakeProgress;
  artifact: ArtifactRef;
  targets: (TargetStatus & { baselineWindow?: { startMs: number; endMs: number } })[];
  approvals: RolloutStatus['approvals'];
  history: HistoryEntry[];
  lastAnalysis?: Verdict;
  /** An operator pause that was on. */
  paused: boolean;
  migrated: boolean;
  failedStage?: string;
  startedAtMs: number;
  /** Who released the promoted release a revert-mode run reverted (four-eyes). */
  releasedBy?: string;
  /** Dependency locks held, each with the run id that holds it at the lock workflow (and the nonce it was requested with). */
  locks: ({ dependency: string; runId: string } & MessageNonce)[];
  /** How many times this rollout has continued as new. */
  runs: number;
  /** The pipeline's pass (fencing); absent in snapshots taken before fencing: 1. */
  pass?: number;
  /** Who started the rollout, as verified at its start, and whether its worker verifies identities. */
  starter?: Identity;
  verifiesIdentities?: boolean;
  /** Approvals given to the wave waiting now, short of `min_approvals`. */
  pendingApprovals?: { wave: string; approvers: Identity[] };
  /**
   * The run's message nonce (already in its history as an activity result), kept by the next run:
   * a verdict read against one run and sent as it hands over is still authentic to the next one.
   * Absent in snapshots taken before: the next run draws its own.
   */
  messageNonce?: string;
  /** Parity differences recorded under `parity: warn` in preflight. */
  parityWarnings?: string[];
  /**
   * A train member whose train was gone: it alerted `train-gone` and goes on (or waits paused)
   * without the train, so the next run neither waits at barriers nor holds nor alerts again
   * (patch `rollout-train-member-detached-carried`).
   */
  trainDetached?: boolean;
}

/**
 * Who sent a message. `verified`: the worker checked a token (name from ROLLGATE_OIDC_NAME_CLAIM,
 * `subject` its `sub`, `groups` from ROLLGATE_OIDC_GROUPS_CLAIM); otherwise the name given with `--by`.
 */
export interface Identity {
  name: string;
  verified: boolean;
  subject?: string;
  groups?: string[];
}

export type RolloutState = 'running' | 'paused' | 'succeeded' | 'rolled-back' | 'rollback-failed' | 'aborted' | 'failed';

export type Stage =
  | 'pending'
  | 'preflight'
  | 'build'
  | 'test'
  | 'migrate'
  | 'deploy'
  | 'verify'
  | 'canary'
  | `wave:${string}`
  | 'promote'
  | 'rollback'
  | 'done';

export type VerdictKind = 'pass' | 'fail' | 'inconclusive';

export interface Verdict {
  verdict: VerdictKind;
  /** One line naming the metric, the two values and the threshold. */
  reason: string;
  target?: string;
  metric?: string;
  atMs?: number;
  /** For an outside verdict: the release it judged. A rollout ignores a verdict about another release. */
  release?: string;
  /**
   * For an outside verdict: the pass of the rollout it judged (status `pass`). A rollout ignores a
   * verdict about an earlier pass: one read before a rollback and sent after the resume.
   */
  pass?: number;
  /** Observed error rates (0-1), when the judge had them (for metrics). */
  canaryErrorRate?: number;
  baselineErrorRate?: number;
}

/** The run an outside verdict judged, from the status it read: its release and pass (a stale verdict is ignored by both). */
export function judgedRun(status: Pick<RolloutStatus, 'release' | 'pass'>): Pick<Verdict, 'release' | 'pass'> {
  return { release: status.release, ...(status.pass !== undefined ? { pass: status.pass } : {}) };
}

export interface TargetStatus {
  name: string;
  provider: string;
  location: string;
  stableVersion?: string;
  newVersion?: string;
  /** Percent of traffic on the new version. */
  weight: number;
  lastAnalysis?: Verdict;
}

export interface HistoryEntry {
  atMs: number;
  kind: 'stage' | 'decision' | 'approval' | 'verdict' | 'compensation' | 'alert' | 'operator' | 'wait';
  text: string;
}

export interface RolloutStatus {
  id: string;
  service: string;
  release: string;
  state: RolloutState;
  stage: Stage;
  /** What the rollout is doing right now ("baking 30s at 10 %", "frozen until ...", "awaiting approval"). */
  detail: string;
  startedBy: string;
  /** The starter as checked at the start (absent until then, and in rollouts started before verified identities). */
  starter?: Identity;
  artifactDigest?: string;
  targets: TargetStatus[];
  lastAnalysis?: Verdict;
  /** Set while a bake timer runs: when the bake would end if not paused. */
  bakeEndsAtMs?: number;
  awaitingApproval?: string;
  approvals: { wave: string; by: string; decision: 'approved' | 'rejected'; reason?: string; verified?: boolean; subject?: string }[];
  history: HistoryEntry[];
  /** Why the last rollback happened. */
  rollbackReason?: string;
  /**
   * True once the reverts of a rollback are done and the pipeline waits for resume/abort (state
   * paused or rollback-failed); false during a run, an operator's pause included. Absent from
   * rollouts started before v2.
   */
  pausedAfterRollback?: boolean;
  /** The stage in which the last failure, breach or rejection happened (for escalations). */
  failedStage?: string;
  /** Differences from the canary's configuration that `parity: warn` let through (by key; env values as salted hashes). */
  parityWarnings?: string[];
  /** The spec this rollout runs (no secrets: env values never enter a spec). */
  spec: RolloutSpec;
  startedAtMs: number;
  /** A member of a release train: the train's id and name, and whether it is promoted and held by it. */
  train?: { id: string; name: string; held: boolean };
  /** The pipeline environment (promotions and rollbacks to a release only). */
  environment?: string;
  /** Set when this run rolls the environment back to that release (`rollgate rollback --to`). */
  rollbackTo?: string;
  /** The pipeline's pass: 1, then one more for each `resume` that retries the release (absent from rollouts started before it was shown). */
  pass?: number;
}

export interface RolloutResult {
  state: RolloutState;
  reason?: string;
  status: RolloutStatus;
}

export interface ApproveArgs {
  by: string;
  /** Bearer token (OIDC/JWT) proving who approves; required when the worker verifies identities. */
  token?: string;
  comment?: string;
  /** The wave this approval is meant for: refused when the rollout waits for another wave (a late approval). */
  wave?: string;
}
export interface RejectArgs {
  by: string;
  token?: string;
  reason: string;
  wave?: string;
}

export const approveUpdate = defineUpdate<string, [ApproveArgs]>('approve');
export const rejectUpdate = defineUpdate<string, [RejectArgs]>('reject');
export const pauseSignal = defineSignal<[{ by?: string; reason?: string }?]>('pause');
export const resumeSignal = defineSignal<[{ by?: string }?]>('resume');
export const abortSignal = defineSignal<[{ by?: string; reason?: string }?]>('abort');
/** pause/resume/abort as updates: they carry a token, are verified before they take effect, and answer. */
export interface OperatorArgs {
  by?: string;
  reason?: string;
  token?: string;
}
export const pauseUpdate = defineUpdate<string, [OperatorArgs]>('pauseRollout');
export const resumeUpdate = defineUpdate<string, [OperatorArgs]>('resumeRollout');
export const abortUpdate = defineUpdate<string, [OperatorArgs]>('abortRollout');
/**
 * An external analysis (the scheduled one) reports a verdict; a fail triggers the rollback. Runs
 * since patch `rollout-message-nonces` accept it only with their message nonce (see MessageNonce).
 */
export const externalVerdictSignal = defineSignal<[Verdict & MessageNonce]>('externalVerdict');
export const statusQuery = defineQuery<RolloutStatus>('status');

/**
 * Temporal signals carry no verified sender. Internal messages (scheduled verdicts, lock grants and
 * releases) of runs since patch `rollout-message-nonces` carry the run's message nonce: 128 random
 * bits made by an activity (workflow randomness is seeded from the run id, which a sender can learn),
 * known to the run, the lock it queues on and whoever may read their histories or query them. A
 * message without it is refused and recorded. See docs/security-internal-messages.md.
 */
export interface MessageNonce {
  nonce?: string;
}
/** The run's message nonce (undefined for runs before the patch): for rollgate's scheduled analysis, which reads it with its client. */
export const messageNonceQuery = defineQuery<string | undefined>('messageNonce');

/**
 * Shared-dependency lock messages (see dependencyLockWorkflow). A holder is a run: the rollout's
 * workflow id and run id (`runId` is absent only in messages from the first lock version).
 */
export interface LockHolder {
  holder: string;
  runId?: string;
  /**
   * The requesting run's message nonce (since patch `rollgate-lock-nonces`): the grant echoes it
   * and only a release that carries it frees the entry. Never shown by lockState.
   */
  nonce?: string;
}
export const lockAcquireSignal = defineSignal<[LockHolder]>('lockAcquire');
export const lockReleaseSignal = defineSignal<[LockHolder]>('lockRelease');
/**
 * Sent to the exact run that asked; `runId` names it and `nonce` echoes its request. The rollout
 * refuses a grant without its nonce, and confirms the others with the lock's lockState.
 */
export const lockGrantedSignal = defineSignal<[{ dependency: string; runId?: string } & MessageNonce]>('lockGranted');
/** A message the lock workflow refused (a release without the holder's nonce, a malformed message). */
export interface LockRefusal {
  atMs: number;
  message: 'lockAcquire' | 'lockRelease';
  holder?: string;
  runId?: string;
  reason: string;
}
export interface LockState {
  /** Workflow id of the rollout holding the lock, and its run. */
  holder?: string;
  holderRunId?: string;
  /** Workflow ids of the waiting rollouts, in order; `queue` has their runs. */
  waiting: string[];
  queue?: LockHolder[];
  /** The last refused messages, newest last (since patch `rollgate-lock-nonces`). */
  refused?: LockRefusal[];
}
export const lockStateQuery = defineQuery<LockState>('lockState');
/**
 * Asked by the lock workflow (through an activity) before it grants an entry: did this run request
 * `dependency` (with this nonce)? Whoever can signal can queue an entry naming any run; only the run
 * itself answers yes.
 */
export const lockRequestQuery = defineQuery<boolean, [{ dependency: string } & MessageNonce]>('lockRequest');

/** Scheduled canary analysis of a service (Temporal Schedule id and workflow id prefix). */
export function analysisScheduleId(service: string): string {
  return `rollgate-analysis-${service}`;
}

export interface ScheduledAnalysisInput {
  service: string;
  /** Samples since this long ago are analysed (the schedule's interval). */
  lookbackMs: number;
  /** After a promotion, for this long, a fail reverts the promoted release. */
  watchMs: number;
  taskQueue?: string;
}

export interface ScheduledAnalysisResult {
  service: string;
  /** What the analysis looked at: a running rollout, a recent promotion, or nothing. */
  mode: 'during-rollout' | 'after-promotion' | 'report-only' | 'nothing-to-analyse';
  verdict: Verdict;
  action: string;
}

export function dependencyLockWorkflowId(dependency: string): string {
  return `rollgate-lock-${dependency}`;
}

/** Typed search attributes so the Temporal UI list view filters rollouts (`RolloutState = "paused"`). */
export const SA = {
  service: defineSearchAttributeKey('RolloutService', SearchAttributeType.KEYWORD),
  release: defineSearchAttributeKey('RolloutRelease', SearchAttributeType.KEYWORD),
  stage: defineSearchAttributeKey('RolloutStage', SearchAttributeType.KEYWORD),
  state: defineSearchAttributeKey('RolloutState', SearchAttributeType.KEYWORD),
  providers: defineSearchAttributeKey('RolloutProviders', SearchAttributeType.KEYWORD_LIST),
  /** The release train a rollout belongs to, and the train workflow's own name. */
  train: defineSearchAttributeKey('RolloutTrain', SearchAttributeType.KEYWORD),
};

export const SEARCH_ATTRIBUTES: { name: string; type: 'Keyword' | 'KeywordList' }[] = [
  { name: 'RolloutService', type: 'Keyword' },
  { name: 'RolloutRelease', type: 'Keyword' },
  { name: 'RolloutStage', type: 'Keyword' },
  { name: 'RolloutState', type: 'Keyword' },
  { name: 'RolloutProviders', type: 'KeywordList' },
  { name: 'RolloutTrain', type: 'Keyword' },
];
