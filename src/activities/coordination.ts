/** Freeze windows and shared-dependency locks. */
import type { FreezeWindow } from '../spec/schema';
import { activeFreeze, type FreezeState } from '../spec/freeze';
import { dependencyLockWorkflowId, lockAcquireSignal, lockReleaseSignal } from '../workflows/messages';
import { requireClient, type ActivityDeps } from './deps';

export function coordinationActivities(deps: ActivityDeps) {
  const client = () => requireClient(deps, 'shared_dependencies');
  return {
    /** Run as a local activity: the answer is recorded, so a tz-data update cannot change a replay. */
    async checkFreeze(input: { windows: FreezeWindow[] }): Promise<FreezeState | null> {
      return activeFreeze(Date.now(), input.windows);
    },

    /** Queue `holder` on the dependency's lock workflow (started if absent); the grant arrives as a signal. */
    async requestDependencyLock(input: { dependency: string; holder: string; taskQueue: string }): Promise<void> {
      await client().workflow.signalWithStart('dependencyLockWorkflow', {
        workflowId: dependencyLockWorkflowId(input.dependency),
        taskQueue: input.taskQueue,
        args: [{ dependency: input.dependency }],
        signal: lockAcquireSignal,
        signalArgs: [{ holder: input.holder }],
      });
    },

    async releaseDependencyLock(input: { dependency: string; holder: string }): Promise<void> {
      try {
        await client().workflow.getHandle(dependencyLockWorkflowId(input.dependency)).signal(lockReleaseSignal, { holder: input.holder });
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err; // lock already gone: nothing to release
      }
    },
  };
}
