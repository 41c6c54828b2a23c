/**
 * Dev/test only: simulated traffic for many targets at once (the fault checker's load mode: hundreds
 * of rollouts on one moto and one Cloud Run fake). Same model as TrafficSimulator and
 * CloudRunTrafficSimulator (requests split by the routing the emulator serves, an error rate per
 * target and version), built to scale:
 * - Lambda: an alias is read from moto (GetAlias) when added or marked dirty, and otherwise taken
 *   from the UpdateAlias calls moto accepted (`setRouting`, fed by the fault proxy's observers); the metrics of every target are pushed with one
 *   PutMetricData per region and tick instead of one per target and version;
 * - Cloud Run: the served split is read from the fake's state in process, not over gRPC.
 */
import { GetAliasCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { CloudWatchClient, PutMetricDataCommand, type MetricDatum } from '@aws-sdk/client-cloudwatch';
import type { CloudRunTargetSpec, LambdaTargetSpec } from '../spec/schema';
import { lambdaVersionDimensions } from '../analysis/cloudwatch';
import { TEST_CREDENTIALS } from './lambda-fixtures';
import { PeriodicSimulator } from './periodic-simulator';
import type { CloudRunFake } from './cloud-run-fake';
import type { CloudMonitoringFake } from './cloud-monitoring-fake';

export interface LoadTrafficProfile<T> {
  /** Requests per tick across all versions of one target. */
  requestsPerTick: number;
  /** Error rate (0-1) of a version / revision. */
  errorRate: (target: T, version: string) => number;
}

/** Largest PutMetricData batch (CloudWatch accepts 1000 metrics per request). */
const PUT_BATCH = 500;

async function inLanes<T>(xs: T[], lanes: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(lanes, xs.length) }, async () => {
      while (next < xs.length) await fn(xs[next++]);
    }),
  );
}

export class BatchedLambdaTraffic extends PeriodicSimulator {
  private readonly targets = new Map<string, LambdaTargetSpec>();
  /** Routing per target as last read from moto. */
  private readonly routing = new Map<string, { version: string; weights: Record<string, number> }>();
  private readonly dirty = new Set<string>();
  private readonly lambdas = new Map<string, LambdaClient>();
  private readonly cloudwatch = new Map<string, CloudWatchClient>();
  /** PutMetricData calls and datums pushed, for reports. */
  puts = 0;
  datums = 0;

  constructor(
    private readonly motoUrl: string,
    public profile: LoadTrafficProfile<LambdaTargetSpec>,
  ) {
    super();
  }

  /** Simulate `t` from now on; its alias is read on the next tick. */
  add(t: LambdaTargetSpec): void {
    this.targets.set(t.function, t);
    this.dirty.add(t.function);
  }

  remove(t: LambdaTargetSpec): void {
    this.targets.delete(t.function);
    this.routing.delete(t.function);
    this.dirty.delete(t.function);
  }

  /** A write to this function's alias landed: read it again on the next tick. */
  markDirty(functionName: string): void {
    if (this.targets.has(functionName)) this.dirty.add(functionName);
  }

  /**
   * A write to this function's alias landed and says what it routes (an UpdateAlias moto accepted):
   * no GetAlias needed. On a saturated moto, re-reading hundreds of aliases per tick delays the
   * metrics every bake waits for.
   */
  setRouting(functionName: string, version: string, weights: Record<string, number>): void {
    if (!this.targets.has(functionName)) return;
    this.routing.set(functionName, { version, weights });
    this.dirty.delete(functionName);
  }

  private lambda(region: string): LambdaClient {
    let c = this.lambdas.get(region);
    if (!c) this.lambdas.set(region, (c = new LambdaClient({ endpoint: this.motoUrl, region, credentials: TEST_CREDENTIALS })));
    return c;
  }

  private cw(region: string): CloudWatchClient {
    let c = this.cloudwatch.get(region);
    if (!c) this.cloudwatch.set(region, (c = new CloudWatchClient({ endpoint: this.motoUrl, region, credentials: TEST_CREDENTIALS })));
    return c;
  }

  protected async once(): Promise<void> {
    const stale = [...this.dirty];
    await inLanes(stale, 16, async (fn) => {
      const t = this.targets.get(fn);
      if (!t) return;
      this.dirty.delete(fn);
      try {
        const a = await this.lambda(t.region).send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
        this.routing.set(fn, { version: a.FunctionVersion!, weights: a.RoutingConfig?.AdditionalVersionWeights ?? {} });
      } catch {
        this.dirty.add(fn); // not created yet, or moto busy: next tick
      }
    });
    const byRegion = new Map<string, MetricDatum[]>();
    const now = new Date();
    for (const [fn, t] of this.targets) {
      const r = this.routing.get(fn);
      if (!r) continue;
      const extra = Object.entries(r.weights);
      const shares: [string, number][] = [[r.version, 1 - extra.reduce((a, [, w]) => a + w, 0)], ...extra];
      let list = byRegion.get(t.region);
      if (!list) byRegion.set(t.region, (list = []));
      for (const [version, share] of shares) {
        const invocations = Math.round(this.profile.requestsPerTick * share);
        if (invocations <= 0) continue;
        const errors = Math.round(invocations * this.profile.errorRate(t, version));
        const dims = lambdaVersionDimensions(t, version);
        list.push(
          { MetricName: 'Invocations', Dimensions: dims, Value: invocations, Unit: 'Count', Timestamp: now },
          { MetricName: 'Errors', Dimensions: dims, Value: errors, Unit: 'Count', Timestamp: now },
        );
      }
    }
    const batches: [string, MetricDatum[]][] = [];
    for (const [region, list] of byRegion)
      for (let i = 0; i < list.length; i += PUT_BATCH) batches.push([region, list.slice(i, i + PUT_BATCH)]);
    await inLanes(batches, 16, async ([region, MetricData]) => {
      await this.cw(region).send(new PutMetricDataCommand({ Namespace: 'AWS/Lambda', MetricData }));
      this.puts++;
      this.datums += MetricData.length;
    });
  }

  stop(): void {
    super.stop();
    for (const c of [...this.lambdas.values(), ...this.cloudwatch.values()]) c.destroy();
  }
}

export class DirectCloudRunTraffic extends PeriodicSimulator {
  private readonly targets = new Map<string, CloudRunTargetSpec>();

  constructor(
    private readonly fake: CloudRunFake,
    private readonly monitoring: CloudMonitoringFake,
    public profile: LoadTrafficProfile<CloudRunTargetSpec>,
  ) {
    super();
  }

  private key = (t: CloudRunTargetSpec) => `${t.project}/${t.region}/${t.service}`;

  add(t: CloudRunTargetSpec): void {
    this.targets.set(this.key(t), t);
  }

  remove(t: CloudRunTargetSpec): void {
    this.targets.delete(this.key(t));
  }

  protected async once(): Promise<void> {
    for (const t of this.targets.values()) {
      for (const [revision, percent] of Object.entries(this.fake.servedSplit(t.project, t.region, t.service))) {
        const requests = Math.round((this.profile.requestsPerTick * percent) / 100);
        if (requests <= 0) continue;
        this.monitoring.recordRevisionTraffic({
          project: t.project,
          region: t.region,
          service: t.service,
          revision,
          requests,
          errors: Math.round(requests * this.profile.errorRate(t, revision)),
          latenciesMs: [100, 110, 120, 130, 140],
        });
      }
    }
  }
}
