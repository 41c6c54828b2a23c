/**
 * AWS Lambda traffic router: a weighted alias (RoutingConfig.AdditionalVersionWeights).
 *
 * Lambda's own rules are enforced here because moto does not check them: an alias routes to at
 * most two published versions (never $LATEST), the extra weight is a fraction in (0, 1).
 * Idempotency: a new version is found again by its RELEASE_ID + CodeSha256 before anything is
 * published, and alias updates are skipped when the alias already has the wanted state.
 */
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import {
  GetAliasCommand,
  GetFunctionCommand,
  GetFunctionConcurrencyCommand,
  GetFunctionConfigurationCommand,
  InvokeCommand,
  LambdaClient,
  ListVersionsByFunctionCommand,
  PublishVersionCommand,
  TagResourceCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand,
  waitForFunctionUpdatedV2,
  type AliasConfiguration,
  type FunctionConfiguration,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from '@aws-sdk/client-lambda';
import type { FinalizeRequestMiddleware } from '@smithy/types';
import type { LambdaTargetSpec, ProbeSpec } from '../spec/schema';
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
import { lambdaLayerName, lambdaSecretRef, type ParityConfig } from './parity';
import { checkFence, withFenceMark } from './fence';
import { CancelledFailure } from '@temporalio/common';
import { LateAttempt, callDeadline, cancellationSignal, stopIfCancelled, stopIfCancelledOrLate } from './cancellation';
import { bodyExcerpt, secrets } from '../security/redact';
import { isReleaseContractKey } from '../contract/release';

export interface LambdaProviderOptions {
  /** Overrides AWS_ENDPOINT_URL_LAMBDA (tests point this at moto or the fault proxy). */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  maxAttempts?: number;
  /** How long to wait for "update in progress" to clear (ms; default 100 s: a deploy waits twice, within the activity's 5 minutes). */
  updateWaitMs?: number;
  /** Downloads a version's code for restoreLatest (default: HTTP GET of its Code.Location; moto's is not downloadable). */
  fetchCode?: CodeFetcher;
  /** Deadline of one restoreLatest (ms; default 240 s, never past the running attempt's own timeout). */
  restoreTimeoutMs?: number;
}

/** What restoreLatest asks a CodeFetcher for: the zip behind a version's Code.Location. */
export interface CodeFetchRequest {
  /** The version's Code.Location (a presigned URL: never log it). */
  location: string;
  /** The version's CodeSha256 (base64); the provider checks the answer against it. */
  codeSha256: string;
  /** Answers longer than this are wrong (the version's CodeSize). */
  maxBytes: number;
  /** Aborted on activity cancellation and at the deadline. */
  signal: AbortSignal;
}

export type CodeFetcher = (req: CodeFetchRequest) => Promise<Uint8Array>;

/** Largest zip UpdateFunctionCode takes inline (ZipFile). */
const MAX_INLINE_ZIP_BYTES = 50 * 1024 * 1024;
const RESTORE_TIMEOUT_MS = 240_000;

const NON_RETRYABLE = new Set([
  'ResourceNotFoundException',
  'InvalidParameterValueException',
  'AccessDeniedException',
  'UnrecognizedClientException',
  'CodeStorageExceededException',
  'RequestTooLargeException',
]);

export function lambdaWeightFraction(percent: number): number {
  if (!(percent > 0 && percent < 100))
    throw new NonRetryableProviderError(`weight ${percent}% must be between 0 and 100 exclusive for a weighted alias`, 'InvalidWeight');
  return Math.round(percent * 100) / 10_000; // 0.01 % resolution
}

type LambdaMiddleware = FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes>;

/** The calls that change a function or its traffic: the ones the attempt guard holds back. */
const WRITE_COMMANDS = new Set([
  'UpdateAliasCommand',
  'UpdateFunctionConfigurationCommand',
  'UpdateFunctionCodeCommand',
  'PublishVersionCommand',
  'TagResourceCommand',
]);

export class LambdaProvider implements TargetProvider<LambdaTargetSpec> {
  readonly kind = 'aws-lambda' as const;
  private readonly clients = new Map<string, LambdaClient>();

  constructor(private readonly opts: LambdaProviderOptions = {}) {}

  private client(region: string): LambdaClient {
    let c = this.clients.get(region);
    if (!c) {
      c = new LambdaClient({
        region,
        endpoint: this.opts.endpoint,
        credentials: this.opts.credentials,
        maxAttempts: this.opts.maxAttempts ?? 5,
      });
      // Inside the SDK's retry loop: checked before each of its attempts at a write, not only
      // before our first. Resolved per call, so `lastAnswer` is this call's previous attempt.
      const guard: LambdaMiddleware = (next, context) => {
        let lastAnswer: unknown;
        return async (args) => {
          if (WRITE_COMMANDS.has(context.commandName ?? '')) stopIfCancelledOrLate(`${context.commandName} (lambda ${region})`, lastAnswer);
          try {
            return await next(args);
          } catch (err) {
            lastAnswer = err;
            throw err;
          }
        };
      };
      c.middlewareStack.addRelativeTo(guard, { name: 'rollgateAttemptGuard', relation: 'after', toMiddleware: 'retryMiddleware' });
      this.clients.set(region, c);
    }
    return c;
  }

  async readTraffic(t: LambdaTargetSpec): Promise<TrafficState> {
    const alias = await this.getAlias(t);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    const [extra] = Object.entries(weights);
    return {
      stableVersion: alias.FunctionVersion!,
      newVersion: extra?.[0],
      newWeight: extra ? percentOfWeight(extra[1]) : 0,
    };
  }

  async deployRevision(t: LambdaTargetSpec, artifact: ArtifactRef, contract: ReleaseContract, rolloutId: string): Promise<DeployResult> {
    // The zip: a local file (checked against its digest here), or an S3 object of the shared
    // artifact store in the function's region (Lambda reads it; its CodeSha256 is checked below).
    const s3 = !artifact.path && artifact.location ? /^s3:\/\/([^/]+)\/(.+)$/.exec(artifact.location) : null;
    if (!artifact.path && !s3)
      throw new NonRetryableProviderError('aws-lambda needs a zip artifact (artifact.build or artifact.file)', 'NoZip');
    const codeSha = Buffer.from(artifact.digest, 'hex').toString('base64');
    const existing = await this.findReleaseVersion(t, contract.RELEASE_ID, codeSha);
    if (existing) return { newVersion: existing, created: false };

    let code: { ZipFile: Uint8Array } | { S3Bucket: string; S3Key: string };
    if (s3) code = { S3Bucket: s3[1], S3Key: s3[2] };
    else {
      const zip = await readFile(artifact.path!);
      const actual = createHash('sha256').update(zip).digest('hex');
      if (actual !== artifact.digest)
        throw new NonRetryableProviderError(
          `artifact ${artifact.path} changed since build: sha256 ${actual} != recorded ${artifact.digest}`,
          'ArtifactChanged',
        );
      code = { ZipFile: zip };
    }

    const c = this.client(t.region);
    const latest = await this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function })));
    const env: Record<string, string> = { ...(latest.Environment?.Variables ?? {}) };
    env.RELEASE_ID = contract.RELEASE_ID;
    env.SCHEMA_REV = contract.SCHEMA_REV;
    if (contract.INDEX_HASH) env.INDEX_HASH = contract.INDEX_HASH;
    else delete env.INDEX_HASH;

    stopIfCancelled('UpdateFunctionConfiguration');
    await this.withUpdateRetry(t, () =>
      c.send(new UpdateFunctionConfigurationCommand({ FunctionName: t.function, Environment: { Variables: env } })),
    );
    await this.waitUpdated(t);
    stopIfCancelled('UpdateFunctionCode');
    const updated = await this.withUpdateRetry(t, () => c.send(new UpdateFunctionCodeCommand({ FunctionName: t.function, ...code })));
    if (s3 && updated.CodeSha256 !== codeSha)
      throw new NonRetryableProviderError(
        `artifact ${artifact.location} is not the recorded build: Lambda read CodeSha256 ${updated.CodeSha256}, recorded sha256 ${artifact.digest}`,
        'ArtifactChanged',
      );
    await this.waitUpdated(t);
    stopIfCancelled('PublishVersion');
    const published = await this.withUpdateRetry(t, () =>
      c.send(
        new PublishVersionCommand({
          FunctionName: t.function,
          CodeSha256: codeSha,
          Description: `rollgate ${contract.RELEASE_ID} (${rolloutId})`.slice(0, 256),
        }),
      ),
    );
    const version = published.Version!;
    if (version === '$LATEST') throw new NonRetryableProviderError('PublishVersion returned $LATEST', 'BadVersion');
    return { newVersion: version, created: true };
  }

  /** A published version that already carries this release and code (an earlier attempt made it). */
  private async findReleaseVersion(t: LambdaTargetSpec, release: string, codeSha: string): Promise<string | undefined> {
    const c = this.client(t.region);
    let marker: string | undefined;
    const found: FunctionConfiguration[] = [];
    do {
      const page = await this.call(t, () => c.send(new ListVersionsByFunctionCommand({ FunctionName: t.function, Marker: marker })));
      for (const v of page.Versions ?? [])
        if (v.Version !== '$LATEST' && v.CodeSha256 === codeSha && v.Environment?.Variables?.RELEASE_ID === release) found.push(v);
      marker = page.NextMarker;
    } while (marker);
    found.sort((a, b) => Number(a.Version) - Number(b.Version));
    return found[0]?.Version;
  }

  async fingerprint(t: LambdaTargetSpec, version: string, salt: string): Promise<EnvFingerprint> {
    const c = this.client(t.region);
    const cfg = await this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function, Qualifier: version })));
    const vars = cfg.Environment?.Variables ?? {};
    const values: Record<string, string> = {};
    const contract: Partial<ReleaseContract> = {};
    for (const [k, v] of Object.entries(vars)) {
      values[k] = saltedHash(salt, k, v);
      if (isReleaseContractKey(k)) (contract as Record<string, string>)[k] = v;
    }
    return { values, secretRefs: {}, contract };
  }

  /**
   * Parity (src/providers/parity.ts): what the published `version` runs with. Left out by design:
   * ARNs, region, role, code. Layers by name:version, VPC by shape (subnet and security group ids
   * are per region), reserved concurrency is the function's (Lambda has none per version).
   */
  async readParityConfig(t: LambdaTargetSpec, version: string, salt: string): Promise<ParityConfig> {
    const c = this.client(t.region);
    const [cfg, concurrency] = await Promise.all([
      this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function, Qualifier: version }))),
      this.call(t, () => c.send(new GetFunctionConcurrencyCommand({ FunctionName: t.function }))),
    ]);
    const vpc = cfg.VpcConfig;
    const attached = (vpc?.SubnetIds?.length ?? 0) > 0;
    const settings: Record<string, string> = {
      runtime: cfg.Runtime ?? (cfg.PackageType === 'Image' ? 'image' : 'none'),
      architecture: (cfg.Architectures ?? ['x86_64']).join(','),
      memory: String(cfg.MemorySize ?? 128),
      timeout: String(cfg.Timeout ?? 3),
      layers: (cfg.Layers ?? []).map((l) => lambdaLayerName(l.Arn ?? '')).join(', ') || 'none',
      'reserved concurrency':
        concurrency.ReservedConcurrentExecutions === undefined ? 'none' : String(concurrency.ReservedConcurrentExecutions),
      vpc: attached ? `${vpc!.SubnetIds!.length} subnet(s), ${vpc!.SecurityGroupIds?.length ?? 0} security group(s)` : 'none',
    };
    const env: Record<string, string> = {};
    const secretRefs: Record<string, string> = {};
    for (const [k, v] of Object.entries(cfg.Environment?.Variables ?? {})) {
      if (isReleaseContractKey(k)) continue;
      const ref = lambdaSecretRef(v);
      if (ref) secretRefs[k] = ref;
      else env[k] = saltedHash(salt, k, v);
    }
    return { provider: 'aws-lambda', settings, env, secretRefs };
  }

  async setTraffic(
    t: LambdaTargetSpec,
    stable: string,
    next: string,
    percent: number,
    opts: { fence?: TrafficFence } = {},
  ): Promise<{ changed: boolean }> {
    if (percent >= 100) return this.routeAll(t, next, opts);
    if (percent <= 0) return this.routeAll(t, stable, opts);
    for (const v of [stable, next])
      if (!/^\d+$/.test(v)) throw new NonRetryableProviderError(`a weighted alias needs published versions, got "${v}"`, 'InvalidVersion');
    if (stable === next) throw new NonRetryableProviderError('stable and new version are the same', 'InvalidVersion');
    const weight = lambdaWeightFraction(percent);
    const alias = await this.getAlias(t);
    checkFence(t.name, `${next} at ${percent} %`, alias.Description, opts.fence);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    const keys = Object.keys(weights);
    if (alias.FunctionVersion === stable && keys.length === 1 && keys[0] === next && Math.abs(weights[next] - weight) < 1e-9)
      return { changed: false };
    await this.updateAlias(t, alias, stable, { [next]: weight });
    return { changed: true };
  }

  /**
   * 100 % on `version`. A revert leaves the fence's mark in the alias description (after whatever
   * description it had); a forward write (promote) is refused past such a mark of its pass.
   */
  async routeAll(
    t: LambdaTargetSpec,
    version: string,
    opts: { dropTag?: boolean; fence?: TrafficFence; revert?: boolean } = {},
  ): Promise<{ changed: boolean }> {
    if (!/^\d+$/.test(version))
      throw new NonRetryableProviderError(`alias must point at a published version, got "${version}"`, 'InvalidVersion');
    const alias = await this.getAlias(t);
    const description = opts.revert && opts.fence ? withFenceMark(alias.Description, opts.fence) : undefined;
    if (!opts.revert) checkFence(t.name, `100 % on ${version}`, alias.Description, opts.fence);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    const marked = description === undefined || description === alias.Description;
    if (alias.FunctionVersion === version && Object.keys(weights).length === 0 && marked) return { changed: false };
    await this.updateAlias(t, alias, version, {}, description);
    return { changed: true };
  }

  /**
   * Put $LATEST back on what published `version` runs: its code and the configuration that
   * deployRevision changes (the environment). A rollback moves only the alias; without this the
   * unqualified function and the next deploy's baseline would keep the rolled-back release.
   * Idempotent: no write when $LATEST already matches; a part that matches (code or environment)
   * is not written. The version's code is downloaded from its Code.Location and checked against its
   * CodeSha256 before it is uploaded. Errors name the function, the step and a reason code only:
   * SDK messages and waiter results may carry the environment's values.
   */
  async restoreLatest(t: LambdaTargetSpec, version: string): Promise<{ changed: boolean }> {
    const step = { name: 'read' };
    try {
      if (!/^\d+$/.test(version)) throw new RestoreFailure('InvalidVersion', true);
      return await this.restoreLatestSteps(t, version, callDeadline(this.opts.restoreTimeoutMs ?? RESTORE_TIMEOUT_MS), step);
    } catch (err) {
      throw restoreError(t, version, step.name, err);
    }
  }

  private async restoreLatestSteps(t: LambdaTargetSpec, version: string, deadline: number, step: { name: string }) {
    const c = this.client(t.region);
    const [source, latest] = await Promise.all([
      this.call(t, () => c.send(new GetFunctionCommand({ FunctionName: t.function, Qualifier: version }))),
      this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function }))),
    ]);
    const cfg = source.Configuration;
    if (!cfg?.CodeSha256) throw new RestoreFailure('NoCodeSha256', true);
    if (cfg.PackageType === 'Image') throw new RestoreFailure('ImagePackageUnsupported', true);
    if (cfg.Environment?.Error) throw new RestoreFailure('VersionEnvironmentUnreadable', true);
    const env = cfg.Environment?.Variables ?? {};
    const codeSame = latest.CodeSha256 === cfg.CodeSha256;
    if (codeSame && sameEnv(latest.Environment?.Variables ?? {}, env)) return { changed: false };

    let revisionId = latest.RevisionId;
    if (!codeSame) {
      step.name = 'download';
      const zip = await this.downloadCode(source.Code?.Location, cfg.CodeSha256, cfg.CodeSize, deadline);
      step.name = 'UpdateFunctionCode';
      stopIfCancelled('UpdateFunctionCode');
      const updated = await this.withUpdateRetry(
        t,
        () => c.send(new UpdateFunctionCodeCommand({ FunctionName: t.function, ZipFile: zip, RevisionId: revisionId })),
        deadline,
      );
      if (updated.CodeSha256 !== cfg.CodeSha256) throw new RestoreFailure('CodeSha256MismatchAfterUpdate', true);
      step.name = 'wait after UpdateFunctionCode';
      await this.waitUpdated(t, deadline);
      step.name = 'read';
      const now = await this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function })));
      if (now.CodeSha256 !== cfg.CodeSha256) throw new RestoreFailure('LatestChangedWhileRestoring', false);
      if (sameEnv(now.Environment?.Variables ?? {}, env)) return { changed: true };
      revisionId = now.RevisionId;
    }
    step.name = 'UpdateFunctionConfiguration';
    stopIfCancelled('UpdateFunctionConfiguration');
    await this.withUpdateRetry(
      t,
      () =>
        c.send(
          new UpdateFunctionConfigurationCommand({ FunctionName: t.function, Environment: { Variables: env }, RevisionId: revisionId }),
        ),
      deadline,
    );
    step.name = 'wait after UpdateFunctionConfiguration';
    await this.waitUpdated(t, deadline);
    return { changed: true };
  }

  /** The version's zip from its Code.Location, bounded by the deadline and cancellation, checked against its CodeSha256. */
  private async downloadCode(location: string | undefined, codeSha256: string, codeSize: number | undefined, deadline: number) {
    if (!location) throw new RestoreFailure('NoCodeLocation', true);
    if ((codeSize ?? 0) > MAX_INLINE_ZIP_BYTES) throw new RestoreFailure('CodeTooLargeForInlineUpload', true);
    const left = deadline - Date.now();
    if (left <= 0) throw new RestoreFailure('DeadlinePassed', false);
    const cancel = cancellationSignal();
    const signal = cancel ? AbortSignal.any([cancel, AbortSignal.timeout(left)]) : AbortSignal.timeout(left);
    const fetchCode = this.opts.fetchCode ?? fetchCodeLocation;
    const zip = await fetchCode({ location, codeSha256, maxBytes: codeSize ?? MAX_INLINE_ZIP_BYTES, signal });
    if (createHash('sha256').update(zip).digest('base64') !== codeSha256) throw new RestoreFailure('CodeSha256Mismatch', true);
    return zip;
  }

  async probe(t: LambdaTargetSpec, version: string, probe: ProbeSpec): Promise<ProbeResult> {
    const c = this.client(t.region);
    const started = Date.now();
    try {
      const res = await c.send(
        new InvokeCommand({
          FunctionName: t.function,
          Qualifier: version,
          Payload: Buffer.from(JSON.stringify(probe.payload ?? {})),
        }),
        { abortSignal: AbortSignal.timeout(mustDurationMs(probe.timeout)) },
      );
      const body = res.Payload ? Buffer.from(res.Payload).toString('utf8') : '';
      const latencyMs = Date.now() - started;
      if (res.FunctionError)
        return { probe: probe.name, ok: false, detail: `function error ${res.FunctionError}: ${bodyExcerpt(body)}`, latencyMs };
      if (res.StatusCode !== 200) return { probe: probe.name, ok: false, detail: `status ${res.StatusCode}`, latencyMs };
      if (probe.expect_contains && !body.includes(probe.expect_contains))
        return { probe: probe.name, ok: false, detail: `response does not contain "${probe.expect_contains}"`, latencyMs };
      return { probe: probe.name, ok: true, detail: `status 200 in ${latencyMs} ms`, latencyMs };
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

  async recordRelease(t: LambdaTargetSpec, version: string, release: string, digest: string): Promise<void> {
    const c = this.client(t.region);
    const cfg = await this.call(t, () => c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function })));
    const arn = cfg.FunctionArn!.replace(/:\$LATEST$/, '');
    await this.call(t, () =>
      c.send(
        new TagResourceCommand({
          Resource: arn,
          Tags: { 'rollgate:release': release, 'rollgate:version': version, 'rollgate:digest': digest.slice(0, 64) },
        }),
      ),
    );
  }

  private async getAlias(t: LambdaTargetSpec): Promise<AliasConfiguration> {
    const c = this.client(t.region);
    return this.call(t, () => c.send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias })));
  }

  /** UpdateAlias conditional on the RevisionId read with `current` (AWS refuses it if the alias changed since). */
  private async updateAlias(
    t: LambdaTargetSpec,
    current: AliasConfiguration,
    version: string,
    weights: Record<string, number>,
    description?: string,
  ) {
    const extra = Object.keys(weights);
    if (extra.length > 1) throw new NonRetryableProviderError('a Lambda alias routes to at most one additional version', 'InvalidRouting');
    for (const [v, w] of Object.entries(weights)) {
      if (v === version) throw new NonRetryableProviderError('additional version equals the primary version', 'InvalidRouting');
      if (!(w > 0 && w < 1)) throw new NonRetryableProviderError(`additional weight ${w} must be in (0, 1)`, 'InvalidRouting');
    }
    const c = this.client(t.region);
    stopIfCancelled('UpdateAlias');
    await this.withUpdateRetry(t, () =>
      c.send(
        new UpdateAliasCommand({
          FunctionName: t.function,
          Name: t.alias,
          FunctionVersion: version,
          RoutingConfig: { AdditionalVersionWeights: weights },
          RevisionId: current.RevisionId,
          ...(description !== undefined ? { Description: description } : {}),
        }),
      ),
    );
  }

  /** Until the last update is done: at most updateWaitMs, and never past `deadline` (epoch ms) when one is given. */
  private async waitUpdated(t: LambdaTargetSpec, deadline?: number): Promise<void> {
    let maxWaitTime = Math.ceil((this.opts.updateWaitMs ?? 100_000) / 1000);
    if (deadline !== undefined) maxWaitTime = Math.min(maxWaitTime, Math.floor((deadline - Date.now()) / 1000));
    if (maxWaitTime < 2)
      throw Object.assign(new Error(`deadline reached before waiting for lambda ${t.region}/${t.function}`), { name: 'TimeoutError' });
    // Not waitUntilFunctionUpdatedV2: its error is the JSON of the last GetFunction answer, with
    // the environment's values and the presigned Code.Location. The outcome is read here instead.
    const result = await waitForFunctionUpdatedV2(
      {
        client: this.client(t.region),
        maxWaitTime,
        minDelay: 1,
        maxDelay: 5,
        abortSignal: cancellationSignal(), // the wait ends with the activity
      },
      { FunctionName: t.function },
    );
    if (result.state === 'SUCCESS') return;
    const where = `${t.name}: lambda ${t.region}/${t.function}`;
    if (result.state === 'ABORTED') throw new CancelledFailure(`${where}: wait for the update cancelled`);
    if (result.state === 'TIMEOUT')
      throw Object.assign(new Error(`${where}: update still in progress after ${maxWaitTime} s`), { name: 'TimeoutError' });
    const cfg = (result.reason as { Configuration?: FunctionConfiguration } | undefined)?.Configuration;
    const status = token(cfg?.LastUpdateStatus ?? result.state, 24);
    const code = cfg?.LastUpdateStatusReasonCode ? `, reason code ${token(cfg.LastUpdateStatusReasonCode, 64)}` : '';
    throw Object.assign(new Error(`${where}: the function update did not complete: LastUpdateStatus ${status}${code}`), {
      name: 'LastUpdateStatusFailed',
    });
  }

  /**
   * "Update in progress" (ResourceConflictException) is not retried by the SDK: wait until the
   * function is updated, then try again. A stale RevisionId (PreconditionFailedException) is
   * surfaced as retryable so the activity re-reads the alias and re-decides.
   */
  private async withUpdateRetry<R>(t: LambdaTargetSpec, fn: () => Promise<R>, deadline?: number): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(t, fn);
      } catch (err) {
        if ((err as Error).name === 'ResourceConflictException' && attempt < 5) {
          await this.waitUpdated(t, deadline);
          stopIfCancelled('retrying the write'); // a cancelled step never sends another write
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * One SDK call. Its errors get a fixed message (target, error name, a fixed reason, HTTP
   * status), never the service's message: Lambda quotes the environment in some (an oversized
   * Environment is refused with its values). The error keeps its name and $metadata.
   */
  private async call<R>(t: LambdaTargetSpec, fn: () => Promise<R>): Promise<R> {
    try {
      const out = await fn();
      rememberEnvSecrets(out);
      return out;
    } catch (err) {
      throw lambdaError(t, err);
    }
  }
}

