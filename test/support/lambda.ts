import { GetAliasCommand, LambdaClient, ListVersionsByFunctionCommand } from '@aws-sdk/client-lambda';
import type { LambdaTargetSpec, TargetSpec } from '../../src/spec/schema';
import { TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import { lambdaOp, type CallObserver, type FaultProxy } from '../../src/dev/fault-proxy';

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

/**
 * Records the alias updates a fault proxy forwards (with their bodies), to tell forward traffic
 * writes (weights on, or another version than the stable one) from other alias writes: a revert
 * to where the alias already is, which may still write (a fence mark in the description).
 */
export function watchAliasWrites(proxy: FaultProxy) {
  const writes: { fn: string; version?: string; weights: Record<string, number>; atMs: number }[] = [];
  const observer: CallObserver = (call, body, status) => {
    if (!lambdaOp.updateAlias()(call) || status >= 300) return;
    const fn = /\/functions\/([^/]+)\/aliases\//.exec(call.path.split('?')[0])![1];
    const b = JSON.parse(body.toString('utf8') || '{}') as {
      FunctionVersion?: string;
      RoutingConfig?: { AdditionalVersionWeights?: Record<string, number> };
    };
    writes.push({ fn, version: b.FunctionVersion, weights: b.RoutingConfig?.AdditionalVersionWeights ?? {}, atMs: Date.now() });
  };
  proxy.observers.push(observer);
  return {
    writes,
    /** Writes to `fn` that moved traffic off `stable`: a weight on another version, or another version. */
    forward: (fn: string, stable: string) =>
      writes.filter((w) => w.fn === fn && ((w.version !== undefined && w.version !== stable) || Object.keys(w.weights).length > 0)),
    stop: () => {
      const i = proxy.observers.indexOf(observer);
      if (i >= 0) proxy.observers.splice(i, 1);
    },
  };
}
