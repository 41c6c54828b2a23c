import { GetAliasCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';

const clients = new Map<string, LambdaClient>();

/** An alias straight from moto: the emulator's view is the ground truth for "reverted". */
export async function aliasOf(endpoint: string, t: LambdaTargetSpec) {
  let c = clients.get(t.region);
  if (!c) clients.set(t.region, (c = new LambdaClient({ endpoint, region: t.region, credentials: TEST_CREDENTIALS })));
  const a = await c.send(new GetAliasCommand({ FunctionName: t.function, Name: t.alias }));
  return { version: a.FunctionVersion!, weights: a.RoutingConfig?.AdditionalVersionWeights ?? {} };
}
