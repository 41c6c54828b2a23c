/** Dev/test only: sample Lambda functions in moto and simulated CloudWatch metrics. */
import { createHash } from 'node:crypto';
import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import {
  CreateAliasCommand,
  CreateFunctionCommand,
  LambdaClient,
  PublishVersionCommand,
  type CreateFunctionCommandInput,
} from '@aws-sdk/client-lambda';
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import type { LambdaTargetSpec } from '../spec/schema';
import { lambdaVersionDimensions } from '../analysis/cloudwatch';
import { makeZip } from './zip';

export const TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const ROLE = 'arn:aws:iam::123456789012:role/rollgate-sample';

/** The regions dev/test fixtures spread Lambda targets over (the bench and tests). */
export const SAMPLE_REGIONS = [
  'us-east-1',
  'eu-west-1',
  'ap-southeast-2',
  'us-west-2',
  'eu-central-1',
  'ap-northeast-1',
  'sa-east-1',
  'ca-central-1',
  'eu-north-1',
  'ap-south-1',
];

/** One Lambda target per region (up to 10), each with a function of its own (`<prefix>-<region>-fn`, alias `live`). */
export function regionalLambdaTargets(prefix: string, n: number): LambdaTargetSpec[] {
  return SAMPLE_REGIONS.slice(0, n).map((region) => ({
    name: `${prefix}-${region}`.slice(0, 63),
    provider: 'aws-lambda' as const,
    region,
    function: `${prefix}-${region}-fn`,
    alias: 'live',
  }));
}

export async function ensureRole(endpoint: string): Promise<void> {
  const iam = new IAMClient({ endpoint, region: 'us-east-1', credentials: TEST_CREDENTIALS });
  try {
    await iam.send(new CreateRoleCommand({ RoleName: 'rollgate-sample', AssumeRolePolicyDocument: '{}' }));
  } catch (err) {
    if ((err as Error).name !== 'EntityAlreadyExistsException') throw err;
  }
}

export function sampleZip(text: string): Buffer {
  return makeZip([{ name: 'index.js', data: Buffer.from(`exports.handler = async (e) => (${JSON.stringify(text)});\n`) }]);
}

export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A function at published version 1 with `alias` -> 1, env as given (values may be "secret"), and any other settings in `config`. */
export async function createSampleFunction(
  endpoint: string,
  t: LambdaTargetSpec,
  env: Record<string, string> = {},
  config: Partial<Omit<CreateFunctionCommandInput, 'FunctionName' | 'Code' | 'Environment'>> = {},
): Promise<void> {
  await ensureRole(endpoint);
  const c = new LambdaClient({ endpoint, region: t.region, credentials: TEST_CREDENTIALS });
  await c.send(
    new CreateFunctionCommand({
      FunctionName: t.function,
      Runtime: 'nodejs20.x',
      Role: ROLE,
      Handler: 'index.handler',
      Code: { ZipFile: sampleZip(`${t.function} v1`) },
      Environment: { Variables: { RELEASE_ID: 'initial', SCHEMA_REV: '0', ...env } },
      ...config,
    }),
  );
  const v = await c.send(new PublishVersionCommand({ FunctionName: t.function }));
  await c.send(new CreateAliasCommand({ FunctionName: t.function, Name: t.alias, FunctionVersion: v.Version! }));
}

const cloudwatchClients = new Map<string, CloudWatchClient>();

/** Push simulated per-version metrics, the way Lambda reports a weighted alias. */
export async function putVersionMetrics(
  endpoint: string,
  t: LambdaTargetSpec,
  version: string,
  m: { invocations: number; errors: number; durationMs?: number; throttles?: number },
): Promise<void> {
  const key = `${endpoint}|${t.region}`;
  let cw = cloudwatchClients.get(key);
  if (!cw) cloudwatchClients.set(key, (cw = new CloudWatchClient({ endpoint, region: t.region, credentials: TEST_CREDENTIALS })));
  const dims = lambdaVersionDimensions(t, version);
  const now = new Date();
  await cw.send(
    new PutMetricDataCommand({
      Namespace: 'AWS/Lambda',
      MetricData: [
        { MetricName: 'Invocations', Dimensions: dims, Value: m.invocations, Unit: 'Count', Timestamp: now },
        { MetricName: 'Errors', Dimensions: dims, Value: m.errors, Unit: 'Count', Timestamp: now },
        ...(m.throttles !== undefined
          ? [{ MetricName: 'Throttles', Dimensions: dims, Value: m.throttles, Unit: 'Count' as const, Timestamp: now }]
          : []),
        ...(m.durationMs !== undefined
          ? [{ MetricName: 'Duration', Dimensions: dims, Value: m.durationMs, Unit: 'Milliseconds' as const, Timestamp: now }]
          : []),
      ],
    }),
  );
}
