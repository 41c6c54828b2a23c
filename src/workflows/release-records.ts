/**
 * The release registry's decisions, pure (no I/O, no Temporal): how a closed rollout changes the
 * records, and why a promotion or a rollback is refused. Shared by the registry workflow, the
 * client (which refuses before anything starts) and the unit tests.
 */
import { formatDuration } from '../spec/duration';
import type { ArtifactRef } from '../providers/types';
import type { TargetSpec } from '../spec/schema';
import { imageDigest, type RolloutState } from '../contract';
import type { DeclaredPipeline, EnvironmentRecord, ReleaseGate, ReleaseGateArgs, ReleaseRecord, Veto } from '../contract';

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
  /** The run's targets as `targetIdentity` (what the cloud resources are, whatever they are named). Absent in reads from before. */
  targetIdentities?: string[];
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
    // What this run deployed here (a revert of the promoted release deployed nothing new).
    ...(revertOfPromoted && before.artifact ? { artifact: before.artifact } : run.artifact ? { artifact: run.artifact } : {}),
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

/** Every digest the release deployed anywhere: its first run's and each environment's (a re-run may have rebuilt it). */
export function releaseDigests(r: ReleaseRecord): string[] {
  return [...new Set([r.artifact, ...r.environments.map((e) => e.artifact)].flatMap((a) => (a ? digestsOf(a) : [])))];
}

/** The artifact the release deployed in `environment` (records from before per-environment artifacts: the release's). */
export function environmentArtifact(r: ReleaseRecord, e: EnvironmentRecord): ArtifactRef {
  return e.artifact ?? r.artifact;
}

/** The vetoed release that deployed any of `digests`, or undefined. */
export function vetoOf(releases: ReleaseRecord[], digests: string[]): { release: string; veto: Veto } | undefined {
  for (const r of releases) if (r.veto && releaseDigests(r).some((d) => digests.includes(d))) return { release: r.release, veto: r.veto };
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
  const vetoed = record ? vetoOf(releases, releaseDigests(record)) : undefined;
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

/**
 * The artifact a promotion of `release` to `to` deploys: the one that succeeded in the environment
 * before (not the release's first build: a re-run there may have built another). Undefined for the
 * first environment (it builds) and when the environment before has no succeeded run of it.
 */
export function promotionPin(releases: ReleaseRecord[], release: string, envs: { name: string }[], to: string): ArtifactRef | undefined {
  const at = envs.findIndex((e) => e.name === to);
  if (at <= 0) return undefined;
  const record = releases.find((r) => r.release === release);
  const before = record?.environments.find((e) => e.environment === envs[at - 1].name);
  if (!record || !before || before.outcome !== 'succeeded' || before.promotedAtMs === undefined) return undefined;
  return environmentArtifact(record, before);
}

/** Why the environment cannot be rolled back to `release`, or the versions to put each target on. */
export function rollbackPlan(
  releases: ReleaseRecord[],
  release: string,
  environment: string,
): { refusal: string } | { versions: { name: string; version: string }[]; record: EnvironmentRecord; artifact: ArtifactRef } {
  const record = releases.find((r) => r.release === release);
  const env = record?.environments.find((e) => e.environment === environment);
  if (!record || !env) return { refusal: `release ${release} never ran in ${environment}` };
  if (env.promotedAtMs === undefined)
    return { refusal: `release ${release} never promoted in ${environment} (${outcomeText(env.outcome)})` };
  const vetoed = vetoOf(releases, releaseDigests(record));
  if (vetoed) return { refusal: vetoText(vetoed.release, vetoed.veto, release) };
  const missing = env.targets.filter((t) => t.version === undefined).map((t) => t.name);
  if (missing.length) return { refusal: `release ${release} recorded no promoted version for ${missing.join(', ')} in ${environment}` };
  return {
    versions: env.targets.map((t) => ({ name: t.name, version: t.version! })),
    record: env,
    artifact: environmentArtifact(record, env),
  };
}

/** What a target is in its cloud, whatever the spec names it: the registry compares runs by this. */
export function targetIdentity(t: TargetSpec): string {
  return t.provider === 'aws-lambda'
    ? `aws-lambda:${t.region}:${t.function}:${t.alias}`
    : `cloud-run:${t.project}:${t.region}:${t.service}`;
}

/**
 * Why a closed run is no evidence of the environment it names, or undefined: its targets must be
 * exactly that environment's in the declared pipeline (a run naming `prod` over staging's targets
 * proves nothing about prod). No declared pipeline: nothing to compare with, so refused too.
 */
export function environmentRefusal(pipeline: DeclaredPipeline | undefined, run: ClosedRollout): string | undefined {
  if (!pipeline) return `no pipeline declared to the registry: cannot tell whether the run's targets are ${run.environment}'s`;
  const env = pipeline.environments.find((e) => e.name === run.environment);
  if (!env)
    return `the run names environment ${run.environment}, which the pipeline does not have (it has ${pipeline.environments.map((e) => e.name).join(', ')})`;
  if (!run.targetIdentities) return 'the run was read without its targets';
  if (sameSet(run.targetIdentities, env.targets)) return undefined;
  const owner = pipeline.environments.find((e) => e.name !== env.name && sameSet(run.targetIdentities!, e.targets));
  const theirs = owner ? `${owner.name}'s` : `not ${env.name}'s (${env.targets.join(', ')})`;
  return `the run names environment ${run.environment}, but its targets (${run.targetIdentities.join(', ')}) are ${theirs}`;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x)) && b.every((x) => a.includes(x));
}

