/**
 * The release registry's decisions, pure (no I/O, no Temporal): how a closed rollout changes the
 * records, and why a promotion or a rollback is refused. Shared by the registry workflow, the
 * client (which refuses before anything starts) and the unit tests.
 */
import { formatDuration } from '../spec/duration';
import type { ArtifactRef } from '../providers/types';
import { imageDigest, type RolloutState } from '../contract';
import type { EnvironmentRecord, ReleaseRecord, Veto } from '../contract';

/** What the registry's activity read from Temporal about one closed rollout run. */
export interface ClosedRollout {
  service: string;
  release: string;
  environment: string;
  /** Set when the run was `rollgate rollback --to` this release (nothing was deployed). */
  rollbackTo?: string;
  rolloutId: string;
  runId: string;
  outcome: RolloutState;
  startedAtMs: number;
  closedAtMs: number;
  artifact?: ArtifactRef;
  targets: EnvironmentRecord['targets'];
  verdicts: string[];
  approvals: EnvironmentRecord['approvals'];
  startedBy: string;
  starterVerified?: boolean;
}

/** The records after `run` closed. Idempotent: the same run read twice changes nothing more. */
export function applyClosedRun(releases: ReleaseRecord[], run: ClosedRollout): ReleaseRecord[] {
  const out = releases.map((r) => ({ ...r, environments: [...r.environments] }));
  if (run.rollbackTo !== undefined) {
    const r = out.find((x) => x.release === run.rollbackTo);
    const i = r ? r.environments.findIndex((e) => e.environment === run.environment) : -1;
    if (r && i >= 0 && run.outcome === 'succeeded') r.environments[i] = { ...r.environments[i], restoredAtMs: run.closedAtMs };
    return out;
  }
  let r = out.find((x) => x.release === run.release);
  if (!r) {
    if (!run.artifact) return out; // closed before the build: nothing to record against a digest
    r = { release: run.release, artifact: run.artifact, environments: [] };
    out.push(r);
  }
  const i = r.environments.findIndex((e) => e.environment === run.environment);
  const before = i >= 0 ? r.environments[i] : undefined;
  if (before?.runId === run.runId) return out;
  const promoted = run.outcome === 'succeeded';
  // A run that reverts a promoted release (post-promotion analysis) keeps the promoted versions.
  const revertOfPromoted = before?.promotedAtMs !== undefined && run.outcome === 'rolled-back';
  const record: EnvironmentRecord = {
    environment: run.environment,
    rolloutId: run.rolloutId,
    runId: run.runId,
    outcome: run.outcome,
    startedAtMs: run.startedAtMs,
    closedAtMs: run.closedAtMs,
    ...(promoted ? { promotedAtMs: run.closedAtMs } : revertOfPromoted ? { promotedAtMs: before.promotedAtMs } : {}),
    ...(run.outcome === 'rolled-back' ? { rolledBackAtMs: run.closedAtMs } : {}),
    targets: revertOfPromoted ? before.targets : run.targets,
    verdicts: run.verdicts,
    approvals: run.approvals,
    startedBy: run.startedBy,
    ...(run.starterVerified !== undefined ? { starterVerified: run.starterVerified } : {}),
  };
  if (i >= 0) r.environments[i] = record;
  else r.environments.push(record);
  if (run.artifact && !r.artifact.location && run.artifact.location) r.artifact = run.artifact;
  return out;
}

/** The digests a record's artifact deploys: the zip's, and the image's when there is one. */
export function digestsOf(a: ArtifactRef): string[] {
  const image = imageDigest(a.image);
  return [...new Set([a.digest, ...(image ? [image] : [])])];
}

/** The vetoed release that deployed any of `digests`, or undefined. */
export function vetoOf(releases: ReleaseRecord[], digests: string[]): { release: string; veto: Veto } | undefined {
  for (const r of releases)
    if (r.veto && digestsOf(r.artifact).some((d) => digests.includes(d))) return { release: r.release, veto: r.veto };
  return undefined;
}

export interface EnvironmentGates {
  name: string;
  /** Required soak time in the environment before this one (ms). */
  soakMs?: number;
}

/** Why release `release` may not be promoted to `to` (the environments in pipeline order), or undefined. */
export function promotionRefusal(
  releases: ReleaseRecord[],
  release: string,
  envs: EnvironmentGates[],
  to: string,
  nowMs: number,
): string | undefined {
  const at = envs.findIndex((e) => e.name === to);
  if (at < 0) return `the pipeline has no environment "${to}" (it has ${envs.map((e) => e.name).join(', ')})`;
  const record = releases.find((r) => r.release === release);
  const vetoed = record ? vetoOf(releases, digestsOf(record.artifact)) : undefined;
  if (vetoed) return vetoText(vetoed.release, vetoed.veto, release);
  if (at === 0) return undefined; // the first environment builds the release
  const prev = envs[at - 1].name;
  const before = record?.environments.find((e) => e.environment === prev);
  if (!record || !before) return `release ${release} has not run in ${prev}, the environment before ${to}`;
  if (before.rolledBackAtMs !== undefined)
    return `release ${release} was rolled back in ${prev} at ${new Date(before.rolledBackAtMs).toISOString()}`;
  if (before.outcome !== 'succeeded' || before.promotedAtMs === undefined)
    return `release ${release} did not succeed in ${prev} (its last rollout there ${outcomeText(before.outcome)})`;
  const need = envs[at].soakMs ?? 0;
  const soaked = Math.max(0, nowMs - before.promotedAtMs);
  if (soaked < need)
    return `release ${release} has soaked ${formatDuration(soaked)} in ${prev}; ${to} requires ${formatDuration(need)}: ${formatDuration(need - soaked)} left`;
  return undefined;
}

/** Why the environment cannot be rolled back to `release`, or the versions to put each target on. */
export function rollbackPlan(
  releases: ReleaseRecord[],
  release: string,
  environment: string,
): { refusal: string } | { versions: { name: string; version: string }[]; record: EnvironmentRecord } {
  const record = releases.find((r) => r.release === release);
  const env = record?.environments.find((e) => e.environment === environment);
  if (!record || !env) return { refusal: `release ${release} never ran in ${environment}` };
  if (env.promotedAtMs === undefined)
    return { refusal: `release ${release} never promoted in ${environment} (${outcomeText(env.outcome)})` };
  const vetoed = vetoOf(releases, digestsOf(record.artifact));
  if (vetoed) return { refusal: vetoText(vetoed.release, vetoed.veto, release) };
  const missing = env.targets.filter((t) => t.version === undefined).map((t) => t.name);
  if (missing.length) return { refusal: `release ${release} recorded no promoted version for ${missing.join(', ')} in ${environment}` };
  return { versions: env.targets.map((t) => ({ name: t.name, version: t.version! })), record: env };
}

function vetoText(vetoedRelease: string, veto: Veto, release: string): string {
  const same =
    vetoedRelease === release
      ? `release ${release} is vetoed`
      : `release ${release} deploys the artifact of vetoed release ${vetoedRelease}`;
  return `${same} (by ${veto.by}${veto.verified ? '' : ' (unverified)'} at ${new Date(veto.atMs).toISOString()}: ${veto.reason})`;
}

function outcomeText(outcome: RolloutState): string {
  return outcome === 'succeeded' ? 'succeeded' : `ended ${outcome}`;
}
