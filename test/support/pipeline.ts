/** Pipeline-file test helpers: a staging → prod pipeline over one Lambda and one Cloud Run target per environment. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetFunctionConfigurationCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { sampleZip, TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import { environmentSpec, validatePipeline, type Pipeline } from '../../src/spec/pipeline';
import type { CloudRunTargetSpec, LambdaTargetSpec, TargetSpec } from '../../src/spec/schema';
import { cloudRunTarget, imageFor, seedCloudRun } from './cloud-run';
import { createFunctions, TEST_WEBHOOK_ENV, type Harness } from './harness';

export interface EnvOptions {
  soak?: string;
  approval?: boolean;
  freeze_windows?: unknown[];
}

const lambda = (service: string, env: string, region: string): LambdaTargetSpec => ({
  name: `${env}-fn`,
  provider: 'aws-lambda',
  region,
  function: `${service}-${env}`,
  alias: 'live',
});

/**
 * The pipeline as it is written for `release`: the zip and image differ per release (a release is
 * a build). `probe` is what the probe expects (a release that never answers it fails verify).
 */
export function testPipeline(
  h: Harness,
  service: string,
  release: string,
  envs: Record<string, EnvOptions> = { staging: {}, prod: { soak: '15 seconds', approval: true } },
  o: { probe?: string } = {},
): Pipeline {
  const zip = join(h.workDir, `${service}-${release}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${release}`));
  const regions: Record<string, [string, string]> = { staging: ['us-east-1', 'europe-west1'], prod: ['eu-west-1', 'us-central1'] };
  return validatePipeline(
    {
      service,
      schema_rev: 7,
      artifact: { file: zip, image: imageFor(service, release) },
      probes: [{ name: 'health', payload: { ping: true }, path: '/ping', expect_contains: o.probe ?? 'ping' }],
      rollback: { on_no_data: 'pass', min_requests: 5 },
      approvers: ['alice', 'bob'],
      notify: { webhook_env: TEST_WEBHOOK_ENV },
      environments: Object.entries(envs).map(([name, gates]) => {
        const [aws, gcp] = regions[name];
        const fn = lambda(service, name, aws);
        const run = cloudRunTarget(`${name}-run`, `${service}-${name}`, gcp);
        return {
          name,
          targets: [fn, run],
          canary: { targets: [fn.name], weight: 10, bake: '1 second' },
          waves: [{ name: 'rest', targets: [run.name], steps: [100], bake: '1 second' }],
          ...gates,
        };
      }),
    },
    'test pipeline',
    h.workDir,
  );
}

/** Every environment's functions (version 1 behind `live`) and Cloud Run services (one ready revision). */
export async function seedPipeline(h: Harness, p: Pipeline): Promise<void> {
  for (const e of p.environments) {
    const spec = environmentSpec(p, e.name, 'seed');
    await createFunctions(h, spec);
    seedCloudRun(h, spec);
  }
}

export function targetsOf(p: Pipeline, env: string): { fn: LambdaTargetSpec; run: CloudRunTargetSpec } {
  const targets = environmentSpec(p, env, 'x').targets as TargetSpec[];
  return {
    fn: targets.find((t): t is LambdaTargetSpec => t.provider === 'aws-lambda')!,
    run: targets.find((t): t is CloudRunTargetSpec => t.provider === 'cloud-run')!,
  };
}

/** The CodeSha256 (hex) of a published Lambda version, read from moto. */
export async function codeSha(motoUrl: string, t: LambdaTargetSpec, version: string): Promise<string> {
  const c = new LambdaClient({ endpoint: motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  const cfg = await c.send(new GetFunctionConfigurationCommand({ FunctionName: t.function, Qualifier: version }));
  return Buffer.from(cfg.CodeSha256!, 'base64').toString('hex');
}

/** The image of a Cloud Run revision, read from the fake's store. */
export function revisionImage(h: Harness, t: CloudRunTargetSpec, revision: string): string {
  const store = (h.cloudRun as unknown as { revisions: Map<string, Map<string, { containers: { image: string }[] }>> }).revisions;
  return store.get(`projects/${t.project}/locations/${t.region}/services/${t.service}`)!.get(revision)!.containers[0].image;
}
