/** The artifact store under concurrency: rollouts of several services may store the same zip at once. */
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunnerActivities } from '../src/activities';
import { sampleZip, sha256Hex } from '../src/dev/lambda-fixtures';

test('ten concurrent builds of the same file store it once and all succeed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-build-'));
  const zip = sampleZip('same artifact');
  writeFileSync(join(dir, 'fn.zip'), zip);
  const acts = createRunnerActivities({ stateDir: join(dir, 'state') });
  const refs = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      acts.buildArtifact({ artifact: { file: join(dir, 'fn.zip') }, rolloutId: `rollout-s${i}`, runId: 'r' }),
    ),
  );
  for (const r of refs) {
    expect(r.digest).toBe(sha256Hex(zip));
    expect(readFileSync(r.path!)).toEqual(zip);
  }
});
