/** Thin activities over the TargetProvider interface; the provider does the idempotency checks. */
import type { ProbeSpec, TargetSpec } from '../spec/schema';
import { type ArtifactRef, type ProbeResult, type ReleaseContract, type TrafficState } from '../providers/types';
import { compareFingerprints, type DriftReport } from '../providers/fingerprint';
import { providerFor, type ActivityDeps } from './deps';
import { mapProviderErrors, withHeartbeat } from './heartbeat';

export interface VerifyReport {
  ok: boolean;
  probes: ProbeResult[];
  contractProblems: string[];
  drift: DriftReport;
  /** One line for status/alerts. */
  summary: string;
}

export function targetActivities(deps: ActivityDeps) {
  return {
    async readTraffic(input: { target: TargetSpec }): Promise<TrafficState> {
      return mapProviderErrors(() => providerFor(deps, input.target).readTraffic(input.target));
    },

    async deployRevision(input: { target: TargetSpec; artifact: ArtifactRef; contract: ReleaseContract; rolloutId: string }) {
      return withHeartbeat(() =>
        mapProviderErrors(() =>
          providerFor(deps, input.target).deployRevision(input.target, input.artifact, input.contract, input.rolloutId),
        ),
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
          for (const probe of input.probes) probes.push(await p.probe(input.target, input.newVersion, probe));
          const [stable, next] = await Promise.all([
            p.fingerprint(input.target, input.stableVersion, deps.hashKey),
            p.fingerprint(input.target, input.newVersion, deps.hashKey),
          ]);
          const contractProblems: string[] = [];
          for (const key of ['RELEASE_ID', 'SCHEMA_REV', 'INDEX_HASH'] as const) {
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

    async setTraffic(input: { target: TargetSpec; stableVersion: string; newVersion: string; percent: number }) {
      return withHeartbeat(() =>
        mapProviderErrors(() =>
          providerFor(deps, input.target).setTraffic(input.target, input.stableVersion, input.newVersion, input.percent),
        ),
      );
    },

    /** Promote (version = new) or revert (version = stable): 100 % on one version. */
    async routeAll(input: { target: TargetSpec; version: string; dropTag?: boolean }) {
      return withHeartbeat(() =>
        mapProviderErrors(() => providerFor(deps, input.target).routeAll(input.target, input.version, { dropTag: input.dropTag })),
      );
    },

    async recordRelease(input: { target: TargetSpec; version: string; release: string; digest: string }) {
      return mapProviderErrors(() =>
        providerFor(deps, input.target).recordRelease(input.target, input.version, input.release, input.digest),
      );
    },
  };
}
export { mapProviderErrors } from './heartbeat';
