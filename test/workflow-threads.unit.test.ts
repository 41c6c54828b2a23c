/** The worker's workflow threads: ROLLGATE_WORKFLOW_THREADS, or the SDK's default (one with a reused V8 context). */
import { workflowThreads } from '../src/temporal/workflow-threads';

test('the variable sets the thread count; unset or empty leaves the SDK default', () => {
  expect(workflowThreads({ ROLLGATE_WORKFLOW_THREADS: '2' })).toBe(2);
  expect(workflowThreads({ ROLLGATE_WORKFLOW_THREADS: '16' })).toBe(16);
  expect(workflowThreads({})).toBeUndefined();
  expect(workflowThreads({ ROLLGATE_WORKFLOW_THREADS: ' ' })).toBeUndefined();
});

test('a bad value is refused with the variable named', () => {
  for (const bad of ['0', '17', '1.5', 'two', '-1'])
    expect(() => workflowThreads({ ROLLGATE_WORKFLOW_THREADS: bad })).toThrow(
      `ROLLGATE_WORKFLOW_THREADS must be a whole number from 1 to 16, got "${bad}"`,
    );
});

test('`rollgate worker` refuses a bad value before it connects to anything', async () => {
  const { runWorkerFromEnv } = await import('../src/worker');
  // An address nothing listens on: reaching it would fail differently (and later).
  await expect(runWorkerFromEnv({ ROLLGATE_WORKFLOW_THREADS: '0', TEMPORAL_ADDRESS: '127.0.0.1:1' })).rejects.toThrow(
    'ROLLGATE_WORKFLOW_THREADS must be a whole number from 1 to 16, got "0"',
  );
});
