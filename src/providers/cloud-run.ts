/**
 * Google Cloud Run traffic router: a service's `traffic` list with explicit
 * TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION targets and integer percents (Admin API v2 over gRPC).
 *
 * - Deploy: the service template gets an explicit revision name derived from service and release
 *   (a retry or replay finds the same revision instead of creating another), the image by digest,
 *   RELEASE_ID / SCHEMA_REV / INDEX_HASH in the env, and a tag (target.tag ?? "canary") on the new
 *   revision at 0 %: all traffic stays where it was. The long-running operation is awaited with a
 *   deadline and heartbeats.
 * - The traffic lists themselves are computed in cloud-run-traffic.ts (pure).
 * - A traffic change counts as applied only when its operation is done, the service is not
 *   reconciling and `trafficStatuses` match what was asked.
 * - Probes go to the revision's tag URL from `trafficStatuses` (tests inject a rewrite of that URL
 *   to the Cloud Run fake's loopback server; nothing else differs).
 * - Errors: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED (and anything unknown) are
 *   retryable; INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, ALREADY_EXISTS,
 *   UNAUTHENTICATED, UNIMPLEMENTED, OUT_OF_RANGE are not.
 */
import { createHash } from 'node:crypto';
import type { GoogleAuth, Operation } from 'google-gax';
import type { RevisionsClient, ServicesClient } from '@google-cloud/run';
import type { google } from '@google-cloud/run/build/protos/protos';
import type { CloudRunTargetSpec, ProbeSpec } from '../spec/schema';
import { mustDurationMs } from '../spec/duration';
import {
  NonRetryableProviderError,
  type ArtifactRef,
  type DeployResult,
  type EnvFingerprint,
  type ProbeResult,
  type ReleaseContract,
  type TargetProvider,
  type TrafficFence,
  type TrafficState,
} from './types';
import { saltedHash } from './fingerprint';
import type { ParityConfig } from './parity';
import { callDeadline, heartbeat, stopIfCancelled } from './cancellation';
import {
  TYPE_REVISION,
  cloudRunPercent,
  cloudRunSplit,
  deployTraffic,
  servedSplit,
  shortName,
  trafficKey,
  validateTraffic,
  withKeptTags,
} from './cloud-run-traffic';
import { checkFence, fenceMark } from './fence';
import { outboundRequest } from '../security/outbound';
import { bodyExcerpt, secrets } from '../security/redact';
import { imageDigest, isReleaseContractKey } from '../contract/release';

type IService = google.cloud.run.v2.IService;
type IRevision = google.cloud.run.v2.IRevision;
type ITrafficTarget = google.cloud.run.v2.ITrafficTarget;
type IRevisionTemplate = google.cloud.run.v2.IRevisionTemplate;
type IContainer = google.cloud.run.v2.IContainer;

export interface CloudRunProviderOptions {
  /** host:port of a plaintext gRPC Admin API (the dev/test fake). Unset: Cloud Run itself, with ADC. */
  endpoint?: string;
  /** Rewrite a tag URL before probing it (tests: to the fake's loopback HTTP server). */
  probeUrlRewrite?: (url: string) => string;
  /** Send an ID token for the tag URL's audience with probes (services that require IAM invokers). */
  probeIdToken?: boolean;
  /** Deadline for one long-running operation or one wait for the service to settle (ms). */
  operationTimeoutMs?: number;
  /** First and largest pause between operation polls (ms). */
  pollIntervalMs?: number;
  maxPollIntervalMs?: number;
}

export const DEFAULT_TAG = 'canary';
/** The service annotation a revert leaves (src/providers/fence.ts). */
export const FENCE_ANNOTATION = 'rollgate.dev/reverted';

/**
 * Dev/test: send a tag URL's request to `base` instead, as `BASE/host/<tag url host>/<path>`
 * (the Cloud Run fake routes that host through the service's trafficStatuses).
 */
export function probeUrlVia(base: string): (url: string) => string {
  return (url) => {
    const u = new URL(url);
    return `${base.replace(/\/$/, '')}/host/${u.host}${u.pathname === '/' ? '' : u.pathname}${u.search}`;
  };
}
/**
 * The Cloud Run client library (with google-gax, the largest part of the worker's start: about a
 * second of module loading) is loaded at the first call, so a worker that never sees a cloud-run
 * target never loads it (test/worker-start.unit.test.ts).
 */
