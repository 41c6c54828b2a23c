/**
 * A release train: one parent workflow (`trainWorkflow`, id `train-NAME`) with a child rollout per
 * service (id `rollout-SERVICE`, so a plain rollout of a member cannot run beside it). Its input,
 * status, and the messages between the parent and its members, defined once for the workflows and
 * every client.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RolloutSpec } from '../spec/schema';
import type { HistoryEntry, Identity, MessageNonce, RolloutState } from './index';

export function trainWorkflowId(train: string): string {
  return `train-${train}`;
}

/** A member of a validated train (src/spec/train.ts): its spec (paths resolved), what it waits for. */
export interface TrainMemberSpec {
  service: string;
  dependsOn: string[];
  spec: RolloutSpec;
}

export interface TrainSpec {
  train: string;
  /** Every member's waves together (all at the canary, then all at wave 1, ...) instead of dependency order. */
  lockstep: boolean;
  /** Where the train's alert goes; without it, the notify of the member that stopped the train. */
  notify?: { webhook_env: string };
  members: TrainMemberSpec[];
}

export interface TrainInput {
  train: TrainSpec;
  startedBy: string;
  /** The starter's token: checked by the train, and given to each member for its own start check. */
  startToken?: string;
  runnerTaskQueue?: string;
  /**
   * How often a held or waiting member checks that this train is still open (default 60 s; tests
   * shorten it). Trains of patch `train-v2` pass it to their members.
   */
  memberParentCheckMs?: number;
}

/**
 * What a member rollout knows of its train (RolloutInput.train). `nonce` authenticates the messages
 * both ways (see docs/security-internal-messages.md): made by the train's local activity, known to
 * the train, its members and whoever may read their histories.
 */
export interface TrainMembership {
  id: string;
  name: string;
  nonce: string;
  lockstep: boolean;
  /**
   * Set by trains of patch `train-v2`: `release` asks the held member to confirm (report
   * `confirmed`), and only `commit` finishes it as succeeded; a held member's own stop is reported
   * to the train (`stop`) instead of acted on, so the train decides for every member at once.
   */
  confirmsRelease?: boolean;
  /** The train's run (patch `train-v2`): a held or waiting member checks it is still open. */
  runId?: string;
  /** How often it checks (ms). */
  parentCheckMs?: number;
  /**
   * Patch `train-v2`: who started the train, as the train checked it at its start (the token is not
   * passed on: it may expire before the last member starts). A member accepts it only when this
   * train is its parent workflow, which only the train itself can be.
   */
  starter?: Identity;
}

/**
 * The member's side of the train. `held`: promoted, its saga kept, waiting for `release` or `revert`;
 * `ready`: (lockstep) at traffic stage `wave` (1 = the canary, 2 = its first region wave, ...),
 * waiting for `go`; `rollback-failed`: its revert failed, it escalated and waits for its operator.
 * Members of `train-v2` trains also send `confirmed` (a `release` asked it and nothing stopped it)
 * and `stop` (held, it breached or was aborted: the train decides, `reason` says why).
 */
export interface TrainReport extends MessageNonce {
  service: string;
  kind: 'held' | 'ready' | 'rollback-failed' | 'confirmed' | 'stop';
  wave?: number;
  reason?: string;
}

/**
 * The train's decision for a member: `go` to traffic stage `wave` (lockstep), `release` (finish as
 * succeeded; for `confirmsRelease` members: confirm, and `commit` finishes), `revert` (run the saga),
 * `freeze` (`train-v2`: the train stops, move no traffic until its `revert`).
 */
export interface TrainDecision extends MessageNonce {
  decision: 'go' | 'release' | 'revert' | 'commit' | 'freeze';
  wave?: number;
  reason?: string;
}

export const trainReportSignal = defineSignal<[TrainReport]>('trainReport');
export const trainDecisionSignal = defineSignal<[TrainDecision]>('trainDecision');

export type TrainMemberState = 'pending' | 'starting' | 'running' | 'held' | 'not-started' | RolloutState;

export interface TrainMemberStatus {
  service: string;
  release: string;
  rolloutId: string;
  dependsOn: string[];
  state: TrainMemberState;
  /** Lockstep: the traffic stage it waits at (1 = canary). */
  readyAt?: number;
  /** Traffic stages of its spec: the canary and each region wave. */
  stages: number;
  reason?: string;
  startedAtMs?: number;
  heldAtMs?: number;
  closedAtMs?: number;
}

export type TrainState = 'running' | 'paused' | 'succeeded' | 'rolled-back' | 'aborted' | 'failed' | 'rollback-failed';

export interface TrainStatus {
  id: string;
  train: string;
  state: TrainState;
  detail: string;
  lockstep: boolean;
  /** Release order (dependencies first); reverts go the other way. */
  order: string[];
  members: TrainMemberStatus[];
  /** Lockstep: the last traffic stage every member was told to go to. */
  wave: number;
  /** The member whose breach or failure stopped the train. */
  stoppedBy?: string;
  reason?: string;
  /** Members reverted by the train, in the order it reverted them (`train-v2`: only those whose revert succeeded). */
  reverted: string[];
  /** Members whose revert failed (they escalated and wait for their operator): their targets may serve the new version. */
  revertFailed?: string[];
  /** 1, then one more per `resume` that retries the train. */
  pass: number;
  /** True once the reverts are done and the train waits for resume/abort. */
  pausedAfterRollback: boolean;
  history: HistoryEntry[];
  startedBy: string;
  startedAtMs: number;
}

export interface TrainResult {
  state: TrainState;
  reason?: string;
  status: TrainStatus;
}

export const trainStatusQuery = defineQuery<TrainStatus>('trainStatus');