/**
 * The registry's answer to a rollout about to deploy (or to route back): a veto on any of the
 * digests (or, `byRelease`, on the release itself), and for a promotion whether its pinned digests
 * are what the environment before verified for the release.
 */
export function releaseGate(releases: ReleaseRecord[], pipeline: DeclaredPipeline | undefined, a: ReleaseGateArgs): ReleaseGate {
  const named = a.byRelease ? releases.find((r) => r.release === a.release && r.veto) : undefined;
  const veto = named?.veto ? { release: named.release, veto: named.veto } : vetoOf(releases, a.digests);
  const pinRefusal = a.pinned ? pinRefusalOf(releases, pipeline, a) : undefined;
  return { ...(veto ? { veto } : {}), ...(pinRefusal ? { pinRefusal } : {}) };
}

function pinRefusalOf(releases: ReleaseRecord[], pipeline: DeclaredPipeline | undefined, a: ReleaseGateArgs): string | undefined {
  if (!pipeline) return 'no pipeline declared to the release registry: the pin cannot be checked';
  const at = pipeline.environments.findIndex((e) => e.name === a.environment);
  if (at < 0) return `environment ${a.environment ?? '(none)'} is not in the pipeline declared to the release registry`;
  if (at === 0) return `environment ${a.environment} is the pipeline's first: it builds the release, nothing is pinned`;
  const prev = pipeline.environments[at - 1].name;
  const pin = promotionPin(releases, a.release, pipeline.environments, a.environment!);
  if (!pin) return `release ${a.release} has no succeeded run in ${prev}, the environment before ${a.environment}`;
  const verified = digestsOf(pin);
  const other = a.digests.filter((d) => !verified.includes(d));
  if (other.length)
    return `pinnedArtifact: ${other.join(', ')} is not what release ${a.release} verified in ${prev} (${verified.join(', ')})`;
  return undefined;
}

/**
 * A promotion's artifact against its pin and the spec it runs (pure, in the workflow): the ref it
 * deploys must be the pin, and the spec's `artifact.sha256` / `artifact.image`, when given, the
 * pin's. Names the field that differs.
 */
export function pinMismatch(
  pin: ArtifactRef,
  deployed: ArtifactRef | undefined,
  specArtifact: { sha256?: string; image?: string },
): string | undefined {
  if (!deployed) return 'pinnedArtifact: no artifact to deploy';
  if (deployed.digest !== pin.digest) return `artifact digest ${deployed.digest} differs from pinnedArtifact.digest ${pin.digest}`;
  if (imageDigest(deployed.image) !== imageDigest(pin.image))
    return `artifact image ${deployed.image ?? '(none)'} differs from pinnedArtifact.image ${pin.image ?? '(none)'}`;
  if (specArtifact.sha256 !== undefined && specArtifact.sha256 !== pin.digest)
    return `artifact.sha256 ${specArtifact.sha256} differs from pinnedArtifact.digest ${pin.digest}`;
  if (specArtifact.image !== undefined && imageDigest(specArtifact.image) !== imageDigest(pin.image))
    return `artifact.image ${specArtifact.image} differs from pinnedArtifact.image ${pin.image ?? '(none)'}`;
  return undefined;
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
