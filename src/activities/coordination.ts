/** Freeze windows, shared-dependency locks and the nonces that authenticate internal messages. */
import { randomBytes } from 'node:crypto';
import type { FreezeWindow } from '../spec/schema';
import { activeFreeze, type FreezeState } from '../spec/freeze';
import {
  dependencyLockWorkflowId,
  lockAcquireSignal,
  lockReleaseSignal,
  lockRequestQuery,
  lockStateQuery,
  WORKFLOW_TASK_TIMEOUT,
  type LockHolder,
} from '../contract';
import { requireClient, type ActivityDeps } from './deps';
import { latestOfChain } from '../temporal/run-chain';
import { readWithHeartbeat, withHeartbeat } from './heartbeat';

export function coordinationActivities(deps: ActivityDeps) {
  const client = () => requireClient(deps, 'shared_dependencies');
  return {
    /** Run as a local activity: the answer is recorded, so a tz-data update cannot change a replay. */
    async checkFreeze(input: { windows: FreezeWindow[] }): Promise<FreezeState | null> {
      return activeFreeze(Date.now(), input.windows);
    },

    /**
     * A rollout run's message nonce (run as a local activity: recorded once, replayed from history).
     * Made here because workflow randomness is seeded from the run id, which is no secret.
     */
    async newMessageNonce(): Promise<string> {
      return randomBytes(16).toString('base64url');
    },

    /**
     * Queue `holder` (workflow id), `runId` and its `nonce` on the dependency's lock workflow
     * (started if absent); the grant arrives as a signal to that run.
     */
    async requestDependencyLock(input: {
      dependency: string;
      holder: string;
      runId?: string;
      nonce?: string;
      taskQueue: string;
    }): Promise<void> {
      await withHeartbeat(() =>
        client().workflow.signalWithStart('dependencyLockWorkflow', {
          workflowId: dependencyLockWorkflowId(input.dependency),
          taskQueue: input.taskQueue,
          args: [{ dependency: input.dependency }],
          signal: lockAcquireSignal,
          signalArgs: [lockHolder(input)],
          workflowTaskTimeout: WORKFLOW_TASK_TIMEOUT,
        }),
      );
    },

    /** Only a release with the nonce the lock was requested with frees an entry queued with one. */
    async releaseDependencyLock(input: { dependency: string; holder: string; runId?: string; nonce?: string }): Promise<void> {
      await withHeartbeat(async () => {
        try {
          await client().workflow.getHandle(dependencyLockWorkflowId(input.dependency)).signal(lockReleaseSignal, lockHolder(input));
        } catch (err) {
          if ((err as Error).name !== 'WorkflowNotFoundError') throw err; // lock already gone: nothing to release
        }
      });
    },

    /**
     * Whether the lock workflow itself says this run holds the dependency: a lockGranted signal can be
     * sent by anyone, the lock's state cannot. A holder queued by the first lock version has no run id.
     */
    async confirmDependencyLock(input: { dependency: string; holder: string; runId: string }): Promise<boolean> {
      return readWithHeartbeat(async () => {
        try {
          const state = await client().workflow.getHandle(dependencyLockWorkflowId(input.dependency)).query(lockStateQuery);
          return state.holder === input.holder && (state.holderRunId === undefined || state.holderRunId === input.runId);
        } catch (err) {
          if ((err as Error).name === 'WorkflowNotFoundError') return false;
          throw err;
        }
      });
    },

    /**
     * Before a grant: whether the queued entry's run is a rollout that asked for this lock (with this
     * nonce). An acquire can be sent by anyone naming any run; the run itself answers the query.
     * Rollouts of the first version have no such query: they are taken at their word, as before.
     */
    async verifyLockRequest(input: { dependency: string } & LockHolder): Promise<{ requested: boolean; reason?: string }> {
      const run = client().workflow.getHandle(input.holder, input.runId);
      let desc;
      try {
        desc = await run.describe();
      } catch (err) {
        if ((err as Error).name === 'WorkflowNotFoundError') return { requested: false, reason: 'no such run' };
        throw err;
      }
      if (desc.type !== 'rolloutWorkflow')
        return { requested: false, reason: `the named run is a ${desc.type.slice(0, 100)}, not a rollout` };
      if (desc.status.name !== 'RUNNING') return { requested: false, reason: `the named run is ${desc.status.name}` };
      try {
        const asked = await run.query(lockRequestQuery, { dependency: input.dependency, ...(input.nonce ? { nonce: input.nonce } : {}) });
        if (asked) return { requested: true };
        return { requested: false, reason: `the named run did not request this lock${input.nonce ? ' with this nonce' : ''}` };
      } catch (err) {
        if ((err as Error).name === 'QueryNotRegisteredError') return { requested: true };
        throw err;
      }
    },

    /**
     * The lock's holders and waiters whose runs no longer run (completed, failed, terminated, timed
     * out, cancelled, or gone from the server): the lock drops them. A run that continued as new
     * counts as running while its workflow id's latest run runs. An entry without a run id (queued
     * by the first lock version) is judged by its workflow id's latest run.
     */
    async findClosedLockHolders(input: { holders: LockHolder[] }): Promise<(LockHolder & { status: string })[]> {
      const closed: (LockHolder & { status: string })[] = [];
      for (const h of input.holders) {
        const status = await chainStatus(h.holder, h.runId);
        if (CLOSED.has(status)) closed.push({ holder: h.holder, ...(h.runId ? { runId: h.runId } : {}), status });
      }
      return closed;
    },
  };

  /**
   * The status of the rollout a run belongs to: a run that continued as new is followed to the
   * latest run of its workflow id, but only when that run is of the same chain (same first run).
   * A later rollout of the same service has the same workflow id and is not the holder: its
   * chain's last run closed, so the holder is gone (CONTINUED_AS_NEW counts as closed).
   */
  async function chainStatus(workflowId: string, runId?: string): Promise<string> {
    const run = await orNotFound(client().workflow.getHandle(workflowId, runId).describe());
    if (run === 'NOT_FOUND' || run.status.name !== 'CONTINUED_AS_NEW') return run === 'NOT_FOUND' ? run : run.status.name;
    const followed = await orNotFound(latestOfChain(client(), run));
    if (followed === 'NOT_FOUND') return 'NOT_FOUND';
    // A server that does not say which chain a run is of: the latest run it is (as before).
    return followed.sameChain === false ? 'CONTINUED_AS_NEW' : followed.latest.status.name;
  }

  async function orNotFound<T>(described: Promise<T>): Promise<T | 'NOT_FOUND'> {
    try {
      return await described;
    } catch (err) {
      if ((err as Error).name === 'WorkflowNotFoundError') return 'NOT_FOUND';
      throw err; // unknown (server unavailable...): the lock keeps the entry and asks again later
    }
  }
}

/** Closed for good; any other status (RUNNING, or one this code does not know) keeps the entry. */
const CLOSED = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT', 'CONTINUED_AS_NEW', 'NOT_FOUND']);

function lockHolder(h: LockHolder): LockHolder {
  return { holder: h.holder, ...(h.runId ? { runId: h.runId } : {}), ...(h.nonce ? { nonce: h.nonce } : {}) };
}
