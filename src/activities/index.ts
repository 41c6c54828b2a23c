/**
 * Activities are built by a factory from their dependencies (providers, metric sources, state dir),
 * so tests and the worker wire real clients at their endpoints. Workflows import only the type.
 *
 * Two sets, served by two kinds of process: `createActivities` is the worker's (cloud providers,
 * metrics, alerts, locks; no command activities), `createRunnerActivities` the runner's (build,
 * test, migration and schema-rev commands, on ROLLGATE_RUNNER_TASK_QUEUE; no cloud credentials).
 */
import { analysisActivities } from './analysis';
import { commandActivities, type RunnerDeps } from './commands';
import { coordinationActivities } from './coordination';
import { identityActivities } from './identity';
import type { ActivityDeps } from './deps';
import { notifyActivities } from './notify';
import { releaseActivities } from './releases';
import { targetActivities } from './targets';
import { scheduledActivities } from './scheduled';

export function createActivities(deps: ActivityDeps) {
  return {
    ...targetActivities(deps),
    ...analysisActivities(deps),
    ...notifyActivities(deps),
    ...coordinationActivities(deps),
    ...scheduledActivities(deps),
    ...identityActivities(deps),
    ...releaseActivities(deps),
  };
}

/** The runner's activities: commands only. */
export function createRunnerActivities(deps: RunnerDeps) {
  return commandActivities(deps);
}

export type WorkerActivities = ReturnType<typeof createActivities>;
export type RunnerActivities = ReturnType<typeof createRunnerActivities>;
/** Every activity a workflow may call (the worker's and the runner's), for the proxies. */
export type Activities = WorkerActivities & RunnerActivities;
export type { ActivityDeps } from './deps';
export type { RunnerDeps } from './commands';
