/**
 * Test-only workflow interceptor (bundled by test/train-faults.test.ts, never by the worker): every
 * train `release` signal leaves 3 s late, so a test can land a breach on a held member while its
 * train is releasing, deterministically (the window is otherwise a few milliseconds).
 */
import { sleep, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

export const RELEASE_DELAY_MS = 3000;

export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      async signalWorkflow(input, next) {
        const decision = (input.args[0] as { decision?: unknown } | undefined)?.decision;
        if (input.signalName === 'trainDecision' && decision === 'release') await sleep(RELEASE_DELAY_MS);
        return next(input);
      },
    },
  ],
});
