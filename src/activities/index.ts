/**
 * Activities are built by a factory from their dependencies (providers, metric sources, state dir),
 * so tests and the worker wire real clients at their endpoints. Workflows import only the type.
 */
import { analysisActivities } from './analysis';
import { commandActivities } from './commands';
import { coordinationActivities } from './coordination';
import type { ActivityDeps } from './deps';
import { notifyActivities } from './notify';
import { targetActivities } from './targets';
import { scheduledActivities } from './scheduled';

export function createActivities(deps: ActivityDeps) {
  return {
    ...commandActivities(deps),
    ...targetActivities(deps),
    ...analysisActivities(deps),
    ...notifyActivities(deps),
    ...coordinationActivities(deps),
    ...scheduledActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps';