const LAMBDA_REASONS: Record<string, string> = {
  ResourceNotFoundException: 'no such function, alias or version',
  InvalidParameterValueException: 'Lambda refused a parameter',
  AccessDeniedException: "the worker's credentials may not do this",
  UnrecognizedClientException: 'the credentials are not recognized',
  CodeStorageExceededException: "the account's code storage is full",
  RequestTooLargeException: 'the request is too large',
  TooManyRequestsException: 'throttled',
  ResourceConflictException: 'an update is in progress',
  PreconditionFailedException: 'changed since it was read (RevisionId)',
  ServiceException: 'Lambda service error',
};

function lambdaError(t: LambdaTargetSpec, err: unknown): unknown {
  const e = err as Error & { $metadata?: { httpStatusCode?: number }; $fault?: string };
  // Only service answers carry service text; network errors and cancellations pass unchanged
  // (the SDK's retry loop adds $metadata to a cancellation the attempt guard threw).
  if (err instanceof CancelledFailure) return err;
  // A write held back past the deadline: the failure names what kept failing, not the stop.
  if (err instanceof LateAttempt) {
    if (err.lastAnswer) return lambdaError(t, err.lastAnswer);
    return err.earlierError ? new Error(err.earlierError) : err;
  }
  if (!e || typeof e !== 'object' || (!e.$metadata && !e.$fault)) return err;
  const name = token(e.name, 64) || 'Unknown';
  const status = e.$metadata?.httpStatusCode;
  // The one part of a service message worth keeping, as an identifier only: the denied action.
  const action = name === 'AccessDeniedException' ? /\blambda:[A-Za-z]{1,64}\b/.exec(String(e.message ?? ''))?.[0] : undefined;
  const reason = [LAMBDA_REASONS[name], action, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
  const message = `${t.name}: ${name}: ${reason || 'error'} (lambda ${t.region}/${t.function})`;
  if (NON_RETRYABLE.has(name)) return new NonRetryableProviderError(message, name);
  return Object.assign(new Error(message), { name, $metadata: e.$metadata, $fault: e.$fault });
}

/**
 * Environment values a Lambda answer carries may be secrets the redactor must know (src/security):
 * they must not come back out in any message, log line, alert or status. Contract keys are not.
 */
function rememberEnvSecrets(out: unknown): void {
  const configs: (FunctionConfiguration | undefined)[] = [];
  const o = out as { Environment?: unknown; Configuration?: FunctionConfiguration; Versions?: FunctionConfiguration[] } | undefined;
  if (!o || typeof o !== 'object') return;
  if (o.Environment) configs.push(o as FunctionConfiguration);
  if (o.Configuration) configs.push(o.Configuration);
  if (Array.isArray(o.Versions)) configs.push(...o.Versions);
  for (const c of configs)
    for (const [k, v] of Object.entries(c?.Environment?.Variables ?? {})) if (!isReleaseContractKey(k)) secrets.addEnvValue(k, v);
}

/** Same keys, same values (order does not matter). */
function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && a[k] === b[k]);
}

