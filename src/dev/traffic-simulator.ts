/**
 * Dev/test only: simulated traffic metrics. moto does not run code or emit Lambda metrics, so this
 * reads each alias's routing from moto and pushes per-version Invocations/Errors/Duration into
 * CloudWatch in proportion to the weights, with an error rate chosen per target and version.
 * Everything it pushes is simulated and labelled so in the demo.
 */
import { GetAliasCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec } from '../spec/schema';
import { putVersionMetrics, TEST_CREDENTIALS } from './lambda-fixtures';

export interface TrafficProfile {
  /** Requests per tick across both versions of a target. */
  requestsPerTick: number;
  /** Error rate (0-1) of a version; `isNew` tells whether it is the alias's additional version or its only one after promote. */
  errorRate: (target: LambdaTargetSpec, version: string) => number;
  durationMs?: (target: LambdaTargetSpec, version: string) => number;
}

export class TrafficSimulator {
  private timer?: NodeJS.Timeout;
  private running = false;
  ticks = 0;

  constructor(
    private readonly lambdaEndpoint: string,
    private readonly cloudwatchEndpoint: string,
    private readonly targets: LambdaTargetSpec[],
    public profile: TrafficProfile,
  ) {}

  start(intervalMs = 400): this {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    return this;
  }

  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await Promise.all(
        this.targets.map(async (t) => {
          const c = new LambdaClient({ endpoint: this.lambdaEndpoint, region: t.region, credentials: TEST_CREDENTIALS });
          const alias = await c.send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
          const extra = Object.entries(alias.RoutingConfig?.AdditionalVersionWeights ?? {});
          const shares: [string, number][] = [[alias.FunctionVersion!, 1 - (extra[0]?.[1] ?? 0)], ...extra];
          for (const [version, share] of shares) {
            const invocations = Math.round(this.profile.requestsPerTick * share);
            if (invocations <= 0) continue;
            const errors = Math.round(invocations * this.profile.errorRate(t, version));
            await putVersionMetrics(this.cloudwatchEndpoint, t, version, {
              invocations,
              errors,
              durationMs: this.profile.durationMs?.(t, version) ?? 120,
            });
          }
        }),
      );
      this.ticks++;
    } catch {
      // a missing function or alias (test setup in progress) is skipped until the next tick
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
