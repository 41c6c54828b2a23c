/**
 * Dev/test only: simulated Cloud Run traffic. The Cloud Run fake runs no containers and emits no
 * metrics, so this reads each service's served split (trafficStatuses) through the real Cloud Run
 * client and records per-revision requests, 5xx errors and latencies in the Cloud Monitoring fake,
 * in proportion to the percents, with an error rate chosen per target and revision.
 */
import { ServicesClient } from '@google-cloud/run';
import type { CloudRunTargetSpec } from '../spec/schema';
import { gcpClientOptions } from '../providers/gcp-client';
import { servedSplit } from '../providers/cloud-run';
import type { CloudMonitoringFake } from './cloud-monitoring-fake';

export interface CloudRunTrafficProfile {
  /** Requests per tick across all revisions of a service. */
  requestsPerTick: number;
  /** Error rate (0-1) of a revision. */
  errorRate: (target: CloudRunTargetSpec, revision: string) => number;
  /** Latency (ms) of a revision's requests; 120 ms by default. */
  latencyMs?: (target: CloudRunTargetSpec, revision: string) => number;
}

export class CloudRunTrafficSimulator {
  private timer?: NodeJS.Timeout;
  private running = false;
  private readonly client: ServicesClient;
  ticks = 0;

  constructor(
    cloudRunEndpoint: string,
    private readonly monitoring: CloudMonitoringFake,
    private readonly targets: CloudRunTargetSpec[],
    public profile: CloudRunTrafficProfile,
  ) {
    this.client = new ServicesClient(gcpClientOptions(cloudRunEndpoint));
  }

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
          const [svc] = await this.client.getService({ name: `projects/${t.project}/locations/${t.region}/services/${t.service}` });
          for (const [revision, percent] of servedSplit(svc)) {
            const requests = Math.round((this.profile.requestsPerTick * percent) / 100);
            if (requests <= 0) continue;
            const errors = Math.round(requests * this.profile.errorRate(t, revision));
            const latency = this.profile.latencyMs?.(t, revision) ?? 120;
            this.monitoring.recordRevisionTraffic({
              project: t.project,
              region: t.region,
              service: t.service,
              revision,
              requests,
              errors,
              latenciesMs: Array.from({ length: Math.min(requests, 50) }, (_, i) => latency * (0.8 + (0.4 * i) / 50)),
            });
          }
        }),
      );
      this.ticks++;
    } catch {
      // a service not created yet (test setup in progress) is skipped until the next tick
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    void this.client.close();
  }
}
