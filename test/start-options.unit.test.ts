/**
 * Start options that shape the workflow's history (continue-as-new past N events, hand over before
 * waits of N ms) are refused with their name before anything reaches Temporal: the client given
 * here has no connection, and a refusal must not need one.
 */
import type { Client } from '@temporalio/client';
import { RolloutRefusedError, startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';

const spec = validateSpec({
  service: 'svc',
  release: 'r1',
  schema_rev: '1',
  artifact: { image: `europe-docker.pkg.dev/my-project/r/app@sha256:${'a'.repeat(64)}` },
  targets: [{ name: 'run1', provider: 'cloud-run', project: 'my-project', region: 'europe-west1', service: 'svc' }],
  canary: { targets: ['run1'], weight: 10, bake: '1m' },
});
const noClient = {} as Client;

test.each([
  ['parkHandoverAfterMs', 0],
  ['parkHandoverAfterMs', -5],
  ['parkHandoverAfterMs', Number.NaN],
  ['continueAsNewAfterEvents', Number.POSITIVE_INFINITY],
  ['continueAsNewAfterEvents', -1],
  ['continueAsNewAfterEvents', 60.5],
] as const)('%s = %s is refused with the field named, before Temporal is asked', async (field, value) => {
  const started = startRollout(noClient, spec, { startedBy: 'carol', [field]: value });
  await expect(started).rejects.toThrow(RolloutRefusedError);
  await expect(started).rejects.toThrow(new RegExp(`^${field}: must be a positive whole number`));
});
