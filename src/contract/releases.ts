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
  /** The artifact the release deployed: the zip's sha256 (Lambda) or the image digest. */
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

export interface RegistryState {
  service: string;
  /** Oldest first. */
  releases: ReleaseRecord[];
  refused: RegistryRefusal[];
}

/** "Rollout W, run R closed": the registry reads that run's real result from Temporal; nothing else in the message is trusted. */
export interface RolloutClosed {
  workflowId: string;
  runId: string;
}
export const rolloutClosedSignal = defineSignal<[RolloutClosed]>('rolloutClosed');

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
/** Answered once every rolloutClosed received so far has been read (so a CLI sees its own run recorded). */
export const registrySettledQuery = defineQuery<boolean>('registrySettled');
