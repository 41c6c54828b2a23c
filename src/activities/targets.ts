/** Thin activities over the TargetProvider interface; the provider does the idempotency checks. */
import { join } from 'node:path';
import type { ProbeSpec, TargetSpec } from '../spec/schema';
import {
  type ArtifactRef,
  type ProbeResult,
  type ReleaseContract,
  type TargetProvider,
  type TrafficFence,
  type TrafficState,
} from '../providers/types';
import { stopIfCancelled } from '../providers/cancellation';
import { compareFingerprints, type DriftReport } from '../providers/fingerprint';
import { parityPairs, parityReport, type ParityConfig, type ParityReport } from '../providers/parity';
import { providerFor, type ActivityDeps } from './deps';
import { mapProviderErrors, readWithHeartbeat, withHeartbeat } from './heartbeat';
import { FileArtifactStore, localArtifactCopy, parseS3Location } from '../artifacts/store';
import { RELEASE_CONTRACT_KEYS } from '../contract';

/**
 * What the provider deploys. A Lambda zip in an S3 store in the target's own region: the location
 * alone (UpdateFunctionCode with S3Bucket/S3Key; Lambda reads it). Otherwise a verified local copy:
 * the ref's own path when this machine has it (refs recorded before the store), else fetched from
 * the ref's location or this worker's store by digest into <stateDir>/artifact-cache.
 */
export async function deployableArtifact(deps: ActivityDeps, target: TargetSpec, ref: ArtifactRef): Promise<ArtifactRef> {
  if (target.provider !== 'aws-lambda' || (!ref.path && !ref.location)) return ref;
  const s3 = ref.location ? parseS3Location(ref.location) : undefined;
  if (s3 && (ref.locationRegion ?? 'us-east-1') === target.region)
    return { digest: ref.digest, location: ref.location, locationRegion: ref.locationRegion, ...(ref.image ? { image: ref.image } : {}) };
  const path = await localArtifactCopy(ref, {
    store: deps.artifactStore ?? new FileArtifactStore(join(deps.stateDir, 'artifacts')),
    cacheDir: join(deps.stateDir, 'artifact-cache'),
  });
  return { digest: ref.digest, path, ...(ref.image ? { image: ref.image } : {}) };
}

export interface VerifyReport {
  ok: boolean;
  probes: ProbeResult[];
  contractProblems: string[];
  drift: DriftReport;
  /** One line for status/alerts. */
  summary: string;
}

export interface ParityCheck {
  /** One per target that differs from its canary target (targets that match are not listed): names of fields, one message. */
  reports: (Pick<ParityReport, 'target' | 'canary' | 'message'> & { fields: string[] })[];
  /** How many targets were compared with a canary target. */
  compared: number;
  /** Targets of a provider no canary target has: nothing to compare them with. */
  unchecked: string[];
}

