/**
 * The `reads` activities have a 5 s heartbeat timeout since patch `rollgate-fast-failover`: a read
 * that takes longer must heartbeat while it waits (else a healthy slow read times out and burns an
 * attempt), and a cancelled read ends at once instead of waiting for an answer nobody needs.
 */
import { CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type ActivityDeps } from '../src/activities';
import type { TargetProvider, TrafficState } from '../src/providers/types';
import type { TargetSpec } from '../src/spec/schema';

const target = { name: 't1', provider: 'aws-lambda', function: 'fn', alias: 'live', region: 'us-east-1' } as unknown as TargetSpec;

/** A provider whose reads answer after `ms` (or when `release` is called). */
function slowProvider(ms: number) {
  let release: () => void = () => undefined;
  const answered = new Promise<void>((r) => {
    const timer = setTimeout(r, ms);
    release = () => {
      clearTimeout(timer);
      r();
    };
  });
  const traffic: TrafficState = { stableVersion: '1', newWeight: 0 };
  const provider = {
    readTraffic: async () => {
      await answered;
      return traffic;
    },
  } as unknown as TargetProvider<any>;
  return { provider, release: () => release() };
}

function activitiesWith(provider: TargetProvider<any>) {
  const deps = { providers: { 'aws-lambda': provider }, metrics: [], stateDir: '/tmp', hashKey: 'k' } as unknown as ActivityDeps;
  return createActivities(deps);
}

test('a read that takes 2.5 s heartbeats while it waits', async () => {
  const { provider } = slowProvider(2500);
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 5000 });
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const acts = activitiesWith(provider);
  const res = await env.run(acts.readTraffic, { target });
  expect(res).toEqual({ stableVersion: '1', newWeight: 0 });
  // One a second (withHeartbeat); the worker forwards them at most a second apart (maxHeartbeatThrottleInterval).
  expect(beats.length).toBeGreaterThanOrEqual(2);
});

test('a cancelled read ends at once, without waiting for the provider', async () => {
  const { provider, release } = slowProvider(60_000);
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 5000 });
  const acts = activitiesWith(provider);
  const t0 = Date.now();
  const running = env.run(acts.readTraffic, { target });
  setTimeout(() => env.cancel(), 200);
  await expect(running).rejects.toBeInstanceOf(CancelledFailure);
  expect(Date.now() - t0).toBeLessThan(5_000);
  release();
});

test("a cancelled revert attempt leaves the earlier attempt's error as the last one heard", async () => {
  const run = async (routeAll: () => Promise<never>) => {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 5000, heartbeatDetails: { lastError: 'HTTP 429 earlier' } });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const acts = activitiesWith({ routeAll } as unknown as TargetProvider<any>);
    await expect(env.run(acts.routeAll, { target, version: '1', revert: true })).rejects.toThrow();
    return beats;
  };
  // A failure is recorded for the attempts (and the escalation) after it ...
  expect(await run(() => Promise.reject(new Error('t1: ServiceException: HTTP 503')))).toEqual([
    { lastError: 't1: ServiceException: HTTP 503' },
  ]);
  // ... a cancellation is not: the escalation names what kept failing, never the stop itself.
  expect(await run(() => Promise.reject(new CancelledFailure('cancelled before UpdateAlias')))).toEqual([]);
});
