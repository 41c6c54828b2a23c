/**
 * How many workflow executions a worker keeps in memory (`maxCachedWorkflows`). A parked rollout
 * (a bake, an approval, a pause) needs no memory while it waits: past the cache it is evicted and
 * replayed from its history when its timer fires or a query or message arrives. So the cache bounds
 * the worker's memory, not the number of rollouts it can hold. Caveat: a replay can still fail on
 * SDK 1.24 when an update arrives in the task of a timer and a query replays the run in between
 * (docs/DEVELOPMENT.md, "Updates reordered on replay"); a cached run answers queries without a
 * replay, so the default below stays well above what the suites run at once (floor 50).
 * `ROLLGATE_MAX_CACHED_WORKFLOWS` sets it; the default comes from the memory the process may use
 * (docs/DEVELOPMENT.md, "Workflow cache").
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';

export const MAX_CACHED_WORKFLOWS_VAR = 'ROLLGATE_MAX_CACHED_WORKFLOWS';
/** RSS per cached parked rollout (one V8 context for all workflows): 0.31 MiB in session 4's `npm run bench -- --only parked` (443 MiB at 500, 912 at 2,000, all cached), plus a margin. */
export const CACHED_ROLLOUT_MIB = 0.35;
/** The share of the process's memory the cache may take (the rest: the worker, core, gRPC, activities). */
const CACHE_SHARE = 0.25;
/** Past this many, a bigger cache saves little: waking rollouts replay in milliseconds. */
const DEFAULT_CAP = 1000;
const DEFAULT_FLOOR = 50;

/** The cache size: ROLLGATE_MAX_CACHED_WORKFLOWS when set (0 = no cache), else derived from memory. */
export function workflowCacheSize(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[MAX_CACHED_WORKFLOWS_VAR];
  if (raw === undefined || raw.trim() === '') return defaultCacheSize(memoryLimitMiB());
  const n = Number(raw);
  // The SDK turns 1 into 2 with a warning: refuse it instead, so the number in effect is the one set.
  if (!Number.isInteger(n) || n < 0 || n === 1)
    throw new Error(`${MAX_CACHED_WORKFLOWS_VAR} must be 0 (no cache) or a whole number of at least 2, got "${raw}"`);
  return n;
}

/** A quarter of the memory the process may use, at CACHED_ROLLOUT_MIB each, between 50 and 1000. */
export function defaultCacheSize(limitMiB: number): number {
  return Math.min(DEFAULT_CAP, Math.max(DEFAULT_FLOOR, Math.floor((limitMiB * CACHE_SHARE) / CACHED_ROLLOUT_MIB)));
}

/** The smallest of the machine's memory, the cgroup (container) limit and the V8 heap limit, in MiB. */
export function memoryLimitMiB(): number {
  const limits = [totalmem(), getHeapStatistics().heap_size_limit];
  const cgroup = readCgroupLimit();
  if (cgroup !== undefined) limits.push(cgroup);
  return Math.min(...limits) / 2 ** 20;
}

function readCgroupLimit(): number | undefined {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const n = Number(readFileSync(file, 'utf8').trim()); // "max" (no limit) is NaN
      if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    } catch {
      // not this cgroup version, or not Linux
    }
  }
  return undefined;
}
