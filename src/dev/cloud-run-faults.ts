/**
 * Dev/test only: per-service fault injection for the Cloud Run fake. The fake's own `failNext`
 * knob fails the next calls of a method on any service; fault schedules need one target to fail
 * (PERMISSION_DENIED) while its siblings, other services on the same fake, are slow or healthy.
 * This wraps the fake's request handlers on one instance (the gRPC binding looks them up per call).
 */
import { grpc } from 'google-gax';
import { FakeRpcError, type CloudRunFake } from './cloud-run-fake';

export type CloudRunFaultMethod = 'UpdateService' | 'GetService' | 'GetOperation' | 'GetRevision';

export interface CloudRunFaultRule {
  method: CloudRunFaultMethod;
  /** Short service name; unset: any service. */
  service?: string;
  /** Let the first `skip` calls of this method on this service through (counted per service, whatever the rules). */
  skip?: number;
  /** How many matching calls to affect (default 1). */
  times?: number;
  /** Only requests for which this holds (e.g. an UpdateService that routes 100 % to one revision). */
  when?: (request: Record<string, any>) => boolean;
  action: { code: grpc.status; message?: string } | { delayMs: number };
}

const HANDLERS: Record<CloudRunFaultMethod, string> = {
  UpdateService: 'updateService',
  GetService: 'getService',
  GetOperation: 'getOperation',
  GetRevision: 'getRevision',
};

export class CloudRunFaults {
  private rules: (CloudRunFaultRule & { left: number })[] = [];
  /** Calls per method and service, counted once per call. */
  private readonly counts = new Map<string, number>();
  /** Faults served, per method. */
  readonly served: Record<string, number> = {};

  constructor(private readonly fake: CloudRunFake) {
    const f = fake as unknown as Record<string, (r: Record<string, any>) => unknown>;
    for (const [method, key] of Object.entries(HANDLERS) as [CloudRunFaultMethod, string][]) {
      const original = f[key].bind(fake);
      f[key] = async (r) => {
        const rule = this.match(method, r);
        if (rule) {
          this.served[method] = (this.served[method] ?? 0) + 1;
          if ('delayMs' in rule.action) await new Promise((res) => setTimeout(res, (rule.action as { delayMs: number }).delayMs));
          else throw new FakeRpcError(rule.action.code, rule.action.message ?? `injected ${grpc.status[rule.action.code]}`);
        }
        return original(r);
      };
    }
  }

  inject(rule: CloudRunFaultRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
  }

  private serviceOf(method: CloudRunFaultMethod, r: Record<string, any>): string {
    let name = '';
    if (method === 'UpdateService') name = r.service?.name ?? '';
    else if (method === 'GetService') name = r.name ?? '';
    else if (method === 'GetRevision') name = String(r.name ?? '').replace(/\/revisions\/[^/]+$/, '');
    else name = (this.fake as unknown as { ops: Map<string, { service: string }> }).ops.get(r.name)?.service ?? '';
    return name.slice(name.lastIndexOf('/') + 1);
  }

  private match(method: CloudRunFaultMethod, r: Record<string, any>) {
    const service = this.serviceOf(method, r);
    const key = `${method}|${service}`;
    const index = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, index);
    for (const rule of this.rules) {
      if (rule.left <= 0 || rule.method !== method) continue;
      if (rule.service && rule.service !== service) continue;
      if (index <= (rule.skip ?? 0)) continue;
      if (rule.when && !rule.when(r)) continue;
      rule.left--;
      return rule;
    }
    return undefined;
  }
}
