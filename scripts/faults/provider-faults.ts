/**
 * Provider faults armed in the emulators: counted per target and kind of call (so a seed hits the
 * same step on every run), and "every revert of this target fails" (broken reverts).
 */
import { Status } from 'google-gax';
import { lambdaOp, type FaultAction, type RecordedCall } from '../../src/dev/fault-proxy';
import type { CloudRunFaultMethod, CloudRunFaultRule } from '../../src/dev/cloud-run-faults';
import type { LambdaTargetSpec, RolloutSpec, TargetSpec } from '../../src/spec/schema';
import type { ScheduleEnv } from './env';
import type { ProviderFault } from './fault-gen';

function lambdaAction(f: ProviderFault): FaultAction {
  switch (f.action) {
    case 'throttle':
      return { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded (injected)' };
    case 'server-error':
      return { status: 503, errorType: 'ServiceException', message: 'injected 503' };
    case 'slow':
      return { delayMs: f.delayMs ?? 1000 };
    case 'access-denied':
      return {
        status: 403,
        errorType: 'AccessDeniedException',
        message: 'User is not authorized to perform: lambda:UpdateAlias (injected)',
      };
  }
}

function cloudRunAction(f: ProviderFault): CloudRunFaultRule['action'] {
  switch (f.action) {
    case 'throttle':
      return { code: Status.RESOURCE_EXHAUSTED, message: 'quota exceeded (injected)' };
    case 'server-error':
      return { code: Status.UNAVAILABLE, message: 'service unavailable (injected)' };
    case 'slow':
      return { delayMs: f.delayMs ?? 1000 };
    case 'access-denied':
      return { code: Status.PERMISSION_DENIED, message: "Permission 'run.services.update' denied (injected)" };
  }
}

const LAMBDA_OPS: Record<ProviderFault['op'], (fn: string) => (c: RecordedCall) => boolean> = {
  traffic: (fn) => lambdaOp.updateAlias(fn),
  read: (fn) => (c) => c.method === 'GET' && c.path.includes(`/functions/${fn}/aliases/`),
  publish: (fn) => lambdaOp.publishVersion(fn),
  operation: (fn) => lambdaOp.updateCode(fn),
};
const CLOUD_RUN_OPS: Record<ProviderFault['op'], CloudRunFaultMethod> = {
  traffic: 'UpdateService',
  read: 'GetService',
  publish: 'UpdateService',
  operation: 'GetOperation',
};

/**
 * Arm faults that count calls per target and kind: the Nth matching call is the same step on every
 * run of a seed. Lambda calls are counted once per call (a call is matched against several rules).
 */
export function armProviderFaults(env: ScheduleEnv, spec: RolloutSpec, faults: ProviderFault[]): void {
  const byName = new Map(spec.targets.map((t) => [t.name, t]));
  const counters = new Map<string, WeakMap<RecordedCall, number>>();
  const totals = new Map<string, number>();
  const indexOf = (key: string, c: RecordedCall) => {
    let seen = counters.get(key);
    if (!seen) counters.set(key, (seen = new WeakMap()));
    let i = seen.get(c);
    if (i === undefined) {
      i = (totals.get(key) ?? 0) + 1;
      totals.set(key, i);
      seen.set(c, i);
    }
    return i;
  };
  for (const f of faults) {
    const t = byName.get(f.target)!;
    if (t.provider === 'aws-lambda') {
      const op = LAMBDA_OPS[f.op](t.function);
      const key = `${t.function}|${f.op}`;
      env.proxy.inject({ match: (c) => op(c) && indexOf(key, c) > f.skip, times: f.times, action: lambdaAction(f) });
    } else {
      env.cloudRunFaults.inject({
        method: CLOUD_RUN_OPS[f.op],
        service: t.service,
        skip: f.skip,
        times: f.times,
        action: cloudRunAction(f),
      });
    }
  }
  // Every call is counted even when no rule of its kind is armed before it: count with a no-op rule.
  for (const t of spec.targets)
    if (t.provider === 'aws-lambda')
      for (const op of Object.keys(LAMBDA_OPS) as ProviderFault['op'][]) {
        const m = LAMBDA_OPS[op](t.function);
        const key = `${t.function}|${op}`;
        env.proxy.inject({ match: (c) => (m(c) && indexOf(key, c) > 0 && false) as boolean, times: 1, action: { delayMs: 0 } });
      }
}

/** From now on, every traffic write on `t` fails non-retryably (so its revert fails). */
export function breakReverts(env: ScheduleEnv, t: TargetSpec): void {
  if (t.provider === 'aws-lambda')
    env.proxy.inject({
      match: lambdaOp.updateAlias((t as LambdaTargetSpec).function),
      times: 1000,
      action: lambdaAction({ action: 'access-denied' } as ProviderFault),
    });
  else
    env.cloudRunFaults.inject({
      method: 'UpdateService',
      service: t.service,
      times: 1000,
      action: cloudRunAction({ action: 'access-denied' } as ProviderFault),
    });
}
