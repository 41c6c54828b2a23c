import { ApplicationFailure } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { TargetSpec } from '../spec/schema';
import type { TargetProvider } from '../providers/types';
import type { MetricProvider } from '../analysis/types';
import type { LambdaEndpointOptions } from '../analysis/synthetic';
import type { ArtifactStore } from '../artifacts/store';
import { UrlPolicy } from '../security/url-policy';
import type { IdentityVerifier } from '../identity/verifier';

export interface ActivityDeps {
  /** One provider per target kind. */
  providers: Partial<Record<TargetSpec['provider'], TargetProvider<any>>>;
  /** Metric providers, tried in order; the first that supports a target answers for it. */
  metrics: MetricProvider[];
  /** Folder for local state: the default file:// artifact store and the cache of artifacts fetched for deploys. */
  stateDir: string;
  /** The shared artifact store deploys read from (default file://<stateDir>/artifacts). */
  artifactStore?: ArtifactStore;
  /** Key for the salted env hashes; per process is fine (both sides are hashed in one call). */
  hashKey: string;
  /** For shared-dependency locks (signal-with-start from an activity). */
  client?: Client;
  /** Synthetic traffic: Lambda client settings, and a URL rewrite for revision URLs (tests point tag URLs at a fake). */
  synthetic?: { lambda?: LambdaEndpointOptions; httpUrlRewrite?: (url: string) => string };
  /** Webhook delivery timeout per attempt (ms). */
  webhookTimeoutMs?: number;
  /**
   * Which spec URLs (webhook, custom checks, Prometheus) may be called. `rollgate worker`:
   * ROLLGATE_ALLOWED_URLS; unset here (embedded workers: demo, tests): loopback only.
   */
  urlPolicy?: UrlPolicy;
  /** Where `notify.webhook_env` names are resolved (default process.env). */
  secretEnv?: Record<string, string | undefined>;
  /** Checks operators' tokens (ROLLGATE_OIDC_*); without it identities are the unverified `--by` names. */
  identityVerifier?: IdentityVerifier;
}

export function urlPolicyOf(deps: { urlPolicy?: UrlPolicy }): UrlPolicy {
  return deps.urlPolicy ?? EMBEDDED_POLICY;
}
const EMBEDDED_POLICY = UrlPolicy.embeddedDefault();

export function providerFor(deps: ActivityDeps, t: TargetSpec): TargetProvider<any> {
  const p = deps.providers[t.provider];
  if (!p) throw new Error(`no provider configured for ${t.provider} (target ${t.name})`);
  return p;
}

/** The worker's Temporal client, for activities that start or signal workflows. */
export function requireClient(deps: ActivityDeps, purpose: string): Client {
  if (!deps.client) throw ApplicationFailure.nonRetryable(`${purpose} need a Temporal client in the worker`, 'NoClient');
  return deps.client;
}

/** The configured native metric source (CloudWatch, Cloud Monitoring) for a target. */
export function nativeMetricSource(deps: ActivityDeps, t: TargetSpec): MetricProvider {
  const m = deps.metrics.find((p) => p.supports(t));
  if (!m) throw ApplicationFailure.nonRetryable(`no metric provider configured for ${t.provider} target ${t.name}`, 'NoMetricProvider');
  return m;
}