/** A restoreLatest failure with a fixed reason code; `detail` is bounded and never carries response text. */
class RestoreFailure extends Error {
  constructor(
    readonly code: string,
    readonly permanent: boolean,
    readonly detail?: string,
  ) {
    super(code);
    this.name = code;
  }
}

const RESTORE_REASONS: Record<string, string> = {
  InvalidVersion: 'not a published version',
  NoCodeSha256: 'the version has no CodeSha256',
  ImagePackageUnsupported: 'container-image functions are not restored',
  VersionEnvironmentUnreadable: "the version's environment cannot be read",
  NoCodeLocation: 'the version has no Code.Location',
  CodeTooLargeForInlineUpload: "the version's zip is over the 50 MB inline upload limit",
  CodeDownloadFailed: "the version's code could not be downloaded",
  CodeSizeMismatch: "the downloaded code is larger than the version's CodeSize",
  CodeSha256Mismatch: "the downloaded code is not the version's: its sha256 differs from the version's CodeSha256",
  CodeSha256MismatchAfterUpdate: "Lambda reports another CodeSha256 than the version's after the upload",
  LatestChangedWhileRestoring: '$LATEST changed while it was being restored',
  DeadlinePassed: 'the deadline passed',
  LastUpdateStatusFailed: 'the function update failed',
  ResourceNotFoundException: 'no such function or version',
  PreconditionFailedException: '$LATEST changed since it was read; a retry re-reads it',
};