async function loadCloudRun() {
  const [{ RevisionsClient, ServicesClient }, { gcpClientOptions }] = await Promise.all([
    import('@google-cloud/run'),
    import('./gcp-client'),
  ]);
  return { RevisionsClient, ServicesClient, gcpClientOptions };
}

/** gRPC status codes (google-gax's `Status`, without loading google-gax). */
enum Status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** Cloud Run caps service names so that SERVICE-SUFFIX revision names fit a 63-character label. */
const MAX_SERVICE_NAME = 49;

const NON_RETRYABLE = new Set<number>([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.PERMISSION_DENIED,
  Status.FAILED_PRECONDITION,
  Status.ALREADY_EXISTS,
  Status.UNAUTHENTICATED,
  Status.UNIMPLEMENTED,
  Status.OUT_OF_RANGE,
]);

/**
 * A lost etag race is retried (the retry reads the service again). AIP-154 says ABORTED; older
 * revisions of it said FAILED_PRECONDITION, and real Cloud Run's choice is not confirmed here, so a
 * FAILED_PRECONDITION that names the etag counts as the same race rather than failing the stage.
 */
function isStaleEtag(code: number, message: string): boolean {
  return code === Status.FAILED_PRECONDITION && /etag/i.test(message);
}

/** A gRPC failure as rollgate sees it: retryable (plain Error, Temporal retries) or not. */
export function mapCloudRunError(err: unknown, context: string): Error {
  const e = err as { code?: unknown; message?: string; details?: string };
  if (err instanceof NonRetryableProviderError || typeof e?.code !== 'number' || !(e.code in Status)) return err as Error;
  const name = Status[e.code];
  const message = `${context}: ${name}: ${(e.details || e.message || '').replace(/^\d+ [A-Z_]+: /, '')}`;
  if (NON_RETRYABLE.has(e.code) && !isStaleEtag(e.code, message)) return new NonRetryableProviderError(message, name);
  const out = new Error(message);
  out.name = `CloudRun${name}`;
  return out;
}

/**
 * Explicit revision name for a release: SERVICE-RELEASE when the release is already a clean DNS
 * label part, else a sanitized (and, if needed, shortened) form plus a stable hash of the exact
 * release, so two releases never map to one name. At most 63 characters.
 */
export function cloudRunRevisionName(service: string, release: string): string {
  if (service.length > MAX_SERVICE_NAME)
    throw new NonRetryableProviderError(
      `Cloud Run service names have at most ${MAX_SERVICE_NAME} characters: ${service}`,
      'InvalidService',
    );
  const slug = release
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  const plain = `${service}-${slug}`;
  if (slug === release && plain.length <= 63) return plain;
  const hash = createHash('sha256').update(release).digest('hex').slice(0, 6);
  const room = 63 - service.length - 1 - hash.length - 1;
  const short = slug.slice(0, room).replace(/-+$/, '');
  return short ? `${service}-${short}-${hash}` : `${service}-${hash}`;
}

/** Label values: lowercase letters, digits, "_" and "-", at most 63 characters. */
export function labelValue(v: string): string {
  return v
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '_')
    .slice(0, 63);
}

/** Key names, salted hashes and secret references of a revision's containers (values never leave). */
export function revisionFingerprint(containers: IContainer[], salt: string): EnvFingerprint {
  const values: Record<string, string> = {};
  const secretRefs: Record<string, string> = {};
  const contract: Partial<ReleaseContract> = {};
  const ingress = ingressIndex(containers);
  containers.forEach((c, i) => {
    const prefix = i === ingress ? '' : `${c.name || `container-${i}`}/`;
    for (const e of c.env ?? []) {
      const key = `${prefix}${e.name}`;
      const ref = e.valueSource?.secretKeyRef;
      if (ref) {
        secretRefs[key] = `${ref.secret}:${ref.version || 'latest'}`;
        continue;
      }
      const value = e.value ?? '';
      values[key] = saltedHash(salt, key, value);
      if (!prefix && isReleaseContractKey(e.name!)) (contract as Record<string, string>)[e.name!] = value;
    }
  });
  return { values, secretRefs, contract };
}

