/**
 * The release registry's messages and record shapes (see releaseRegistryWorkflow): what a client
 * or a rollout sends it and what it answers. Defined once, imported by the workflow, the
 * activities and every client.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ArtifactRef } from '../providers/types';
import type { RolloutState } from './index';

/** One registry per service: its records outlive Temporal's visibility retention of closed rollouts. */
export function releaseRegistryWorkflowId(service: string): string {
  return `rollgate-releases-${service}`;
}

/** What happened to a release in one environment: the latest closed rollout of it there. */
export interface EnvironmentRecord {
  environment: string;
  /** The rollout run the registry read this from (never a sender's claim). */
  rolloutId: string;
  runId: string;
  outcome: RolloutState;
  startedAtMs: number;
  closedAtMs: number;
  /** When it was promoted on every target (the close of the succeeded run): the soak clock starts here. */
  promotedAtMs?: number;
  /** Set when a later run (a post-promotion revert) or the outcome itself rolled it back. */
  rolledBackAtMs?: number;
  /** Set when `rollgate rollback --to` last put the environment back on this release. */
  restoredAtMs?: number;
  /** Per target: the version/revision this release promoted (recorded at promotion), and what served before. */
  targets: { name: string; provider: string; version?: string; previous?: string }[];
  /** One line per analysis verdict and verify report the rollout recorded. */
  verdicts: string[];
  approvals: { wave: string; by: string; decision: 'approved' | 'rejected'; verified?: boolean }[];
  startedBy: string;
  starterVerified?: boolean;
  /**
   * The artifact this run deployed here (zip sha256, image by digest): a promotion pins the one
   * that succeeded in the environment before. Absent on records made before it was kept per
   * environment (then the release's `artifact` is the one).
   */
  artifact?: ArtifactRef;
}

export interface Veto {
  by: string;
  verified: boolean;
  subject?: string;
  reason: string;
  atMs: number;
}

export interface ReleaseRecord {
  release: string;
  /**
   * The artifact of the release's first recorded run. A re-run may have built another one: what
   * each environment deployed is `environments[].artifact`, and a veto covers all of them.
   */
  artifact: ArtifactRef;
  /** Environments in the order the release reached them. */
  environments: EnvironmentRecord[];
  veto?: Veto;
}

/** A message the registry did not record, and why (a forgery, a run still open, a malformed signal). */
export interface RegistryRefusal {
  atMs: number;
  message: string;
  reason: string;
}

/**
 * The service's pipeline as the registry knows it (declared by the client before each promotion
 * or rollback to a release): environments in order, each with its targets' identities
 * (`targetIdentity`). A closed run counts as evidence of an environment only when its targets are
 * that environment's, whatever environment the run names.
 */
export interface DeclaredPipeline {
  environments: { name: string; targets: string[] }[];
}

export interface RegistryState {
  service: string;
  /** Oldest first. */
  releases: ReleaseRecord[];
  refused: RegistryRefusal[];
  /** Absent until a client declared the pipeline (and on registries from before). */
  pipeline?: DeclaredPipeline;
}

/** "Rollout W, run R closed": the registry reads that run's real result from Temporal; nothing else in the message is trusted. */
export interface RolloutClosed {
  workflowId: string;
  runId: string;
}
export const rolloutClosedSignal = defineSignal<[RolloutClosed]>('rolloutClosed');
/** The pipeline's environments and their targets (`rollgate promote` / `rollback` send it before they start anything). */
export const pipelineDeclaredSignal = defineSignal<[DeclaredPipeline]>('pipelineDeclared');

export interface VetoArgs {
  release: string;
  by: string;
  /** Bearer token, verified by the worker's verifier when it has one (required then). */
  token?: string;
  reason: string;
}
/** Marks a release bad: no later rollout of the service deploys its digest. Answers the recorded veto. */
export const vetoUpdate = defineUpdate<Veto, [VetoArgs]>('vetoRelease');
export const registryStateQuery = defineQuery<RegistryState>('registryState');
/** The release whose vetoed artifact has one of these digests, or undefined. */
export const vetoedDigestQuery = defineQuery<{ release: string; veto: Veto } | undefined, [string[]]>('vetoedDigest');
/** What a rollout asks the registry before every deploy pass and before a rollback to a release routes. */
export interface ReleaseGateArgs {
  /** The release deployed (or, for a rollback to a release, gone back to). */
  release: string;
  /** The digests it deploys (zip sha256, image digest). */
  digests: string[];
  /** The pipeline environment of the rollout. */
  environment?: string;
  /** A promotion: its pinned digests must be what the environment before verified for the release. */
  pinned?: boolean;
  /** Set for a rollback to a release: refused when that release itself is vetoed. */
  byRelease?: boolean;
}
export interface ReleaseGate {
  veto?: { release: string; veto: Veto };
  /** Why the pin is not the artifact the environment before verified. */
  pinRefusal?: string;
}
export const releaseGateQuery = defineQuery<ReleaseGate, [ReleaseGateArgs]>('releaseGate');
/** Answered once every rolloutClosed received so far has been read (so a CLI sees its own run recorded). */
export const registrySettledQuery = defineQuery<boolean>('registrySettled');
