/**
 * Dev/test only: simulated Cloud Run traffic. The Cloud Run fake runs no containers and emits no
 * metrics, so this reads each service's served split (trafficStatuses) through the real Cloud Run
 * client and records per-revision requests, 5xx errors and latencies in the Cloud Monitoring fake,
 * in proportion to the percents, with an error rate chosen per target and revision.
 */
import { ServicesClient } from '@google-cloud/run';
import type { CloudRunTargetSpec } from '../spec/schema';
import { gcpClientOptions } from '../providers/gcp-client';
import { servedSplit } from '../providers/cloud-run-traffic';
import type { CloudMonitoringFake } from './cloud-monitoring-fake';
import { PeriodicSimulator } from './periodic-simulator';

export interface CloudRunTrafficProfile {
  /** Requests per tick across all revisions of a service. */
  requestsPerTick: number;
  /** Error rate (0-1) of a revision. */
  errorRate: (target: CloudRunTargetSpec, revision: string) => number;
  /** Latency (ms) of a revision's requests; 120 ms by default. */
  latencyMs?: (target: CloudRunTargetSpec, revision: string) => number;
}

export class CloudRunTrafficSimulator extends PeriodicSimulator {
  private readonly client: ServicesClient;

  constructor(
    cloudRunEndpoint: string,
    private readonly monitoring: CloudMonitoringFake,
    private readonly targets: CloudRunTargetSpec[],
    public profile: CloudRunTrafficProfile,
  ) {
    super();
    this.client = new ServicesClient(gcpClientOptions(cloudRunEndpoint));
  }

  protected async once(): Promise<void> {
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
  }

  stop(): void {
    super.stop();
    void this.client.close();
  }
}
