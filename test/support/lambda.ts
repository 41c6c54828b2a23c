import { GetAliasCommand, LambdaClient, ListVersionsByFunctionCommand } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec, TargetSpec } from '../../src/spec/schema';
import { TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';

/** Read an alias straight from moto (not through the proxy), as the ground truth. */
export async function aliasState(motoUrl: string, t: TargetSpec) {
  const l = t as LambdaTargetSpec;
  const c = new LambdaClient({ endpoint: motoUrl, region: l.region, credentials: TEST_CREDENTIALS });
  const a = await c.send(new GetAliasCommand({ FunctionName: l.function, Name: l.alias }));
  return { version: a.FunctionVersion!, weights: a.RoutingConfig?.AdditionalVersionWeights ?? {} };
}

export async function publishedVersions(motoUrl: string, t: TargetSpec): Promise<string[]> {
  const l = t as LambdaTargetSpec;
  const c = new LambdaClient({ endpoint: motoUrl, region: l.region, credentials: TEST_CREDENTIALS });
  const r = await c.send(new ListVersionsByFunctionCommand({ FunctionName: l.function }));
  return (r.Versions ?? []).map((v) => v.Version!).filter((v) => v !== '$LATEST');
}
