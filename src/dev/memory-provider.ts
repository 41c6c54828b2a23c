/**
 * Dev/bench only: an in-memory traffic router and metric source. The parked-rollouts benchmark
 * uses it to measure the worker itself (2,000 rollouts) without measuring an emulator; every other
 * benchmark and test uses moto and the Cloud Run fake.
 */
import type { TargetSpec } from '../spec/schema';
import type {
  ArtifactRef,
  DeployResult,
  EnvFingerprint,
  ProbeResult,
  ReleaseContract,
  TargetProvider,
  TrafficState,
} from '../providers/types';
import type { CanarySamples, MetricProvider } from '../analysis/types';
import type { ParityConfig } from '../providers/parity';

interface MemTarget {
  versions: { version: string; contract: ReleaseContract }[];
  stable: string;
  next?: string;
  weight: number;
}

export class MemoryProvider implements TargetProvider<any> {
  readonly kind = 'aws-lambda' as const;
  readonly state = new Map<string, MemTarget>();

  private get(t: TargetSpec): MemTarget {
    const key = t.provider === 'aws-lambda' ? `${t.region}/${t.function}:${t.alias}` : `${t.project}/${t.region}/${t.service}`;
    let s = this.state.get(key);
    if (!s) {
      s = { versions: [{ version: '1', contract: { RELEASE_ID: 'initial', SCHEMA_REV: '0' } }], stable: '1', weight: 0 };
      this.state.set(key, s);
    }
    return s;
  }
  async readTraffic(t: TargetSpec): Promise<TrafficState> {
    const s = this.get(t);
    return { stableVersion: s.stable, newVersion: s.weight > 0 ? s.next : undefined, newWeight: s.weight };
  }
  async deployRevision(t: TargetSpec, _a: ArtifactRef, contract: ReleaseContract): Promise<DeployResult> {
    const s = this.get(t);
    const found = s.versions.find((v) => v.contract.RELEASE_ID === contract.RELEASE_ID);
    if (found) return { newVersion: found.version, created: false };
    const version = String(s.versions.length + 1);
    s.versions.push({ version, contract });
    return { newVersion: version, created: true };
  }
  async fingerprint(t: TargetSpec, version: string): Promise<EnvFingerprint> {
    const v = this.get(t).versions.find((x) => x.version === version)!;
    return { values: {}, secretRefs: {}, contract: v.contract };
  }
  /** Every in-memory target is configured alike: parity finds nothing. */
  async readParityConfig(t: TargetSpec): Promise<ParityConfig> {
    return { provider: t.provider, settings: {}, env: {}, secretRefs: {} };
  }
  async setTraffic(t: TargetSpec, stable: string, next: string, percent: number) {
    const s = this.get(t);
    if (percent >= 100) return this.routeAll(t, next);
    const changed = s.stable !== stable || s.next !== next || s.weight !== percent;
    Object.assign(s, { stable, next, weight: percent });
    return { changed };
  }
  async routeAll(t: TargetSpec, version: string) {
    const s = this.get(t);
    const changed = s.stable !== version || s.weight !== 0;
    Object.assign(s, { stable: version, next: undefined, weight: 0 });
    return { changed };
  }
  async probe(_t: TargetSpec, _v: string, probe: { name: string }): Promise<ProbeResult> {
    return { probe: probe.name, ok: true, detail: 'in-memory', latencyMs: 0 };
  }
  async recordRelease() {}
}

export class MemoryMetrics implements MetricProvider {
  readonly name = 'memory';
  supports() {
    return true;
  }
  async preflight() {}
  async collect(): Promise<CanarySamples> {
    return { source: 'memory', canary: { requests: 1000, errors: 0 }, baseline: { requests: 1000, errors: 0 } };
  }
}