/** The serving (ingress) container: the one with a port, else the first. */
/** Cloud Run's defaults for what a revision leaves unset (0 is "unset" in proto3). */
const CLOUD_RUN_DEFAULTS = { cpu: '1', memory: '512Mi', concurrency: 80, maxInstances: 100 };

/** A revision (and its service's ingress) as parity compares it. */
export function revisionParityConfig(rev: IRevision, ingress: unknown, salt: string): ParityConfig {
  const containers = rev.containers ?? [];
  const main = containers[ingressIndex(containers)] ?? {};
  const limits = main.resources?.limits ?? {};
  const scaling = rev.scaling ?? {};
  const ingressName = typeof ingress === 'string' && ingress && !ingress.endsWith('UNSPECIFIED') ? ingress : 'INGRESS_TRAFFIC_ALL';
  const settings: Record<string, string> = {
    cpu: limits.cpu || CLOUD_RUN_DEFAULTS.cpu,
    memory: limits.memory || CLOUD_RUN_DEFAULTS.memory,
    concurrency: String(rev.maxInstanceRequestConcurrency || CLOUD_RUN_DEFAULTS.concurrency),
    'min instances': String(scaling.minInstanceCount || 0),
    'max instances': String(scaling.maxInstanceCount || CLOUD_RUN_DEFAULTS.maxInstances),
    ingress: ingressName.replace(/^INGRESS_TRAFFIC_/, '').toLowerCase(),
  };
  const env: Record<string, string> = {};
  const secretRefs: Record<string, string> = {};
  const serving = ingressIndex(containers);
  containers.forEach((c, i) => {
    const prefix = i === serving ? '' : `${c.name || `container-${i}`}/`;
    for (const e of c.env ?? []) {
      const key = `${prefix}${e.name}`;
      const ref = e.valueSource?.secretKeyRef;
      if (ref) secretRefs[key] = `${shortName(ref.secret)}:${ref.version || 'latest'}`;
      else if (!(prefix === '' && isReleaseContractKey(e.name ?? ''))) env[key] = saltedHash(salt, key, e.value ?? '');
    }
  });
  return { provider: 'cloud-run', settings, env, secretRefs };
}

