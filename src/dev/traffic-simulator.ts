/**
 * Dev/test only: simulated traffic metrics. moto does not run code or emit Lambda metrics, so this
 * reads each alias's routing from moto and pushes per-version Invocations/Errors/Duration into
 * CloudWatch in proportion to the weights, with an error rate chosen per target and version.
 * Everything it pushes is simulated and labelled so in the demo.
 */
import { GetAliasCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec } from '../spec/schema';
import { putVersionMetrics, TEST_CREDENTIALS } from './lambda-fixtures';
import { PeriodicSimulator } from './periodic-simulator';

export interface TrafficProfile {
  /** Requests per tick across both versions of a target. */
  requestsPerTick: number;
  /** Error rate (0-1) of a version. */
  errorRate: (target: LambdaTargetSpec, version: string) => number;
  durationMs?: (target: LambdaTargetSpec, version: string) => number;
  /** Share (0-1) of a version's requests refused by throttling: counted in Throttles, not in Invocations (as Lambda does). */
  throttleRate?: (target: LambdaTargetSpec, version: string) => number;
}

export class TrafficSimulator extends PeriodicSimulator {
  private readonly clients = new Map<string, LambdaClient>();

  constructor(
    private readonly lambdaEndpoint: string,
    private readonly cloudwatchEndpoint: string,
    private readonly targets: LambdaTargetSpec[],
    public profile: TrafficProfile,
  ) {
    super();
  }

  private client(region: string): LambdaClient {
    let c = this.clients.get(region);
    if (!c) this.clients.set(region, (c = new LambdaClient({ endpoint: this.lambdaEndpoint, region, credentials: TEST_CREDENTIALS })));
    return c;
  }

  protected async once(): Promise<void> {
    await Promise.all(
      this.targets.map(async (t) => {
        const alias = await this.client(t.region).send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
        const extra = Object.entries(alias.RoutingConfig?.AdditionalVersionWeights ?? {});
        const shares: [string, number][] = [[alias.FunctionVersion!, 1 - (extra[0]?.[1] ?? 0)], ...extra];
        for (const [version, share] of shares) {
          const requests = Math.round(this.profile.requestsPerTick * share);
          if (requests <= 0) continue;
          const throttles = Math.round(requests * (this.profile.throttleRate?.(t, version) ?? 0));
          const invocations = requests - throttles;
          const errors = Math.round(invocations * this.profile.errorRate(t, version));
          await putVersionMetrics(this.cloudwatchEndpoint, t, version, {
            invocations,
            errors,
            durationMs: this.profile.durationMs?.(t, version) ?? 120,
            ...(throttles > 0 ? { throttles } : {}),
          });
        }
      }),
    );
  }
}
