/** The worker's workflow cache size: ROLLGATE_MAX_CACHED_WORKFLOWS, or a default derived from memory. */
import { CACHED_ROLLOUT_MIB, defaultCacheSize, memoryLimitMiB, workflowCacheSize } from '../src/temporal/workflow-cache';

test('the variable sets the cache; 0 turns it off', () => {
  expect(workflowCacheSize({ ROLLGATE_MAX_CACHED_WORKFLOWS: '300' })).toBe(300);
  expect(workflowCacheSize({ ROLLGATE_MAX_CACHED_WORKFLOWS: '0' })).toBe(0);
});

test('a bad value is refused with the variable named (1 too: the SDK would silently make it 2)', () => {
  for (const bad of ['1', '-5', '2.5', 'lots'])
    expect(() => workflowCacheSize({ ROLLGATE_MAX_CACHED_WORKFLOWS: bad })).toThrow(
      `ROLLGATE_MAX_CACHED_WORKFLOWS must be 0 (no cache) or a whole number of at least 2, got "${bad}"`,
    );
});

test('the default: a quarter of the memory at the measured cost per cached rollout, between 50 and 1000', () => {
  expect(defaultCacheSize(1024)).toBe(Math.floor(256 / CACHED_ROLLOUT_MIB));
  expect(defaultCacheSize(64)).toBe(50);
  expect(defaultCacheSize(64 * 1024)).toBe(1000);
  expect(workflowCacheSize({})).toBe(defaultCacheSize(memoryLimitMiB()));
  expect(memoryLimitMiB()).toBeGreaterThan(0);
});
