/**
 * One small interface per traffic router (Argo Rollouts / Flagger style). Adding a cloud means one
 * file implementing TargetProvider plus its emulator test. All methods must be idempotent: they are
 * called from Temporal activities that may be retried or replayed after a crash.
 */
import type { ProbeSpec, TargetSpec } from '../spec/schema';
import type { ParityConfig } from './parity';

import type { ReleaseContract } from '../contract/release';

export type { ReleaseContract };

export interface ArtifactRef {
  /** sha256 hex of the zip (Lambda) or the image digest (Cloud Run). */
  digest: string;
  /**
   * Local path of a content-addressed copy of the zip on the machine that stored it. Refs recorded
   * before the shared artifact store have only this; a worker that lacks the file fetches the
   * digest from its store instead. A file:// store still sets it (same machine).
   */
  path?: string;
  /** Where the shared artifact store keeps the zip: `s3://bucket/key` or `file:///dir/<sha256>.zip`. */
  location?: string;
  /** Region of the S3 bucket of `location` (Lambda reads code straight from S3 in its own region only). */
  locationRegion?: string;
  /** Image reference pinned by digest, for container targets. */
  image?: string;
}

export interface TrafficState {
  /** The version/revision that serves the main share. */
  stableVersion: string;
  /** The other version with a share, if any. */
  newVersion?: string;
  /** Percent (0-100) on newVersion. */
  newWeight: number;
}

export interface DeployResult {
  newVersion: string;
  /** False when an earlier attempt had already created it (idempotent retry). */
  created: boolean;
}

/** Environment of a revision, reduced to what may enter workflow history: key names and salted hashes. */
export interface EnvFingerprint {
  /** key -> short salted hash of the value (never the value). */
  values: Record<string, string>;
  /** Secret references (name:version), which are not secret themselves. */
  secretRefs: Record<string, string>;
  /** The contract keys in clear, since they are ours and not secret. */
  contract: Partial<ReleaseContract>;
}

export interface ProbeResult {
  probe: string;
  ok: boolean;
  detail: string;
  latencyMs: number;
  /** No answer at all (timeout, connection refused): tried again up to `probes[].attempts`. A wrong answer is final. */
  unreachable?: boolean;
}

/** Which rollout and pass a traffic write belongs to (fencing, src/providers/fence.ts). */
export interface TrafficFence {
  /** The first run id of the rollout's chain of runs (stable across continue-as-new). */
  chain: string;
  /** 1 for the first pass of the pipeline, +1 for each resume that retries it. */
  pass: number;
}

export interface TargetProvider<T extends TargetSpec = TargetSpec> {
  readonly kind: T['provider'];
  /** Current traffic split of the target's routing (Lambda alias, Cloud Run service traffic). */
  readTraffic(target: T): Promise<TrafficState>;
  /** Create (or find, if an earlier attempt made it) the new revision with 0 % traffic. */
  deployRevision(
    target: T,
    artifact: ArtifactRef,
    contract: ReleaseContract,
    rolloutId: string,
    fence?: TrafficFence,
  ): Promise<DeployResult>;
  /** Key names and salted hashes of a revision's environment. */
  fingerprint(target: T, version: string, salt: string): Promise<EnvFingerprint>;
  /**
   * The configuration of `version` that parity compares with the canary's (src/providers/parity.ts):
   * sizing, runtime, scaling, env values as salted hashes, secret references by name. Read-only.
   */
  readParityConfig(target: T, version: string, salt: string): Promise<ParityConfig>;
  /** Send `percent` of traffic to newVersion, the rest to stableVersion. No-op if already so. */
  setTraffic(
    target: T,
    stableVersion: string,
    newVersion: string,
    percent: number,
    opts?: { fence?: TrafficFence },
  ): Promise<{ changed: boolean }>;
  /**
   * 100 % on `version`, nothing else routed (promote or revert). No-op if already so. A revert
   * (`revert: true`) leaves the fence's mark on the target; a forward write refuses to pass it
   * (src/providers/fence.ts).
   */
  routeAll(target: T, version: string, opts?: { dropTag?: boolean; fence?: TrafficFence; revert?: boolean }): Promise<{ changed: boolean }>;
  /** Health probe against the new revision itself. */
  probe(target: T, version: string, probe: ProbeSpec): Promise<ProbeResult>;
  /** Record the promoted release on the target (tags/labels). */
  recordRelease(target: T, version: string, release: string, digest: string): Promise<void>;
  /**
   * Put the function's unqualified head (Lambda $LATEST) back on what `version` runs: code and the
   * configuration deployRevision changes. After a rollback, so that the unqualified function and the
   * next deploy's baseline no longer see the rolled-back release. No-op if already so. Only
   * providers with such a head implement it (Cloud Run serves revisions only).
   */
  restoreLatest?(target: T, version: string): Promise<{ changed: boolean }>;
  /** A URL that reaches exactly this revision (Cloud Run tag URL), for probes and synthetic traffic. */
  revisionUrl?(target: T, version: string): Promise<string>;
}

/** A provider error that must not be retried (bad input, missing resource, permission). */
export class NonRetryableProviderError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'NonRetryableProviderError';
  }
}
