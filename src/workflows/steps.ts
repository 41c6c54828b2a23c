/** Shared-dependency locks around the traffic stages (see dependency-lock.ts for the lock itself). */
import { CancellationScope, condition, workflowInfo } from '@temporalio/workflow';
import type { RolloutRun } from './rollout-state';

/**
 * Services declaring the same shared dependency never shift traffic at the same time. Locks are
 * taken in sorted order (no deadlock between two services sharing two dependencies) and released
 * after promote, or after the saga by `releaseDependencyLocks`.
 */
export async function withDependencyLocks(run: RolloutRun, body: () => Promise<void>): Promise<void> {
  const deps = [...run.spec.shared_dependencies].sort();
  if (deps.length === 0) return body();
  // The holder is this run (workflow id + run id) and a grant is confirmed with the lock workflow
  // before it counts: a lockGranted signal can come from anyone.
  return withRunLocks(run, deps, body);
}

/** After a grant the lock did not confirm, the lock is asked again this often (a real grant may have crossed the check). */
const RECONFIRM_MS = 5000;

async function withRunLocks(run: RolloutRun, deps: string[], body: () => Promise<void>): Promise<void> {
  const { runId, taskQueue } = workflowInfo();
  for (const dependency of deps) {
    // Still held by an earlier run of this rollout (it continued as new while holding it).
    if (run.heldLocks.has(dependency) && run.grantedLocks.has(dependency) && run.lockRunIds.get(dependency) !== runId) continue;
    // Held (so released on any way out) before the request is sent, and the request is not
    // cancellable: an abort while it is in flight still finds it queued, and releases it after.
    run.heldLocks.add(dependency);
    run.lockRunIds.set(dependency, runId);
    // The run's message nonce (runs before patch `rollout-message-nonces` have none): the grant must echo it.
    const nonce = run.messageNonce;
    if (nonce) run.lockNonces.set(dependency, nonce);
    await CancellationScope.nonCancellable(() =>
      run.acts.reads.requestDependencyLock({ dependency, holder: run.id, runId, ...(nonce ? { nonce } : {}), taskQueue }),
    );
    let waiting = false;
    let before = run.detail;
    // Runs with nonces: a grant with the request's nonce, or one without any nonce (sent by a lock
    // worker from before the nonces, during a deploy; or forged), is confirmed with the lock's
    // lockState, which only the lock answers. A grant with a wrong nonce was refused outright.
    const nonces = run.authenticatesMessages;
    const ready = () => run.grantedLocks.has(dependency) || (nonces && run.grantsToConfirm.has(dependency));
    for (let confirmAgain = false; ;) {
      if (!ready()) {
        if (!waiting) {
          waiting = true;
          before = run.detail;
          run.setDetail(`waiting for shared dependency ${dependency}: another rollout is shifting traffic`);
          run.record('wait', `waiting for shared dependency ${dependency}`);
        }
        if (confirmAgain) await condition(ready, RECONFIRM_MS);
        else await condition(ready);
      }
      const checked = run.grantedLocks.has(dependency);
      run.grantsToConfirm.delete(dependency);
      if (await run.acts.reads.confirmDependencyLock({ dependency, holder: run.id, runId })) break;
      // With nonces, a grant that arrived during the check is real: it is checked next, not dropped.
      if (run.grantedLocks.has(dependency) && (!nonces || checked)) {
        run.record('decision', `ignored a lockGranted for ${dependency} that its lock workflow does not confirm`);
        run.grantedLocks.delete(dependency);
      }
      // Without nonces a real grant may have crossed the check: ask again soon. With them it would carry the nonce.
      confirmAgain = !nonces;
    }
    run.grantedLocks.add(dependency);
    if (waiting) run.setDetail(before);
    run.record('decision', `holding shared dependency ${dependency}`);
  }
  await body();
  await releaseDependencyLocks(run);
}

export async function releaseDependencyLocks(run: RolloutRun): Promise<void> {
  if (run.heldLocks.size === 0) return;
  const current = workflowInfo().runId;
  await CancellationScope.nonCancellable(() =>
    Promise.all(
      [...run.heldLocks].map(async (dependency) => {
        // The run that requested it, which is an earlier run after a continue-as-new.
        const runId = run.lockRunIds.get(dependency) ?? current;
        // Only a release with the request's nonce frees an entry queued with one.
        const nonce = run.lockNonces.get(dependency);
        await run.acts.reads.releaseDependencyLock({ dependency, holder: run.id, runId, ...(nonce ? { nonce } : {}) });
        run.heldLocks.delete(dependency);
        run.grantedLocks.delete(dependency);
        run.lockRunIds.delete(dependency);
        run.lockNonces.delete(dependency);
      }),
    ),
  );
}
