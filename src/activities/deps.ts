import type { Client } from '@temporalio/client';
import type { TargetSpec } from '../spec/schema';
import type { TargetProvider } from '../providers/types';
import type { MetricProvider } from '../analysis/types';
import type { LambdaEndpointOptions } from '../analysis/synthetic';

export interface ActivityDeps {
  /** One provider per target kind. */
  providers: Partial<Record<TargetSpec['provider'], TargetProvider<any>>>;
  /** Metric providers, tried in order; the first that supports a target answers for it. */
  metrics: MetricProvider[];
  /** Folder for the content-addressed artifact store and build records. */
  stateDir: string;
  /** Key for the salted env hashes; per process is fine (both sides are hashed in one call). */
  hashKey: string;
  /** For shared-dependency locks (signal-with-start from an activity). */
  client?: Client;
  /** Synthetic traffic: Lambda client settings, and a URL rewrite for revision URLs (tests point tag URLs at a fake). */
  synthetic?: { lambda?: LambdaEndpointOptions; httpUrlRewrite?: (url: string) => string };
  /** Webhook delivery timeout per attempt (ms). */
  webhookTimeoutMs?: number;
}

export function providerFor(deps: ActivityDeps, t: TargetSpec): TargetProvider<any> {
  const p = deps.providers[t.provider];
  if (!p) throw new Error(`no provider configured for ${t.provider} (target ${t.name})`);
  return p;
}
