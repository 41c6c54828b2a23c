/**
 * Dev/test only: a wire-level fake of the Cloud Run Admin API v2, served over gRPC on 127.0.0.1.
 * No Cloud Run emulator exists, so this serves the real `@google-cloud/run` client from the
 * protos that package ships (build/protos/protos.json). It is NOT an emulator of everything: it
 * models what rollgate relies on and says so with UNIMPLEMENTED for the rest.
 *
 * Modelled: Services (Get, Create, Update, Delete, List), Revisions (Get, List, Delete) and
 * google.longrunning.Operations (GetOperation, ListOperations). Cloud Run semantics kept:
 * - revisions are named SERVICE-SUFFIX, unique per service; `template.revision` gives an explicit
 *   name, and an update naming an existing revision with a different template is ALREADY_EXISTS;
 *   an unchanged template creates no revision;
 * - the spec (template, traffic, labels) changes at once and bumps `generation`; the status
 *   (`trafficStatuses`, `latestReadyRevision`, `observedGeneration`, `reconciling`) changes only
 *   when the update's operation completes, after a configurable number of GetOperation polls (or
 *   a backstop time, since real Cloud Run reconciles whether anyone polls or not);
 * - traffic validation: percents sum to 100, named revisions must exist, tags unique, no traffic to
 *   a failed revision (INVALID_ARGUMENT / FAILED_PRECONDITION);
 * - tags get URLs `https://TAG---SERVICE-HASH.a.run.app` in `trafficStatuses`.
 *
 * Probes: real tag URLs are not reachable here, so an HTTP server on loopback answers
 * `GET http://127.0.0.1:PORT/host/<tag url host>/<path>` by routing the host through the
 * service's `trafficStatuses`, the way Cloud Run routes a tag URL. `loopbackUrl(tagUri)` rewrites
 * a tag URI to that form; the provider takes the rewrite as an injected option in tests only.
 *
 * Knobs for tests: fail the next N calls of a method with a gRPC code, slow operations, a
 * revision that never becomes ready, a revision whose probe answers 500, call counters.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import { GrpcClient, grpc, protobuf } from 'google-gax';
import { probeUrlVia } from '../providers/cloud-run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const RUN_PROTOS = require('@google-cloud/run/build/protos/protos.json');

type Msg = Record<string, any>;
type Callback = (err: grpc.ServiceError | null, value?: Msg) => void;
type Handler = (req: Msg) => Msg | Promise<Msg>;

const Code = grpc.status;

export class FakeRpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

let loaded: { pkg: any; root: protobuf.Root } | undefined;
function protos() {
  if (!loaded) {
    const pkg = new GrpcClient().loadProtoJSON(RUN_PROTOS);
    loaded = { pkg, root: protobuf.Root.fromJSON(RUN_PROTOS) };
  }
  return loaded;
}

/** What a knob predicate sees of a revision. */
export interface RevisionInfo {
  project: string;
  region: string;
  service: string;
  /** Short name (SERVICE-SUFFIX). */
  revision: string;
  image: string;
  env: Record<string, string>;
}

export interface CloudRunFakeKnobs {
  /** GetOperation polls before an operation completes (0 = the update returns a finished operation). */
  operationPolls: number;
  /** An operation completes after this long even if nobody polls it (ms; 0 = only polls count). */
  operationMaxMs: number;
  /** Revisions for which this is true never become ready: their operation ends with FAILED_PRECONDITION. */
  neverReady: (r: RevisionInfo) => boolean;
  /** Revisions for which this is true answer probes with HTTP 500. */
  unhealthy: (r: RevisionInfo) => boolean;
}

interface PendingOp {
  name: string;
  service: string;
  kind: 'create' | 'update' | 'delete' | 'delete-revision';
  newRevision?: string;
  polls: number;
  startedMs: number;
  done: boolean;
  error?: { code: number; message: string };
  result?: Msg;
  resultType: string;
}

export interface SeedServiceInput {
  project: string;
  region: string;
  service: string;
  image: string;
  env?: Record<string, string>;
  /** env key -> [secret name, version]. */
  secretEnv?: Record<string, [string, string]>;
  /** Explicit name of the first revision (default SERVICE-00001-xxx). */
  revision?: string;
  /** The container's resources.limits (e.g. { cpu: '1', memory: '512Mi' }); unset: none (Cloud Run's defaults). */
  limits?: Record<string, string>;
  /** Default 80. */
  maxInstanceRequestConcurrency?: number;
  scaling?: { minInstanceCount?: number; maxInstanceCount?: number };
  /** Default INGRESS_TRAFFIC_ALL. */
  ingress?: string;
}

