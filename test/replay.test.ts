/**
 * Recorded histories replay against the current workflow code, so a change that would break
 * running rollouts (a missing patched()) fails here. Record again with
 * `ROLLGATE_RECORD_HISTORIES=1 npx jest test/happy-path.test.ts` only for a new workflow version,
 * and keep the old file under a new name so both versions keep replaying.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { noopSinks } from '../src/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';

const dir = join(__dirname, 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

test('there is at least one recorded history', () => {
  expect(files).toEqual(expect.arrayContaining(['happy-path.json', 'breach-resume.json']));
});

test.each(files)('%s replays without non-determinism', async (file) => {
  const history = historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')));
  expect(history.events!.length).toBeGreaterThan(20);
  await Worker.runReplayHistory({ workflowBundle: { codePath: process.env.ROLLGATE_TEST_BUNDLE! }, sinks: noopSinks }, history, file);
});