function ingressIndex(containers: IContainer[]): number {
  const i = containers.findIndex((c) => (c.ports ?? []).length > 0);
  return i >= 0 ? i : 0;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Default deadline of one call's operations and waits; never past the running attempt's own timeout (callDeadline). */
const OPERATION_TIMEOUT_MS = 240_000;

export class CloudRunProvider implements TargetProvider<CloudRunTargetSpec> {
  readonly kind = 'cloud-run' as const;
  // Created at first use (loadCloudRun).
  private servicesClient?: Promise<ServicesClient>;
  private revisionsClient?: Promise<RevisionsClient>;
  private auth?: Promise<GoogleAuth>;

  constructor(private readonly opts: CloudRunProviderOptions = {}) {}

  private services(): Promise<ServicesClient> {
    this.servicesClient ??= loadCloudRun().then((g) => new g.ServicesClient(g.gcpClientOptions(this.opts.endpoint)));
    return this.servicesClient;
  }

  private revisions(): Promise<RevisionsClient> {
    this.revisionsClient ??= loadCloudRun().then((g) => new g.RevisionsClient(g.gcpClientOptions(this.opts.endpoint)));
    return this.revisionsClient;
  }

  async close(): Promise<void> {
    const close = (c?: Promise<{ close(): Promise<void> }>) =>
      c?.then(
        (x) => x.close(),
        () => undefined,
      );
    await Promise.all([close(this.servicesClient), close(this.revisionsClient)]);
  }

  private tag(t: CloudRunTargetSpec): string {
    return t.tag ?? DEFAULT_TAG;
  }

  serviceName(t: CloudRunTargetSpec): string {
    return `projects/${t.project}/locations/${t.region}/services/${t.service}`;
  }

  revisionName(t: CloudRunTargetSpec, revision: string): string {
    return `${this.serviceName(t)}/revisions/${revision}`;
  }

  async readTraffic(t: CloudRunTargetSpec): Promise<TrafficState> {
    const svc = await this.getService(t);
    const split = [...servedSplit(svc).entries()].filter(([, p]) => p > 0).sort((a, b) => b[1] - a[1]);
    if (split.length === 0) throw new NonRetryableProviderError(`${t.name}: service ${t.service} serves no revision`, 'NoTraffic');
    const [stable] = split[0];
    const next = split[1];
    return { stableVersion: stable, newVersion: next?.[0], newWeight: next?.[1] ?? 0 };
  }

  async deployRevision(
    t: CloudRunTargetSpec,
    artifact: ArtifactRef,
    contract: ReleaseContract,
    rolloutId: string,
    fence?: TrafficFence,
  ): Promise<DeployResult> {
    const image = artifact.image;
    if (!imageDigest(image))
      throw new NonRetryableProviderError('cloud-run targets need artifact.image pinned by digest (name@sha256:...)', 'NoImage');
    const name = cloudRunRevisionName(t.service, contract.RELEASE_ID);
    const tag = this.tag(t);
    const deadline = callDeadline(this.opts.operationTimeoutMs ?? OPERATION_TIMEOUT_MS);

    const existing = await this.findRevision(t, name);
    if (existing) {
      const containers = existing.containers ?? [];
      const c = containers[ingressIndex(containers)];
      const release = (c?.env ?? []).find((e) => e.name === 'RELEASE_ID')?.value;
      if (release !== contract.RELEASE_ID || c?.image !== image)
        throw new NonRetryableProviderError(
          `${t.name}: revision ${name} already exists with release "${release ?? ''}" and image ${c?.image ?? '?'}; release ${contract.RELEASE_ID} needs ${image}`,
          'RevisionNameTaken',
        );
      await this.waitRevisionReady(t, name, deadline);
      // An earlier attempt made it; make sure it still has its tag (a no-op when it has).
      const svc = await this.getService(t);
      if (!(svc.traffic ?? []).some((x) => x.tag === tag && x.revision === name)) {
        checkFence(t.name, 'tagging the new revision', svc.annotations?.[FENCE_ANNOTATION], fence);
        await this.applyTraffic(t, svc, deployTraffic(svc, name, tag), deadline, 'tag the revision');
      } else await this.waitTraffic(t, svc.traffic ?? [], deadline);
      return { newVersion: name, created: false };
    }

    const svc = await this.getService(t);
    checkFence(t.name, `deploying ${name}`, svc.annotations?.[FENCE_ANNOTATION], fence);
    const template: IRevisionTemplate = JSON.parse(JSON.stringify(svc.template ?? {}));
    template.revision = name;
    template.labels = { ...(template.labels ?? {}), 'rollgate-rollout': labelValue(rolloutId) };
    const containers = template.containers ?? [];
    if (containers.length === 0) throw new NonRetryableProviderError(`${t.name}: service ${t.service} has no container`, 'NoContainer');
    const c = containers[ingressIndex(containers)];
    c.image = image;
    const env = (c.env ?? []).filter((e) => !isReleaseContractKey(e.name ?? ''));
    env.push({ name: 'RELEASE_ID', value: contract.RELEASE_ID }, { name: 'SCHEMA_REV', value: contract.SCHEMA_REV });
    if (contract.INDEX_HASH) env.push({ name: 'INDEX_HASH', value: contract.INDEX_HASH });
    c.env = env;
    const traffic = deployTraffic(svc, name, tag);
    heartbeat(`deploying revision ${name}`);
    stopIfCancelled(`UpdateService (deploy ${name})`);
    const [op] = await this.call(t, 'UpdateService (deploy)', async () =>
      (await this.services()).updateService({ service: { ...svc, template, traffic } }),
    );
    await this.waitOperation(t, op, `deploy ${name}`, deadline);
    await this.waitRevisionReady(t, name, deadline);
    await this.waitTraffic(t, traffic, deadline);
    return { newVersion: name, created: true };
  }

  async fingerprint(t: CloudRunTargetSpec, version: string, salt: string): Promise<EnvFingerprint> {
    const [rev] = await this.call(t, `GetRevision ${version}`, async () =>
      (await this.revisions()).getRevision({ name: this.revisionName(t, version) }),
    );
    // The values may be secrets: the redactor must know them (src/security/redact.ts).
    for (const c of rev.containers ?? []) for (const e of c.env ?? []) if (e.name) secrets.addEnvValue(e.name, e.value ?? undefined);
    return revisionFingerprint(rev.containers ?? [], salt);
  }

  /**
   * Parity (src/providers/parity.ts): the serving container's limits, the revision's concurrency and
   * scaling, the service's ingress, env values hashed, secret references by secret name (without
   * the project: that differs by design). Unset values are Cloud Run's defaults.
   */
  async readParityConfig(t: CloudRunTargetSpec, version: string, salt: string): Promise<ParityConfig> {
    const [svc, [rev]] = await Promise.all([
      this.getService(t),
      this.call(t, `GetRevision ${version}`, async () => (await this.revisions()).getRevision({ name: this.revisionName(t, version) })),
    ]);
    return revisionParityConfig(rev, svc.ingress, salt);
  }

  async setTraffic(
    t: CloudRunTargetSpec,
    stable: string,
    next: string,
    percent: number,
    opts: { fence?: TrafficFence } = {},
  ): Promise<{ changed: boolean }> {
    const p = cloudRunPercent(percent);
    if (p >= 100) return this.routeAll(t, next, opts);
    if (p <= 0) return this.routeAll(t, stable, opts);
    const svc = await this.getService(t);
    const tag = this.tag(t);
    const desired = withKeptTags(cloudRunSplit(stable, next, p, tag), svc.traffic ?? [], new Set([tag]));
    return this.converge(t, svc, desired, `${next} at ${p} %`, opts);
  }

  async routeAll(
    t: CloudRunTargetSpec,
    version: string,
    opts: { dropTag?: boolean; fence?: TrafficFence; revert?: boolean } = {},
  ): Promise<{ changed: boolean }> {
    if (!version) throw new NonRetryableProviderError('routeAll needs a revision name', 'InvalidRevision');
    const svc = await this.getService(t);
    const drop = new Set<string>(opts.dropTag ? [this.tag(t)] : []);
    const desired = withKeptTags([{ type: TYPE_REVISION, revision: version, percent: 100 }], svc.traffic ?? [], drop);
    return this.converge(t, svc, desired, `100 % on ${version}${opts.dropTag ? `, tag ${this.tag(t)} dropped` : ''}`, opts);
  }

  /**
   * Apply `desired` unless the service already routes exactly so (spec and served status). A
   * forward write is refused when a revert of its pass has marked the service; a revert leaves
   * that mark (written with the traffic, so the two never come apart).
   */
  private async converge(
    t: CloudRunTargetSpec,
    svc: IService,
    desired: ITrafficTarget[],
    what: string,
    opts: { fence?: TrafficFence; revert?: boolean } = {},
  ): Promise<{ changed: boolean }> {
    validateTraffic(desired);
    const deadline = callDeadline(this.opts.operationTimeoutMs ?? OPERATION_TIMEOUT_MS);
    const current = svc.annotations?.[FENCE_ANNOTATION];
    const mark = opts.revert && opts.fence ? fenceMark(opts.fence) : undefined;
    if (!opts.revert) checkFence(t.name, what, current, opts.fence);
    const marked = !mark || current === mark;
    if (trafficKey(svc.traffic ?? []) === trafficKey(desired) && marked) {
      await this.waitTraffic(t, desired, deadline); // an earlier attempt asked for it: wait until it serves
      return { changed: false };
    }
    await this.applyTraffic(t, svc, desired, deadline, what, mark);
    return { changed: true };
  }

  private async applyTraffic(
    t: CloudRunTargetSpec,
    svc: IService,
    traffic: ITrafficTarget[],
    deadline: number,
    what: string,
    mark?: string,
  ): Promise<void> {
    validateTraffic(traffic);
    heartbeat(`traffic: ${what}`);
    stopIfCancelled(`UpdateService (${what})`);
    // Traffic only (update mask): a revert never re-submits a template, e.g. one whose revision
    // failed. The etag read with `svc` makes the write conditional: if the service changed since
    // (a revert, another write), it fails with ABORTED and the retry reads it again.
    const service = mark ? { ...svc, traffic, annotations: { ...(svc.annotations ?? {}), [FENCE_ANNOTATION]: mark } } : { ...svc, traffic };
    const paths = mark ? ['traffic', 'annotations'] : ['traffic'];
    const [op] = await this.call(t, `UpdateService (${what})`, async () =>
      (await this.services()).updateService({ service, updateMask: { paths } }),
    );
    await this.waitOperation(t, op, what, deadline);
    await this.waitTraffic(t, traffic, deadline);
  }

  /**
   * The revision's own tag URL when it has one (the new revision always does); otherwise the service
   * URL, which for the stable revision during a canary is mostly, not only, that revision.
   * The probe URL rewrite applies, as for probes.
   */
  async revisionUrl(t: CloudRunTargetSpec, version: string): Promise<string> {
    const svc = await this.getService(t);
    const statuses = (svc.trafficStatuses ?? []).filter((s) => s.revision === version && s.tag && s.uri);
    const status = statuses.find((s) => s.tag === this.tag(t)) ?? statuses[0];
    const base = (status?.uri ?? svc.uri ?? '').replace(/\/$/, '');
    if (!base) throw new NonRetryableProviderError(`${t.name}: service ${t.service} has no URL yet`, 'NoUrl');
    return this.opts.probeUrlRewrite ? this.opts.probeUrlRewrite(base) : base;
  }

  async probe(t: CloudRunTargetSpec, version: string, probe: ProbeSpec): Promise<ProbeResult> {
    const started = Date.now();
    try {
      const svc = await this.getService(t);
      const statuses = (svc.trafficStatuses ?? []).filter((s) => s.revision === version && s.tag && s.uri);
      const status = statuses.find((s) => s.tag === this.tag(t)) ?? statuses[0];
      if (!status) return { probe: probe.name, ok: false, detail: `revision ${version} has no tag URL in trafficStatuses`, latencyMs: 0 };
      const tagUrl = `${status.uri!.replace(/\/$/, '')}${probe.path ?? '/'}`;
      const url = this.opts.probeUrlRewrite ? this.opts.probeUrlRewrite(tagUrl) : tagUrl;
      const headers: Record<string, string> = { 'user-agent': 'rollgate-probe' };
      if (this.opts.probeIdToken) {
        this.auth ??= import('google-gax').then((g) => new g.GoogleAuth());
        const client = await (await this.auth).getIdTokenClient(status.uri!);
        const h = await client.getRequestHeaders(tagUrl);
        h.forEach((v, k) => (headers[k] = v));
      }
      // A URL Cloud Run reported: no allow-list, but no metadata/link-local address and no redirects.
      const res = await outboundRequest(url, { headers, timeoutMs: mustDurationMs(probe.timeout) });
      const body = res.text;
      const latencyMs = Date.now() - started;
      if (res.status !== 200)
        return { probe: probe.name, ok: false, detail: `HTTP ${res.status} from ${tagUrl}: ${bodyExcerpt(body)}`, latencyMs };
      if (probe.expect_contains && !body.includes(probe.expect_contains))
        return { probe: probe.name, ok: false, detail: `response from ${tagUrl} does not contain "${probe.expect_contains}"`, latencyMs };
      return { probe: probe.name, ok: true, detail: `HTTP 200 from ${tagUrl} in ${latencyMs} ms`, latencyMs };
    } catch (err) {
      const e = err as Error;
      return {
        probe: probe.name,
        ok: false,
        detail: bodyExcerpt(`${e.name}: ${e.message}`, 300),
        latencyMs: Date.now() - started,
        unreachable: true,
      };
    }
  }

  async recordRelease(t: CloudRunTargetSpec, version: string, release: string, digest: string): Promise<void> {
    const svc = await this.getService(t);
    const labels = {
      ...(svc.labels ?? {}),
      'rollgate-release': labelValue(release),
      'rollgate-revision': labelValue(version),
      'rollgate-digest': labelValue(digest.replace(/^sha256:/, '')),
    };
    if (Object.entries(labels).every(([k, v]) => svc.labels?.[k] === v)) return;
    const deadline = callDeadline(this.opts.operationTimeoutMs ?? OPERATION_TIMEOUT_MS);
    const [op] = await this.call(t, 'UpdateService (labels)', async () =>
      (await this.services()).updateService({ service: { ...svc, labels } }),
    );
    await this.waitOperation(t, op, 'record release labels', deadline);
  }

  // ---- waits and calls ------------------------------------------------------------------------

  private async getService(t: CloudRunTargetSpec): Promise<IService> {
    const [svc] = await this.call(t, 'GetService', async () => (await this.services()).getService({ name: this.serviceName(t) }));
    return svc;
  }

  private async findRevision(t: CloudRunTargetSpec, revision: string): Promise<IRevision | undefined> {
    try {
      const [rev] = await (await this.revisions()).getRevision({ name: this.revisionName(t, revision) });
      return rev;
    } catch (err) {
      if ((err as { code?: number }).code === Status.NOT_FOUND) return undefined;
      throw mapCloudRunError(err, `${t.name}: GetRevision ${revision} (cloud-run ${t.project}/${t.region}/${t.service})`);
    }
  }

  private async pause(delay: number): Promise<number> {
    await sleep(delay);
    stopIfCancelled('waiting any longer');
    return Math.min(delay * 1.5, this.opts.maxPollIntervalMs ?? 5_000);
  }

  /** Poll the operation until done, with a deadline; an operation error maps like a call error. */
  private async waitOperation(
    t: CloudRunTargetSpec,
    op: Operation | { latestResponse: Operation['latestResponse']; getOperation(): Promise<unknown> },
    what: string,
    deadline: number,
  ): Promise<void> {
    let delay = this.opts.pollIntervalMs ?? 500;
    const opName = op.latestResponse?.name ?? '?';
    for (;;) {
      const r = op.latestResponse;
      if (r?.done) {
        if (r.error) throw mapCloudRunError({ code: r.error.code, message: r.error.message }, `${t.name}: ${what} (operation ${opName})`);
        return;
      }
      if (Date.now() > deadline) throw new Error(`${t.name}: ${what}: operation ${opName} still running at the deadline`);
      heartbeat(`${what}: waiting for operation ${opName}`);
      delay = await this.pause(delay);
      try {
        await op.getOperation();
      } catch (err) {
        throw mapCloudRunError(err, `${t.name}: ${what} (operation ${opName})`);
      }
    }
  }

  /** Until the revision's Ready condition succeeds; a failed revision is final. */
  private async waitRevisionReady(t: CloudRunTargetSpec, revision: string, deadline: number): Promise<void> {
    let delay = this.opts.pollIntervalMs ?? 500;
    for (;;) {
      const [rev] = await this.call(t, `GetRevision ${revision}`, async () =>
        (await this.revisions()).getRevision({ name: this.revisionName(t, revision) }),
      );
      const ready = (rev.conditions ?? []).find((c) => c.type === 'Ready');
      if (ready?.state === 'CONDITION_SUCCEEDED') return;
      if (ready?.state === 'CONDITION_FAILED')
        throw new NonRetryableProviderError(`${t.name}: revision ${revision} is not ready: ${ready.message ?? ''}`, 'RevisionFailed');
      if (Date.now() > deadline) throw new Error(`${t.name}: revision ${revision} not ready at the deadline`);
      heartbeat(`waiting for revision ${revision} to become ready`);
      delay = await this.pause(delay);
    }
  }

  /** Until the service is not reconciling and serves exactly `traffic` (trafficStatuses match). */
  private async waitTraffic(t: CloudRunTargetSpec, traffic: ITrafficTarget[], deadline: number): Promise<void> {
    let delay = this.opts.pollIntervalMs ?? 500;
    const want = trafficKey(traffic);
    for (;;) {
      const svc = await this.getService(t);
      if (!svc.reconciling && trafficKey(svc.trafficStatuses ?? []) === want) return;
      const failed = svc.terminalCondition?.state === 'CONDITION_FAILED' && !svc.reconciling;
      if (failed && trafficKey(svc.traffic ?? []) === want)
        throw new NonRetryableProviderError(`${t.name}: traffic not applied: ${svc.terminalCondition?.message ?? ''}`, 'TrafficFailed');
      if (Date.now() > deadline) throw new Error(`${t.name}: traffic not applied at the deadline (reconciling=${svc.reconciling})`);
      heartbeat('waiting for trafficStatuses to match');
      delay = await this.pause(delay);
    }
  }

  private async call<R>(t: CloudRunTargetSpec, what: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      throw mapCloudRunError(err, `${t.name}: ${what} (cloud-run ${t.project}/${t.region}/${t.service})`);
    }
  }
}