const now = () => Date.now();
const ts = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** Stable JSON (sorted keys) for "did the template change" comparisons. */
function canonical(x: unknown): string {
  return JSON.stringify(x, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Msg).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function parseServiceName(name: string): { project: string; region: string; service: string } {
  const m = /^projects\/([^/]+)\/locations\/([^/]+)\/services\/([^/]+)$/.exec(name ?? '');
  if (!m) throw new FakeRpcError(Code.INVALID_ARGUMENT, `invalid service name "${name}"`);
  return { project: m[1], region: m[2], service: m[3] };
}

function parseRevisionName(name: string): { serviceName: string; revision: string } {
  const m = /^(projects\/[^/]+\/locations\/[^/]+\/services\/[^/]+)\/revisions\/([^/]+)$/.exec(name ?? '');
  if (!m) throw new FakeRpcError(Code.INVALID_ARGUMENT, `invalid revision name "${name}"`);
  return { serviceName: m[1], revision: m[2] };
}

const shortName = (full: string) => full.slice(full.lastIndexOf('/') + 1);
const DNS_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const TYPE_REVISION = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION';
const TYPE_LATEST = 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST';

function condition(type: string, state: string, message = '', extra: Msg = {}): Msg {
  return { type, state, message, lastTransitionTime: ts(now()), severity: state === 'CONDITION_FAILED' ? 'ERROR' : 'INFO', ...extra };
}

export class CloudRunFake {
  readonly knobs: CloudRunFakeKnobs = {
    operationPolls: 1,
    operationMaxMs: 2_000,
    neverReady: () => false,
    unhealthy: () => false,
  };
  /** Calls per gRPC method name (UpdateService, GetOperation, ...), failed ones included. */
  readonly calls: Record<string, number> = {};
  /** Injected failures served per method (see failNext). */
  readonly failed: Record<string, number> = {};
  private readonly failures = new Map<string, { n: number; code: grpc.status; message: string }>();
  private readonly services = new Map<string, Msg>();
  /** Service name -> revisions by short name, in creation order. */
  private readonly revisions = new Map<string, Map<string, Msg>>();
  private readonly ops = new Map<string, PendingOp>();
  private revisionCounter = new Map<string, number>();
  private server?: grpc.Server;
  private http?: HttpServer;
  /** host:port of the gRPC server. */
  address = '';
  port = 0;
  /** Base URL of the probe HTTP server. */
  httpUrl = '';

  async start(): Promise<this> {
    const { pkg } = protos();
    const v2 = pkg.google.cloud.run.v2;
    const server = new grpc.Server();
    server.addService(v2.Services.service, this.bind('Services', v2.Services.service));
    server.addService(v2.Revisions.service, this.bind('Revisions', v2.Revisions.service));
    server.addService(pkg.google.longrunning.Operations.service, this.bind('Operations', pkg.google.longrunning.Operations.service));
    this.port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? rej(err) : res(port))),
    );
    this.address = `127.0.0.1:${this.port}`;
    this.server = server;
    this.http = createServer((req, res) => this.serveProbe(req.url ?? '/', res));
    await new Promise<void>((r) => this.http!.listen(0, '127.0.0.1', () => r()));
    this.httpUrl = `http://127.0.0.1:${(this.http.address() as { port: number }).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.tryShutdown(() => r()) : r()));
    this.server?.forceShutdown();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.http?.closeAllConnections();
  }

  /** Fail the next `n` calls of `method` (e.g. "UpdateService", "GetOperation") with `code`. */
  failNext(method: string, n: number, code: grpc.status, message = `injected ${grpc.status[code]}`): void {
    this.failures.set(method, { n, code, message });
  }

  callCount(method: string): number {
    return this.calls[method] ?? 0;
  }

  resetCounters(): void {
    for (const k of Object.keys(this.calls)) delete this.calls[k];
  }

  /** Rewrite a real tag URL (https://TAG---SERVICE-HASH.a.run.app/path) to this fake's HTTP server. */
  loopbackUrl(uri: string): string {
    return probeUrlVia(this.httpUrl)(uri);
  }

  /** A service with one ready revision serving 100 % (LATEST), as after a first `gcloud run deploy`. */
  seedService(s: SeedServiceInput): Msg {
    const parent = `projects/${s.project}/locations/${s.region}`;
    const env = [
      ...Object.entries(s.env ?? {}).map(([name, value]) => ({ name, value })),
      ...Object.entries(s.secretEnv ?? {}).map(([name, [secret, version]]) => ({
        name,
        valueSource: { secretKeyRef: { secret, version } },
      })),
    ];
    const template = this.normalizeTemplate({
      revision: s.revision ?? '',
      containers: [
        {
          name: 'app',
          image: s.image,
          env,
          ports: [{ name: 'http1', containerPort: 8080 }],
          ...(s.limits ? { resources: { limits: s.limits } } : {}),
        },
      ],
      maxInstanceRequestConcurrency: s.maxInstanceRequestConcurrency ?? 80,
      timeout: { seconds: '300', nanos: 0 },
      ...(s.scaling ? { scaling: s.scaling } : {}),
    });
    const op = this.createService({ parent, serviceId: s.service, service: { template, ...(s.ingress ? { ingress: s.ingress } : {}) } });
    this.settle(this.ops.get(op.name)!);
    return this.snapshot(this.services.get(`${parent}/services/${s.service}`)!);
  }

  /** The stored service (a copy), or undefined. */
  getServiceState(project: string, region: string, service: string): Msg | undefined {
    this.tick();
    const s = this.services.get(`projects/${project}/locations/${region}/services/${service}`);
    return s && this.snapshot(s);
  }

  /** Short names of the service's revisions, oldest first. */
  revisionNames(project: string, region: string, service: string): string[] {
    return [...(this.revisions.get(`projects/${project}/locations/${region}/services/${service}`)?.keys() ?? [])];
  }

  /** Percent per revision as served (trafficStatuses), LATEST resolved. */
  servedSplit(project: string, region: string, service: string): Record<string, number> {
    const s = this.getServiceState(project, region, service);
    if (!s) return {};
    const out: Record<string, number> = {};
    for (const st of s.trafficStatuses as Msg[]) {
      const rev = st.type === TYPE_LATEST ? shortName(s.latestReadyRevision) : st.revision;
      if (st.percent > 0) out[rev] = (out[rev] ?? 0) + st.percent;
    }
    return out;
  }

  // ---- gRPC plumbing -------------------------------------------------------------------------

  private bind(service: string, def: Record<string, unknown>): Record<string, (call: any, cb: Callback) => void> {
    const handlers: Record<string, Handler> = {
      GetService: (r) => this.getService(r),
      CreateService: (r) => this.createService(r),
      UpdateService: (r) => this.updateService(r),
      DeleteService: (r) => this.deleteService(r),
      ListServices: (r) => this.listServices(r),
      GetRevision: (r) => this.getRevision(r),
      ListRevisions: (r) => this.listRevisions(r),
      DeleteRevision: (r) => this.deleteRevision(r),
      GetOperation: (r) => this.getOperation(r),
      ListOperations: (r) => this.listOperations(r),
    };
    const impl: Record<string, (call: any, cb: Callback) => void> = {};
    for (const method of Object.keys(def)) {
      const handler = handlers[method];
      impl[method] = (call: { request: Msg }, cb: Callback) => {
        this.calls[method] = (this.calls[method] ?? 0) + 1;
        const fail = this.failures.get(method);
        if (fail && fail.n > 0) {
          fail.n--;
          this.failed[method] = (this.failed[method] ?? 0) + 1;
          return cb(Object.assign(new Error(fail.message), { code: fail.code, details: fail.message, metadata: new grpc.Metadata() }));
        }
        if (!handler)
          return cb(
            Object.assign(new Error(`${service}.${method} is not implemented by the rollgate Cloud Run fake`), {
              code: Code.UNIMPLEMENTED,
              details: `${service}.${method} is not implemented by the rollgate Cloud Run fake`,
              metadata: new grpc.Metadata(),
            }),
          );
        Promise.resolve()
          .then(() => {
            this.tick();
            return handler(call.request);
          })
          .then(
            (res) => cb(null, res),
            (err: Error) => {
              const code = err instanceof FakeRpcError ? err.code : Code.INTERNAL;
              cb(Object.assign(new Error(err.message), { code, details: err.message, metadata: new grpc.Metadata() }));
            },
          );
      };
    }
    return impl;
  }

  /** Operations that reached their backstop time complete even when nobody polls them. */
  private tick(): void {
    if (this.knobs.operationMaxMs <= 0) return;
    for (const op of this.ops.values()) if (!op.done && now() - op.startedMs >= this.knobs.operationMaxMs) this.settle(op);
  }

  private svc(name: string): Msg {
    parseServiceName(name);
    const s = this.services.get(name);
    if (!s) throw new FakeRpcError(Code.NOT_FOUND, `Resource '${shortName(name)}' of kind 'SERVICE' in region does not exist.`);
    return s;
  }

  private revisionInfo(serviceName: string, rev: Msg): RevisionInfo {
    const { project, region, service } = parseServiceName(serviceName);
    const c = (rev.containers as Msg[])[0] ?? {};
    const env: Record<string, string> = {};
    for (const e of (c.env as Msg[]) ?? []) if (e.value !== undefined && !e.valueSource) env[e.name] = e.value;
    return { project, region, service, revision: shortName(rev.name), image: c.image ?? '', env };
  }

  /** Deserialized requests carry proto3 defaults; keep templates in one shape for comparisons. */
  private normalizeTemplate(t: Msg): Msg {
    const { root } = protos();
    const T = root.lookupType('google.cloud.run.v2.RevisionTemplate');
    return T.toObject(T.fromObject(t), { longs: String, enums: String, defaults: true, oneofs: true, arrays: true, objects: true });
  }

  private templateContent(t: Msg): string {
    const { revision: _revision, ...rest } = t;
    return canonical(rest);
  }

  private snapshot(s: Msg): Msg {
    return clone(s);
  }

  // ---- Services -------------------------------------------------------------------------------

  private getService(r: Msg): Msg {
    return this.snapshot(this.svc(r.name));
  }

  private listServices(r: Msg): Msg {
    const prefix = `${r.parent}/services/`;
    return {
      services: [...this.services.values()].filter((s) => (s.name as string).startsWith(prefix)).map((s) => this.snapshot(s)),
      nextPageToken: '',
    };
  }

  private createService(r: Msg): Msg {
    if (!/^projects\/[^/]+\/locations\/[^/]+$/.test(r.parent ?? ''))
      throw new FakeRpcError(Code.INVALID_ARGUMENT, `invalid parent "${r.parent}"`);
    if (!DNS_LABEL.test(r.serviceId ?? '') || r.serviceId.length > 49)
      throw new FakeRpcError(Code.INVALID_ARGUMENT, `service_id "${r.serviceId}" must be a lowercase DNS label of at most 49 characters`);
    const name = `${r.parent}/services/${r.serviceId}`;
    if (this.services.has(name)) throw new FakeRpcError(Code.ALREADY_EXISTS, `Resource '${r.serviceId}' already exists.`);
    const input = r.service ?? {};
    if (!input.template?.containers?.length)
      throw new FakeRpcError(Code.INVALID_ARGUMENT, 'service.template.containers: at least one container is required');
    const { project, region } = parseServiceName(name);
    const hash = createHash('sha256').update(`${project}/${region}`).digest('hex').slice(0, 10);
    const created = now();
    const s: Msg = {
      name,
      description: input.description ?? '',
      uid: randomUUID(), // the reference documents uid as a UUID4 string
      generation: 1,
      labels: { ...(input.labels ?? {}) },
      annotations: { ...(input.annotations ?? {}) },
      createTime: ts(created),
      updateTime: ts(created),
      creator: 'rollgate-fake@example.com',
      lastModifier: 'rollgate-fake@example.com',
      ingress: input.ingress || 'INGRESS_TRAFFIC_ALL',
      launchStage: 'GA',
      template: this.normalizeTemplate(input.template),
      traffic: input.traffic?.length ? clone(input.traffic) : [{ type: TYPE_LATEST, percent: 100 }],
      urls: [`https://${r.serviceId}-${hash}.a.run.app`],
      uri: `https://${r.serviceId}-${hash}.a.run.app`,
      observedGeneration: 0,
      terminalCondition: condition('Ready', 'CONDITION_RECONCILING'),
      conditions: [],
      latestReadyRevision: '',
      latestCreatedRevision: '',
      trafficStatuses: [],
      reconciling: true,
      etag: '',
      _hash: hash,
    };
    this.revisions.set(name, new Map());
    const newRevision = this.createRevisionFromTemplate(s, s.template);
    try {
      this.validateTraffic(s, s.traffic);
    } catch (err) {
      this.revisions.delete(name);
      throw err;
    }
    this.revisions.get(name)!.get(newRevision)!._uncommitted = false;
    s.etag = `"g1-${s.uid.slice(0, 6)}"`;
    this.services.set(name, s);
    return this.startOp(s, 'create', newRevision);
  }

  private updateService(r: Msg): Msg {
    const input = r.service ?? {};
    const name = input.name as string;
    parseServiceName(name);
    if (!this.services.has(name)) {
      if (r.allowMissing) {
        const { project, region, service } = parseServiceName(name);
        return this.createService({ parent: `projects/${project}/locations/${region}`, serviceId: service, service: input });
      }
    }
    const s = this.svc(name);
    if (input.etag && input.etag !== s.etag)
      throw new FakeRpcError(
        Code.ABORTED,
        `etag ${input.etag} does not match the current etag ${s.etag}: the service changed, read it again`,
      );
    // Earlier operations on this service complete first (their generation is superseded).
    for (const op of this.ops.values()) if (!op.done && op.service === name) this.settle(op);

    const paths: string[] = r.updateMask?.paths ?? [];
    const has = (f: string) => paths.length === 0 || paths.includes(f);
    const next = clone(s);
    let newRevision: string | undefined;
    if (has('template') && input.template) {
      const template = this.normalizeTemplate(input.template);
      const rev = this.applyTemplate(next, template);
      newRevision = rev;
      next.template = template;
    }
    if (has('traffic')) next.traffic = input.traffic?.length ? clone(input.traffic) : [{ type: TYPE_LATEST, percent: 100 }];
    if (has('labels')) next.labels = { ...(input.labels ?? {}) };
    if (has('annotations')) next.annotations = { ...(input.annotations ?? {}) };
    if (has('description')) next.description = input.description ?? '';
    if (has('ingress') && input.ingress) next.ingress = input.ingress;
    try {
      this.validateTraffic(next, next.traffic);
    } catch (err) {
      if (newRevision) this.revisions.get(name)!.delete(newRevision); // the failed update creates nothing
      throw err;
    }
    if (newRevision) this.revisions.get(name)!.get(newRevision)!._uncommitted = false;
    next.generation = s.generation + 1;
    next.updateTime = ts(now());
    next.reconciling = true;
    next.terminalCondition = condition('Ready', 'CONDITION_RECONCILING', 'Deploying revision.');
    if (newRevision) next.latestCreatedRevision = `${name}/revisions/${newRevision}`;
    next.etag = `"g${next.generation}-${next.uid.slice(0, 6)}"`;
    this.services.set(name, next);
    return this.startOp(next, 'update', newRevision);
  }

  private deleteService(r: Msg): Msg {
    const s = this.svc(r.name);
    if (r.etag && r.etag !== s.etag) throw new FakeRpcError(Code.ABORTED, `etag mismatch`);
    this.services.delete(r.name);
    this.revisions.delete(r.name);
    const op = this.startOp(s, 'delete');
    return op;
  }

  /** A new template: a new revision, unless it is unchanged or names an identical existing one. */
  private applyTemplate(s: Msg, template: Msg): string | undefined {
    const revs = this.revisions.get(s.name)!;
    const wanted = template.revision as string;
    if (wanted) {
      const existing = revs.get(wanted);
      if (existing) {
        if (existing._content !== this.templateContent(template))
          throw new FakeRpcError(
            Code.ALREADY_EXISTS,
            `Revision named '${wanted}' with different configuration already exists. Use a different revision name.`,
          );
        return undefined;
      }
    } else if (this.templateContent(template) === this.templateContent(s.template)) return undefined;
    return this.createRevisionFromTemplate(s, template);
  }

  /** A revision in its first state (Ready = reconciling), uncommitted until the request validates. */
  private createRevisionFromTemplate(s: Msg, template: Msg): string {
    const { service } = parseServiceName(s.name);
    const revs = this.revisions.get(s.name)!;
    let name = template.revision as string;
    if (name) {
      if (!name.startsWith(`${service}-`) || !DNS_LABEL.test(name) || name.length > 63)
        throw new FakeRpcError(
          Code.INVALID_ARGUMENT,
          `template.revision "${name}" must start with the service name "${service}-" and be a lowercase DNS label of at most 63 characters`,
        );
    } else {
      const n = (this.revisionCounter.get(s.name) ?? 0) + 1;
      this.revisionCounter.set(s.name, n);
      name = `${service}-${String(n).padStart(5, '0')}-${randomBytes(2).toString('hex').slice(0, 3)}`;
    }
    if (revs.size >= 1000) throw new FakeRpcError(Code.FAILED_PRECONDITION, 'a service can have at most 1000 revisions');
    const created = now();
    const rev: Msg = {
      name: `${s.name}/revisions/${name}`,
      uid: randomUUID(), // the reference documents uid as a UUID4 string
      generation: '1',
      labels: { ...(template.labels ?? {}) },
      annotations: { ...(template.annotations ?? {}) },
      createTime: ts(created),
      updateTime: ts(created),
      launchStage: 'GA',
      service: s.name,
      scaling: template.scaling,
      maxInstanceRequestConcurrency: template.maxInstanceRequestConcurrency,
      timeout: template.timeout,
      serviceAccount: template.serviceAccount || '123456789-compute@developer.gserviceaccount.com',
      containers: clone(template.containers),
      volumes: clone(template.volumes ?? []),
      executionEnvironment: template.executionEnvironment,
      reconciling: true,
      conditions: [condition('Ready', 'CONDITION_RECONCILING', 'Deploying revision.')],
      observedGeneration: '1',
      logUri: `https://console.cloud.google.com/logs/viewer?resource=cloud_run_revision/revision_name/${name}`,
      creator: 'rollgate-fake@example.com',
      etag: `"r-${name}"`,
      _content: this.templateContent(template),
      _uncommitted: true,
    };
    revs.set(name, rev);
    s.latestCreatedRevision = rev.name;
    return name;
  }

  private markRevision(s: Msg, rev: Msg): boolean {
    const info = this.revisionInfo(s.name, rev);
    rev.reconciling = false;
    rev.updateTime = ts(now());
    if (this.knobs.neverReady(info)) {
      rev.conditions = [
        condition(
          'Ready',
          'CONDITION_FAILED',
          `The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable.`,
          {
            revisionReason: 'HEALTH_CHECK_CONTAINER_ERROR',
          },
        ),
      ];
      return false;
    }
    rev.conditions = [condition('Ready', 'CONDITION_SUCCEEDED'), condition('ContainerHealthy', 'CONDITION_SUCCEEDED')];
    return true;
  }

  private revisionState(rev: Msg | undefined): 'ready' | 'failed' | 'pending' {
    const ready = (rev?.conditions as Msg[] | undefined)?.find((c) => c.type === 'Ready');
    return ready?.state === 'CONDITION_SUCCEEDED' ? 'ready' : ready?.state === 'CONDITION_FAILED' ? 'failed' : 'pending';
  }

  private validateTraffic(s: Msg, traffic: Msg[]): void {
    const revs = this.revisions.get(s.name)!;
    let sum = 0;
    const tags = new Set<string>();
    for (const t of traffic) {
      const type = t.type && t.type !== 'TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED' ? t.type : t.revision ? TYPE_REVISION : '';
      if (!type) throw new FakeRpcError(Code.INVALID_ARGUMENT, 'traffic target needs a type (LATEST or REVISION with a revision name)');
      t.type = type;
      if (type === TYPE_LATEST && t.revision)
        throw new FakeRpcError(Code.INVALID_ARGUMENT, `traffic target of type LATEST must not name a revision ("${t.revision}")`);
      if (type === TYPE_REVISION) {
        const rev = revs.get(t.revision);
        if (!rev) throw new FakeRpcError(Code.INVALID_ARGUMENT, `Revision '${t.revision}' referenced in traffic not found.`);
        if ((t.percent ?? 0) > 0 && this.revisionState(rev) === 'failed')
          throw new FakeRpcError(Code.FAILED_PRECONDITION, `Revision '${t.revision}' is not ready and cannot serve traffic.`);
      }
      const p = t.percent ?? 0;
      if (!Number.isInteger(p) || p < 0 || p > 100)
        throw new FakeRpcError(Code.INVALID_ARGUMENT, `traffic percent ${p} must be an integer between 0 and 100`);
      sum += p;
      if (t.tag) {
        if (!DNS_LABEL.test(t.tag) || t.tag.length > 46) throw new FakeRpcError(Code.INVALID_ARGUMENT, `invalid traffic tag "${t.tag}"`);
        if (tags.has(t.tag)) throw new FakeRpcError(Code.INVALID_ARGUMENT, `traffic tag "${t.tag}" is used twice`);
        tags.add(t.tag);
      }
    }
    if (sum !== 100) throw new FakeRpcError(Code.INVALID_ARGUMENT, `Traffic percentages must add up to 100, got ${sum}.`);
  }

  // ---- Revisions ------------------------------------------------------------------------------

  private revisionByName(name: string): Msg {
    const { serviceName, revision } = parseRevisionName(name);
    const rev = this.revisions.get(serviceName)?.get(revision);
    if (!rev) throw new FakeRpcError(Code.NOT_FOUND, `Resource '${revision}' of kind 'REVISION' in region does not exist.`);
    return rev;
  }

  private publicRevision(rev: Msg): Msg {
    const { _content: _c, _uncommitted: _u, ...rest } = rev;
    return clone(rest);
  }

  private getRevision(r: Msg): Msg {
    return this.publicRevision(this.revisionByName(r.name));
  }

  private listRevisions(r: Msg): Msg {
    this.svc(r.parent);
    const revs = [...this.revisions.get(r.parent)!.values()].filter((x) => !x._uncommitted).reverse(); // newest first
    return { revisions: revs.map((x) => this.publicRevision(x)), nextPageToken: '' };
  }

  private deleteRevision(r: Msg): Msg {
    const rev = this.revisionByName(r.name);
    const { serviceName, revision } = parseRevisionName(r.name);
    const s = this.services.get(serviceName)!;
    const referenced = [...(s.traffic as Msg[]), ...(s.trafficStatuses as Msg[])].some((t) => t.revision === revision);
    const latest = s.latestReadyRevision === rev.name && (s.traffic as Msg[]).some((t) => t.type === TYPE_LATEST);
    if (referenced || latest)
      throw new FakeRpcError(
        Code.FAILED_PRECONDITION,
        `Revision '${revision}' is referenced by the traffic of service '${shortName(serviceName)}'.`,
      );
    this.revisions.get(serviceName)!.delete(revision);
    return this.startOp(s, 'delete-revision', undefined, this.publicRevision(rev));
  }

  // ---- Operations -----------------------------------------------------------------------------

  /** An operation on `s`; `revision` is the result (and metadata) of a DeleteRevision. */
  private startOp(s: Msg, kind: PendingOp['kind'], newRevision?: string, revision?: Msg): Msg {
    const { project, region } = parseServiceName(s.name);
    const op: PendingOp = {
      name: `projects/${project}/locations/${region}/operations/${randomBytes(16).toString('hex')}`,
      service: s.name,
      kind,
      newRevision,
      polls: 0,
      startedMs: now(),
      done: false,
      resultType: revision ? 'google.cloud.run.v2.Revision' : 'google.cloud.run.v2.Service',
      result: revision,
    };
    this.ops.set(op.name, op);
    if (this.knobs.operationPolls <= 0 || kind === 'delete' || kind === 'delete-revision') this.settle(op);
    return this.opMessage(op);
  }

  /** The operation completes: the service's status catches up with its spec (or the revision fails). */
  private settle(op: PendingOp): void {
    if (op.done) return;
    op.done = true;
    if (op.kind === 'delete' || op.kind === 'delete-revision') {
      op.result ??= { name: op.service };
      return;
    }
    const s = this.services.get(op.service);
    if (!s) {
      op.error = { code: Code.NOT_FOUND, message: `service ${op.service} was deleted` };
      return;
    }
    const revs = this.revisions.get(s.name)!;
    let failed: string | undefined;
    if (op.newRevision) {
      const rev = revs.get(op.newRevision);
      if (rev && this.revisionState(rev) === 'pending') {
        if (this.markRevision(s, rev)) s.latestReadyRevision = rev.name;
        else failed = op.newRevision;
      } else if (rev && this.revisionState(rev) === 'ready') s.latestReadyRevision = rev.name;
      else if (rev) failed = op.newRevision;
    }
    s.reconciling = false;
    if (failed) {
      // Documented under Service.reconciling: a failed reconciliation leaves trafficStatuses,
      // observedGeneration and latestReadyRevision at the last serving state.
      const message = `Revision '${failed}' is not ready and cannot serve traffic. The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable.`;
      s.terminalCondition = condition('Ready', 'CONDITION_FAILED', message, { revisionReason: 'HEALTH_CHECK_CONTAINER_ERROR' });
      s.conditions = [condition('ConfigurationsReady', 'CONDITION_FAILED', message)];
      op.error = { code: Code.FAILED_PRECONDITION, message };
      // Traffic stays as it was served before this update.
      return;
    }
    const unready = (s.traffic as Msg[]).find(
      (t) => t.type === TYPE_REVISION && t.percent > 0 && this.revisionState(revs.get(t.revision)) !== 'ready',
    );
    if (unready) {
      const message = `Revision '${unready.revision}' is not ready and cannot serve traffic.`;
      s.terminalCondition = condition('Ready', 'CONDITION_FAILED', message);
      op.error = { code: Code.FAILED_PRECONDITION, message };
      return;
    }
    s.observedGeneration = s.generation;
    const { service } = parseServiceName(s.name);
    s.trafficStatuses = (s.traffic as Msg[]).map((t) => ({
      type: t.type,
      revision: t.type === TYPE_REVISION ? t.revision : '',
      percent: t.percent ?? 0,
      tag: t.tag ?? '',
      uri: t.tag ? `https://${t.tag}---${service}-${s._hash}.a.run.app` : '',
    }));
    s.terminalCondition = condition('Ready', 'CONDITION_SUCCEEDED');
    s.conditions = [condition('RoutesReady', 'CONDITION_SUCCEEDED'), condition('ConfigurationsReady', 'CONDITION_SUCCEEDED')];
    op.result = this.snapshot(s);
  }

  private any(type: string, value: Msg): Msg {
    const T = protos().root.lookupType(type);
    const clean = clone(value);
    delete clean._hash;
    // `type_url`, as google.protobuf.Any spells it in the shipped protos: a `typeUrl` key is
    // dropped by the serializer and the client would receive an Any without a type.
    return { type_url: `type.googleapis.com/${type}`, value: Buffer.from(T.encode(T.fromObject(clean)).finish()) };
  }

  private opMessage(op: PendingOp): Msg {
    const s = this.services.get(op.service);
    const msg: Msg = { name: op.name, done: op.done };
    // Metadata has the operation's metadata_type: the Service, or the Revision for DeleteRevision.
    if (op.resultType === 'google.cloud.run.v2.Revision') msg.metadata = this.any(op.resultType, op.result ?? {});
    else if (s) msg.metadata = this.any(op.resultType, this.snapshot(s));
    if (op.done && op.error) msg.error = { code: op.error.code, message: op.error.message, details: [] };
    else if (op.done) msg.response = this.any(op.resultType, op.result ?? {});
    return msg;
  }

  private getOperation(r: Msg): Msg {
    const op = this.ops.get(r.name);
    if (!op) throw new FakeRpcError(Code.NOT_FOUND, `operation ${r.name} not found`);
    op.polls++;
    if (!op.done && op.polls >= this.knobs.operationPolls) this.settle(op);
    return this.opMessage(op);
  }

  private listOperations(r: Msg): Msg {
    const prefix = `${r.name}/operations/`;
    return { operations: [...this.ops.values()].filter((o) => o.name.startsWith(prefix)).map((o) => this.opMessage(o)), nextPageToken: '' };
  }

  // ---- probes over HTTP -----------------------------------------------------------------------

  private serveProbe(url: string, res: import('node:http').ServerResponse): void {
    this.tick();
    const m = /^\/host\/([^/?]+)(\/[^?]*)?/.exec(url);
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!m) return reply(404, { error: 'use /host/<tag url host>/<path>' });
    const host = m[1];
    for (const s of this.services.values()) {
      const st = (s.trafficStatuses as Msg[]).find((t) => t.uri && new URL(t.uri).host === host);
      if (!st) continue;
      const revName = st.type === TYPE_LATEST ? shortName(s.latestReadyRevision) : st.revision;
      const rev = this.revisions.get(s.name)!.get(revName);
      if (!rev || this.revisionState(rev) !== 'ready') return reply(503, { error: `revision ${revName} is not serving` });
      const info = this.revisionInfo(s.name, rev);
      if (this.knobs.unhealthy(info)) return reply(500, { error: 'internal error', revision: revName });
      return reply(200, { ok: true, service: info.service, revision: revName, release: info.env.RELEASE_ID ?? null, path: m[2] ?? '/' });
    }
    return reply(404, { error: `no tag URL ${host}` });
  }
}
