/** Cloud Run test helpers over a harness created with `{ cloudRun: true }`. */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudRunTrafficSimulator } from '../../src/dev/cloud-run-traffic';
import { sampleZip } from '../../src/dev/lambda-fixtures';
import { validateSpec } from '../../src/spec/validate';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, RolloutSpecInput, TargetSpec } from '../../src/spec/schema';
import { TEST_WEBHOOK_ENV, type Harness } from './harness';

export const PROJECT = 'demo-project';

export function cloudRunTarget(name: string, service: string, region: string): CloudRunTargetSpec {
  return { name, provider: 'cloud-run', project: PROJECT, region, service };
}

export function lambdaTarget(service: string, region: string): LambdaTargetSpec {
  return { name: region, provider: 'aws-lambda', region, function: `${service}-fn`, alias: 'live' };
}

export function imageFor(service: string, release: string): string {
  return `europe-docker.pkg.dev/${PROJECT}/apps/${service}@sha256:${createHash('sha256').update(`${service}:${release}`).digest('hex')}`;
}

/**
 * A spec over any mix of targets (1 s bakes): a zip for Lambda targets, an image for Cloud Run
 * targets, and a probe both clouds answer with "ping" (Lambda echoes the payload, the Cloud Run
 * fake echoes the path).
 */
export function mixedSpec(
  h: Harness,
  service: string,
  targets: TargetSpec[],
  shape: Pick<RolloutSpecInput, 'canary' | 'waves'>,
  over: Partial<RolloutSpecInput> = {},
): RolloutSpec {
  const zip = join(h.workDir, `${service}-${randomBytes(3).toString('hex')}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${zip}`));
  const hasLambda = targets.some((t) => t.provider === 'aws-lambda');
  return validateSpec({
    service,
    release: 'r2',
    schema_rev: '7',
    index_hash: 'idx-abc',
    artifact: { ...(hasLambda ? { file: zip } : {}), image: imageFor(service, 'r2') },
    targets,
    probes: [{ name: 'health', payload: { ping: true }, path: '/ping', expect_contains: 'ping' }],
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5 },
    approvers: ['alice', 'bob'],
    notify: { webhook_env: TEST_WEBHOOK_ENV },
    ...shape,
    ...over,
  });
}

/** Each Cloud Run target's service, serving 100 % from one ready revision; returns its name per target. */
export function seedCloudRun(h: Harness, spec: RolloutSpec): Record<string, string> {
  const first: Record<string, string> = {};
  for (const t of spec.targets) {
    if (t.provider !== 'cloud-run') continue;
    const svc = h.cloudRun!.seedService({
      project: t.project,
      region: t.region,
      service: t.service,
      image: imageFor(t.service, 'r1'),
      env: { RELEASE_ID: 'initial', SCHEMA_REV: '0', LOG_LEVEL: 'info' },
      secretEnv: { DB_PASSWORD: ['db-password', '3'] },
    });
    first[t.name] = (svc.latestReadyRevision as string).split('/').pop()!;
  }
  return first;
}

/** Served split, tags and revision names of a Cloud Run target, read from the fake. */
export function cloudRunState(h: Harness, t: TargetSpec) {
  const c = t as CloudRunTargetSpec;
  const svc = h.cloudRun!.getServiceState(c.project, c.region, c.service)!;
  return {
    split: h.cloudRun!.servedSplit(c.project, c.region, c.service),
    tags: (svc.trafficStatuses as { tag: string; revision: string }[]).filter((s) => s.tag).map((s) => `${s.tag}:${s.revision}`),
    revisions: h.cloudRun!.revisionNames(c.project, c.region, c.service),
    labels: svc.labels as Record<string, string>,
    reconciling: svc.reconciling as boolean,
  };
}

/** Healthy Cloud Run traffic everywhere unless `bad` says a revision is broken (30 % 5xx). */
export function simulateCloudRunTraffic(
  h: Harness,
  spec: RolloutSpec,
  bad: (t: CloudRunTargetSpec, revision: string) => boolean = () => false,
) {
  const targets = spec.targets.filter((t): t is CloudRunTargetSpec => t.provider === 'cloud-run');
  return new CloudRunTrafficSimulator(h.cloudRun!.address, h.monitoring!, targets, {
    requestsPerTick: 100,
    errorRate: (t, rev) => (bad(t, rev) ? 0.3 : 0.001),
  }).start(250);
}