/** Identifiers only (error names, codes): anything else becomes "?". */
function token(s: unknown, max: number): string {
  return String(s ?? '')
    .slice(0, max)
    .replace(/[^A-Za-z0-9$._-]/g, '?');
}

/**
 * restoreLatest's error: a fixed message naming the target, the step and a reason code, never an
 * SDK message or a waiter result (they can quote the environment). Cancellation stays cancellation.
 */
function restoreError(t: LambdaTargetSpec, version: string, step: string, err: unknown): Error {
  if (err instanceof CancelledFailure) return err;
  if (cancellationSignal()?.aborted) return new CancelledFailure(`cancelled during ${step}`);
  let code: string;
  let permanent = false;
  let detail: string | undefined;
  if (err instanceof RestoreFailure) ({ code, permanent, detail } = err);
  else if (err instanceof NonRetryableProviderError) [code, permanent] = [token(err.code, 64), true];
  else {
    const e = err as (Error & { $metadata?: { httpStatusCode?: number } }) | undefined;
    code = !e?.name || e.name === 'Error' ? (step.startsWith('wait') ? 'LastUpdateStatusFailed' : 'Unknown') : token(e.name, 64);
    if (typeof e?.$metadata?.httpStatusCode === 'number') detail = `HTTP ${e.$metadata.httpStatusCode}`;
  }
  const reason = [RESTORE_REASONS[code], detail].filter(Boolean).join(', ');
  const message = `${t.name}: restoring $LATEST of lambda ${t.region}/${t.function} to version ${token(version, 24)} failed at ${step}: ${code}${reason ? ` (${reason})` : ''}`;
  if (permanent) return new NonRetryableProviderError(message, code);
  return Object.assign(new Error(message), { name: code });
}

/** The default CodeFetcher: GET the presigned Code.Location, at most maxBytes. */
async function fetchCodeLocation(req: CodeFetchRequest): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(req.location, { signal: req.signal, redirect: 'manual' }); // a 3xx is a failed download
  } catch (err) {
    if (req.signal.aborted) throw err;
    throw new RestoreFailure('CodeDownloadFailed', false);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new RestoreFailure('CodeDownloadFailed', false, `HTTP ${res.status}`);
  }
  const reader = res.body?.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const next = await reader?.read();
    if (!next || next.done) break;
    total += next.value.byteLength;
    if (total > req.maxBytes) {
      await reader?.cancel().catch(() => undefined);
      throw new RestoreFailure('CodeSizeMismatch', true);
    }
    chunks.push(next.value);
  }
  return Buffer.concat(chunks);
}

/** A Lambda routing weight (a fraction) as the percent status shows, to two decimals (0.1 → 10, 0.0333 → 3.33). */
function percentOfWeight(weight: number): number {
  return Math.round(weight * 100 * 100) / 100;
}