export function targetActivities(deps: ActivityDeps) {
  return {
    async readTraffic(input: { target: TargetSpec }): Promise<TrafficState> {
      return readWithHeartbeat(() => mapProviderErrors(() => providerFor(deps, input.target).readTraffic(input.target)));
    },

    /** Deploys from the shared artifact store, so any worker can deploy any release (see deployableArtifact). */
    async deployRevision(input: {
      target: TargetSpec;
      artifact: ArtifactRef;
      contract: ReleaseContract;
      rolloutId: string;
      fence?: TrafficFence;
    }) {
      return withHeartbeat(() =>
        mapProviderErrors(async () => {
          const artifact = await deployableArtifact(deps, input.target, input.artifact);
          return providerFor(deps, input.target).deployRevision(input.target, artifact, input.contract, input.rolloutId, input.fence);
        }),
      );
    },

    /** Probes, the deployment contract and env/secret drift, all against the new revision itself. */
    async verifyRevision(input: {
      target: TargetSpec;
      stableVersion: string;
      newVersion: string;
      probes: ProbeSpec[];
      contract: ReleaseContract;
    }): Promise<VerifyReport> {
      return withHeartbeat(() =>
        mapProviderErrors(async () => {
          const p = providerFor(deps, input.target);
          const probes: ProbeResult[] = [];
          for (const probe of input.probes) probes.push(await probeWithRetries(p, input.target, input.newVersion, probe));
          const [stable, next] = await Promise.all([
            p.fingerprint(input.target, input.stableVersion, deps.hashKey),
            p.fingerprint(input.target, input.newVersion, deps.hashKey),
          ]);
          const contractProblems: string[] = [];
          for (const key of RELEASE_CONTRACT_KEYS) {
            const want = input.contract[key];
            const got = next.contract[key];
            if (want !== undefined && got !== want)
              contractProblems.push(`${key} is ${got === undefined ? 'missing' : `"${got}"`}, spec says "${want}"`);
          }
          const drift = compareFingerprints(stable, next);
          const failedProbes = probes.filter((r) => !r.ok);
          const ok = failedProbes.length === 0 && contractProblems.length === 0 && drift.missing.length === 0;
          const parts: string[] = [];
          if (failedProbes.length) parts.push(`probe ${failedProbes.map((f) => `${f.probe}: ${f.detail}`).join(', ')}`);
          if (contractProblems.length) parts.push(`contract: ${contractProblems.join('; ')}`);
          if (drift.missing.length) parts.push(`env keys missing vs stable ${input.stableVersion}: ${drift.missing.join(', ')}`);
          if (drift.changed.length)
            parts.push(`env values changed (by hash): ${drift.changed.map((c) => `${c.key} ${c.stable}->${c.next}`).join(', ')}`);
          if (ok) parts.unshift(`${probes.length} probe(s) ok, contract ok, no missing env keys`);
          return { ok, probes, contractProblems, drift, summary: `${input.target.name}: ${parts.join('; ')}` };
        }),
      );
    },

    /**
     * Canary/production parity, read-only: each target's stable `version` (as preflight read it)
     * compared with the first canary target of its provider. Every configuration is read and hashed
     * in this one call, so all env hashes share one key (ROLLGATE_HASH_KEY may be per process).
     */
    async checkParity(input: { targets: { target: TargetSpec; version: string }[]; canary: string[] }): Promise<ParityCheck> {
      return readWithHeartbeat(() => checkParityNow(deps, input));
    },

    /** A forward step; refused (Fenced) once a revert of the same pass marked the target. */
    async setTraffic(input: { target: TargetSpec; stableVersion: string; newVersion: string; percent: number; fence?: TrafficFence }) {
      return withHeartbeat(() =>
        mapProviderErrors(() =>
          providerFor(deps, input.target).setTraffic(input.target, input.stableVersion, input.newVersion, input.percent, {
            fence: input.fence,
          }),
        ),
      );
    },

    /** Promote (version = new) or revert (version = stable, `revert`: leaves the fence's mark): 100 % on one version. */
    async routeAll(input: { target: TargetSpec; version: string; dropTag?: boolean; fence?: TrafficFence; revert?: boolean }) {
      return withHeartbeat(() =>
        mapProviderErrors(() =>
          providerFor(deps, input.target).routeAll(input.target, input.version, {
            dropTag: input.dropTag,
            fence: input.fence,
            revert: input.revert,
          }),
        ),
      );
    },

    /**
     * After a revert to `version`: put the function's $LATEST back on that version's code and
     * environment (Lambda). A provider without such a head (Cloud Run) has nothing to do.
     */
    async restoreLatest(input: { target: TargetSpec; version: string }): Promise<{ changed: boolean }> {
      return withHeartbeat(() =>
        mapProviderErrors(async () => {
          const p = providerFor(deps, input.target);
          if (!p.restoreLatest) return { changed: false };
          return p.restoreLatest(input.target, input.version);
        }),
      );
    },

    /** A tag write after the promotion: heartbeats (it has a heartbeat timeout), a call sent is let finish. */
    async recordRelease(input: { target: TargetSpec; version: string; release: string; digest: string }) {
      return withHeartbeat(() =>
        mapProviderErrors(() => providerFor(deps, input.target).recordRelease(input.target, input.version, input.release, input.digest)),
      );
    },
  };
}

/** checkParity's work (see there): every configuration read and hashed in one call. */
async function checkParityNow(
  deps: ActivityDeps,
  input: { targets: { target: TargetSpec; version: string }[]; canary: string[] },
): Promise<ParityCheck> {
  return mapProviderErrors(async () => {
    const versions = new Map(input.targets.map((t) => [t.target.name, t.version]));
    const { pairs, unchecked } = parityPairs(
      input.targets.map((t) => t.target),
      input.canary,
    );
    const needed = new Map<string, TargetSpec>();
    for (const p of pairs) needed.set(p.target.name, p.target).set(p.canary.name, p.canary);
    const configs = new Map<string, ParityConfig>();
    await Promise.all(
      [...needed.values()].map(async (t) =>
        configs.set(t.name, await providerFor(deps, t).readParityConfig(t, versions.get(t.name)!, deps.hashKey)),
      ),
    );
    const reports = pairs
      .map((p) => parityReport(p.target.name, p.canary.name, configs.get(p.canary.name)!, configs.get(p.target.name)!))
      .filter((r) => r.differences.length > 0)
      .map((r) => ({ target: r.target, canary: r.canary, fields: r.differences.map((d) => d.field), message: r.message }));
    return { reports, compared: pairs.length, unchecked };
  });
}

export { mapProviderErrors } from './heartbeat';

/**
 * A probe that gets no answer (a timeout, a refused connection: the network or an overloaded
 * endpoint, not the release) is tried again, up to `attempts` (default 3, a second apart); an
 * answer that is wrong (function error, HTTP status, missing text) fails verify at once.
 */
export async function probeWithRetries(
  p: Pick<TargetProvider<any>, 'probe'>,
  target: TargetSpec,
  version: string,
  probe: ProbeSpec,
  pauseMs = 1000,
): Promise<ProbeResult> {
  const attempts = probe.attempts ?? 3; // specs validated before the field existed
  let result = await p.probe(target, version, probe);
  for (let tried = 1; tried < attempts && !result.ok && result.unreachable; tried++) {
    stopIfCancelled(`probe ${probe.name} attempt ${tried + 1}`);
    await new Promise((r) => setTimeout(r, pauseMs));
    result = await p.probe(target, version, probe);
  }
  if (!result.ok && result.unreachable && attempts > 1) result = { ...result, detail: `${result.detail} (no answer in ${attempts} tries)` };
  return result;
}
