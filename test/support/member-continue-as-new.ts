/**
 * Test-only workflow interceptor (bundled by test/train-faults.test.ts, never by the worker): every
 * rollout a train starts as a child hands over to a new run past MEMBER_HANDOVER_AFTER history
 * events (`continueAsNewAfterEvents`, which a train does not pass on), so a test can make a member
 * continue as new within seconds, as a long wait would in weeks.
 */
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';

export const MEMBER_HANDOVER_AFTER = 60;

export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      async startChildWorkflowExecution(input, next) {
        if (input.workflowType !== 'rolloutWorkflow') return next(input);
        const [first, ...rest] = input.options.args as [Record<string, unknown>, ...unknown[]];
        return next({
          ...input,
          options: { ...input.options, args: [{ ...first, continueAsNewAfterEvents: MEMBER_HANDOVER_AFTER }, ...rest] },
        });
      },
    },
  ],
});
