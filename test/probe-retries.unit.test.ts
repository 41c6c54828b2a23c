/** Probes: no answer is tried again (attempts), a wrong answer fails at once. The provider here is a scripted stand-in. */
import { probeWithRetries } from '../src/activities/targets';
import type { ProbeResult } from '../src/providers/types';
import type { ProbeSpec, TargetSpec } from '../src/spec/schema';

const target = { name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: 'f', alias: 'live' } as TargetSpec;
const probe: ProbeSpec = { name: 'health', timeout: '1 second', attempts: 3 };
const answers = (...results: Partial<ProbeResult>[]) => {
  const calls: string[] = [];
  return {
    calls,
    probe: async (_t: TargetSpec, version: string): Promise<ProbeResult> => {
      calls.push(version);
      const r = results[Math.min(calls.length - 1, results.length - 1)];
      return { probe: 'health', ok: false, detail: 'x', latencyMs: 1, ...r };
    },
  };
};
const noAnswer = { ok: false, unreachable: true, detail: 'TimeoutError: probe timed out' };

test('no answer twice, then an answer: tried three times, ok', async () => {
  const p = answers(noAnswer, noAnswer, { ok: true, detail: 'status 200' });
  expect(await probeWithRetries(p, target, '2', probe, 1)).toMatchObject({ ok: true, detail: 'status 200' });
  expect(p.calls).toEqual(['2', '2', '2']);
});

test('a wrong answer fails at once, without another try', async () => {
  const p = answers({ ok: false, detail: 'function error Unhandled' }, { ok: true });
  expect(await probeWithRetries(p, target, '2', probe, 1)).toMatchObject({ ok: false, detail: 'function error Unhandled' });
  expect(p.calls).toHaveLength(1);
});

test('never an answer: attempts tries, and the reason says so', async () => {
  const p = answers(noAnswer);
  const r = await probeWithRetries(p, target, '2', probe, 1);
  expect(r).toMatchObject({ ok: false, detail: 'TimeoutError: probe timed out (no answer in 3 tries)' });
  expect(p.calls).toHaveLength(3);
});

test('attempts: 1 is one try; a spec from before the field gets the default 3', async () => {
  const once = answers(noAnswer);
  await probeWithRetries(once, target, '2', { ...probe, attempts: 1 }, 1);
  expect(once.calls).toHaveLength(1);
  const old = answers(noAnswer);
  const { attempts: _attempts, ...before } = probe;
  await probeWithRetries(old, target, '2', before as ProbeSpec, 1);
  expect(old.calls).toHaveLength(3);
});
