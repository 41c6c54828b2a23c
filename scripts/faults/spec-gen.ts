/**
 * Random valid rollout specs for fault schedules: cross-cloud (Lambda targets in moto, Cloud Run
 * targets in the fake), a canary, one to three waves of at least two targets each, random steps,
 * short bakes, sometimes interval analysis and approval waves. Validated by validateSpec.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sampleZip } from '../../src/dev/lambda-fixtures';
import { validateSpec } from '../../src/spec/validate';
import type { RolloutSpec, TargetSpec } from '../../src/spec/schema';
import type { Rng } from './prng';

export const PROJECT = 'fault-project';
const LAMBDA_REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-2', 'us-west-2', 'eu-central-1', 'ap-northeast-1'];
const RUN_REGIONS = ['europe-west1', 'us-central1', 'asia-east1', 'europe-north1', 'us-east4', 'australia-southeast1'];
const STEPS = [5, 10, 20, 25, 33, 50, 60, 75, 90];

export interface GeneratedSpec {
  spec: RolloutSpec;
  /** One line describing the shape, for reports. */
  shape: string;
}

export function imageFor(service: string, release: string): string {
  return `europe-docker.pkg.dev/${PROJECT}/apps/${service}@sha256:${createHash('sha256').update(`${service}:${release}`).digest('hex')}`;
}

/**
 * `service` must be unique on the dev server and in moto (it names the workflow, the Lambda functions
 * and the Cloud Run services); everything else comes from `rng`.
 */
export function generateSpec(
  rng: Rng,
  o: {
    service: string;
    webhookEnv: string;
    workDir: string;
    /** Before each target name (train members share one environment). */ namePrefix?: string;
  },
): GeneratedSpec {
  const { service } = o;
  const prefix = o.namePrefix ?? '';
  const nTargets = rng.int(3, 6);
  // Cross-cloud: at least one target of each kind.
  const kinds: TargetSpec['provider'][] = ['aws-lambda', 'cloud-run'];
  for (let i = 2; i < nTargets; i++) kinds.push(rng.pick(['aws-lambda', 'cloud-run'] as const));
  const lambdaRegions = rng.shuffle(LAMBDA_REGIONS);
  const runRegions = rng.shuffle(RUN_REGIONS);
  const targets: TargetSpec[] = rng.shuffle(kinds).map((kind, i) => {
    if (kind === 'aws-lambda') {
      const region = lambdaRegions.pop()!;
      return { name: `${prefix}l${i}-${region}`, provider: 'aws-lambda', region, function: `${service}-l${i}`, alias: 'live' };
    }
    const region = runRegions.pop()!;
    return { name: `${prefix}c${i}-${region}`, provider: 'cloud-run', project: PROJECT, region, service: `${service}-c${i}` };
  });
  const names = targets.map((t) => t.name);

  // Canary on one target; the waves partition the others (sometimes the canary joins a wave too).
  const canaryTarget = rng.pick(names);
  const rest = names.filter((n) => n !== canaryTarget);
  if (rng.chance(0.3)) rest.splice(rng.int(0, rest.length), 0, canaryTarget);
  const maxWaves = Math.floor(rest.length / 2);
  const nWaves = rng.int(1, Math.min(3, maxWaves));
  const waveTargets: string[][] = Array.from({ length: nWaves }, () => []);
  rest.forEach((n, i) => waveTargets[i < nWaves * 2 ? Math.floor(i / 2) : rng.int(0, nWaves - 1)].push(n));

  const bake = () => rng.pick(['1 second', '1 second', '2 seconds']);
  const interval = rng.chance(0.35);
  const approvals = waveTargets.map(() => rng.chance(0.3));
  const waves = waveTargets.map((ts, i) => ({
    name: `w${i + 1}`,
    targets: ts,
    steps: [...rng.increasing(STEPS, 2), 100],
    bake: interval ? '2 seconds' : bake(),
    approval: approvals[i],
  }));

  const zip = join(o.workDir, `${service}.zip`);
  writeFileSync(zip, sampleZip(`${service} r2`));
  const spec = validateSpec({
    service,
    release: 'r2',
    schema_rev: '7',
    index_hash: 'idx-faults',
    artifact: { file: zip, image: imageFor(service, 'r2') },
    targets,
    probes: [{ name: 'health', payload: { ping: true }, path: '/ping', expect_contains: 'ping' }],
    canary: { targets: [canaryTarget], weight: rng.pick([5, 10, 20, 25, 50]), bake: interval ? '2 seconds' : bake() },
    waves,
    rollback: { max_error_rate_increase_pp: 2, min_requests: 5, ...(interval ? { interval: '1 second' } : {}) },
    approvers: ['alice', 'bob'],
    notify: { webhook_env: o.webhookEnv },
  });
  const shape = [
    `${targets.filter((t) => t.provider === 'aws-lambda').length} lambda + ${targets.filter((t) => t.provider === 'cloud-run').length} cloud-run`,
    `canary ${spec.canary.weight}% on ${canaryTarget}`,
    ...spec.waves.map((w) => `${w.name}[${w.targets.join(',')}] ${w.steps.join('/')}${w.approval ? ' approval' : ''}`),
    interval ? 'interval 1s' : 'end-of-bake analysis',
  ].join('; ');
  return { spec, shape };
}
