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
  GetFunctionConfigurationCommand,
  InvokeCommand,
  LambdaClient,
  ListVersionsByFunctionCommand,
  PublishVersionCommand,
  TagResourceCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand,
  waitUntilFunctionUpdatedV2,
  type AliasConfiguration,
  type FunctionConfiguration,
} from '@aws-sdk/client-lambda';
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
  type TrafficState,
} from './types';
import { saltedHash } from './fingerprint';
import { cancellationSignal, stopIfCancelled } from './cancellation';

export interface LambdaProviderOptions {
  /** Overrides AWS_ENDPOINT_URL_LAMBDA (tests point this at moto or the fault proxy). */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  maxAttempts?: number;
  /** How long to wait for "update in progress" to clear (ms; default 100 s: a deploy waits twice, within the activity's 5 minutes). */
  updateWaitMs?: number;
}

const NON_RETRYABLE = new Set([
  'ResourceNotFoundException',
  'InvalidParameterValueException',
  'AccessDeniedException',
  'UnrecognizedClientException',
  'CodeStorageExceededException',
  'RequestTooLargeException',
]);

const CONTRACT_KEYS = ['RELEASE_ID', 'SCHEMA_REV', 'INDEX_HASH'] as const;

export function lambdaWeightFraction(percent: number): number {
  if (!(percent > 0 && percent < 100))
    throw new NonRetryableProviderError(`weight ${percent}% must be between 0 and 100 exclusive for a weighted alias`, 'InvalidWeight');
  return Math.round(percent * 100) / 10_000; // 0.01 % resolution
}

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
      this.clients.set(region, c);
    }
    return c;
  }

  roundWeight(percent: number): number {
    return Math.round(percent * 100) / 100;
  }

  async readTraffic(t: LambdaTargetSpec): Promise<TrafficState> {
    const alias = await this.getAlias(t);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    const [extra] = Object.entries(weights);
    return {
      stableVersion: alias.FunctionVersion!,
      newVersion: extra?.[0],
      newWeight: extra ? this.roundWeight(extra[1] * 100) : 0,
    };
  }

  async deployRevision(t: LambdaTargetSpec, artifact: ArtifactRef, contract: ReleaseContract, rolloutId: string): Promise<DeployResult> {
    if (!artifact.path) throw new NonRetryableProviderError('aws-lambda needs a zip artifact (artifact.build or artifact.file)', 'NoZip');
    const codeSha = Buffer.from(artifact.digest, 'hex').toString('base64');
    const existing = await this.findReleaseVersion(t, contract.RELEASE_ID, codeSha);
    if (existing) return { newVersion: existing, created: false };

    const zip = await readFile(artifact.path);
    const actual = createHash('sha256').update(zip).digest('hex');
    if (actual !== artifact.digest)
      throw new NonRetryableProviderError(
        `artifact ${artifact.path} changed since build: sha256 ${actual} != recorded ${artifact.digest}`,
        'ArtifactChanged',
      );

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
    await this.withUpdateRetry(t, () => c.send(new UpdateFunctionCodeCommand({ FunctionName: t.function, ZipFile: zip })));
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
      if ((CONTRACT_KEYS as readonly string[]).includes(k)) (contract as Record<string, string>)[k] = v;
    }
    return { values, secretRefs: {}, contract };
  }

  async setTraffic(t: LambdaTargetSpec, stable: string, next: string, percent: number): Promise<{ changed: boolean }> {
    if (percent >= 100) return this.routeAll(t, next);
    if (percent <= 0) return this.routeAll(t, stable);
    for (const v of [stable, next])
      if (!/^\d+$/.test(v)) throw new NonRetryableProviderError(`a weighted alias needs published versions, got "${v}"`, 'InvalidVersion');
    if (stable === next) throw new NonRetryableProviderError('stable and new version are the same', 'InvalidVersion');
    const weight = lambdaWeightFraction(percent);
    const alias = await this.getAlias(t);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    const keys = Object.keys(weights);
    if (alias.FunctionVersion === stable && keys.length === 1 && keys[0] === next && Math.abs(weights[next] - weight) < 1e-9)
      return { changed: false };
    await this.updateAlias(t, alias, stable, { [next]: weight });
    return { changed: true };
  }

  async routeAll(t: LambdaTargetSpec, version: string): Promise<{ changed: boolean }> {
    if (!/^\d+$/.test(version))
      throw new NonRetryableProviderError(`alias must point at a published version, got "${version}"`, 'InvalidVersion');
    const alias = await this.getAlias(t);
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    if (alias.FunctionVersion === version && Object.keys(weights).length === 0) return { changed: false };
    await this.updateAlias(t, alias, version, {});
    return { changed: true };
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
        return { probe: probe.name, ok: false, detail: `function error ${res.FunctionError}: ${body.slice(0, 200)}`, latencyMs };
      if (res.StatusCode !== 200) return { probe: probe.name, ok: false, detail: `status ${res.StatusCode}`, latencyMs };
      if (probe.expect_contains && !body.includes(probe.expect_contains))
        return { probe: probe.name, ok: false, detail: `response does not contain "${probe.expect_contains}"`, latencyMs };
      return { probe: probe.name, ok: true, detail: `status 200 in ${latencyMs} ms`, latencyMs };
    } catch (err) {
      const e = err as Error;
      return { probe: probe.name, ok: false, detail: `${e.name}: ${e.message}`.slice(0, 300), latencyMs: Date.now() - started };
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

  private async updateAlias(t: LambdaTargetSpec, current: AliasConfiguration, version: string, weights: Record<string, number>) {
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
        }),
      ),
    );
  }

  private async waitUpdated(t: LambdaTargetSpec): Promise<void> {
    await waitUntilFunctionUpdatedV2(
      {
        client: this.client(t.region),
        maxWaitTime: Math.ceil((this.opts.updateWaitMs ?? 100_000) / 1000),
        minDelay: 1,
        maxDelay: 5,
        abortSignal: cancellationSignal(), // the wait ends with the activity
      },
      { FunctionName: t.function },
    );
  }

  /**
   * "Update in progress" (ResourceConflictException) is not retried by the SDK: wait until the
   * function is updated, then try again. A stale RevisionId (PreconditionFailedException) is
   * surfaced as retryable so the activity re-reads the alias and re-decides.
   */
  private async withUpdateRetry<R>(t: LambdaTargetSpec, fn: () => Promise<R>): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(t, fn);
      } catch (err) {
        if ((err as Error).name === 'ResourceConflictException' && attempt < 5) {
          await this.waitUpdated(t);
          stopIfCancelled('retrying the write'); // a cancelled step never sends another write
          continue;
        }
        throw err;
      }
    }
  }

  private async call<R>(t: LambdaTargetSpec, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error & { $metadata?: { httpStatusCode?: number } };
      if (NON_RETRYABLE.has(e.name))
        throw new NonRetryableProviderError(`${t.name}: ${e.name}: ${e.message} (lambda ${t.region}/${t.function})`, e.name);
      throw err;
    }
  }
}
