/**
 * A FIFO lock per shared dependency (a database, a queue). Rollouts queue with lockAcquire
 * (signal-with-start from an activity), get lockGranted as a signal, and release with lockRelease.
 * A holder that no longer exists is skipped. The workflow ends when idle, and continues-as-new
 * long before history limits.
 */
import { condition, continueAsNew, getExternalWorkflowHandle, setHandler, workflowInfo, allHandlersFinished } from '@temporalio/workflow';
import { lockAcquireSignal, lockGrantedSignal, lockReleaseSignal, lockStateQuery } from './messages';

export async function dependencyLockWorkflow(input: { dependency: string; queue?: string[] }): Promise<void> {
  const queue: string[] = [...(input.queue ?? [])];
  let granted: string | undefined;
  setHandler(lockAcquireSignal, ({ holder }) => {
    if (!queue.includes(holder)) queue.push(holder);
  });
  setHandler(lockReleaseSignal, ({ holder }) => {
    const i = queue.indexOf(holder);
    if (i >= 0) queue.splice(i, 1);
    if (granted === holder) granted = undefined;
  });
  setHandler(lockStateQuery, () => ({ holder: granted, waiting: queue.filter((q) => q !== granted) }));

  for (let grants = 0; ;) {
    const busy = await condition(() => queue.length > 0, '10 minutes');
    if (!busy) {
      await condition(allHandlersFinished);
      if (queue.length === 0) return;
    }
    const holder = queue[0];
    granted = holder;
    try {
      await getExternalWorkflowHandle(holder).signal(lockGrantedSignal, { dependency: input.dependency });
    } catch {
      queue.shift(); // holder is gone: next
      granted = undefined;
      continue;
    }
    await condition(() => queue[0] !== holder);
    granted = undefined;
    if (++grants >= 500 || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof dependencyLockWorkflow>({ dependency: input.dependency, queue });
    }
  }
}
