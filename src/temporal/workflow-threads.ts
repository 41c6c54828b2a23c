/**
 * How many threads run workflow code (`workflowThreadPoolSize`). With one V8 context reused for
 * every workflow (`reuseV8Context`) the SDK runs them all on one thread, so a burst of workflow
 * tasks (a wake storm, a fleet's failover) is bound by one core while the others idle.
 * `ROLLGATE_WORKFLOW_THREADS` sets it; unset keeps the SDK's default of one (docs/DEVELOPMENT.md,
 * "Workflow threads", has the measurements).
 */
export const WORKFLOW_THREADS_VAR = 'ROLLGATE_WORKFLOW_THREADS';
const MAX_THREADS = 16;

/** The workflow thread count from ROLLGATE_WORKFLOW_THREADS, or undefined (the SDK's default) when unset. */
export function workflowThreads(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[WORKFLOW_THREADS_VAR];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS)
    throw new Error(`${WORKFLOW_THREADS_VAR} must be a whole number from 1 to ${MAX_THREADS}, got "${raw}"`);
  return n;
}

/** The worker option for a thread count: none when unset, so the SDK's default applies. */
export function workflowThreadOptions(threads: number | undefined): { workflowThreadPoolSize?: number } {
  return threads ? { workflowThreadPoolSize: threads } : {};
}
